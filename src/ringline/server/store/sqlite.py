"""The default store: SQLite through the stdlib :mod:`sqlite3`, on one worker thread.

Threading: the store owns ONE connection, created, used and closed on ONE dedicated
worker thread (a ``ThreadPoolExecutor(max_workers=1)``). Writes *and* reads go through
that thread, so a read issued after :meth:`SqliteStore.apply` returned always sees that
batch, and the event loop never blocks on disk I/O.

Group commit: :meth:`SqliteStore.apply` hands its batch to a :class:`GroupCommitter`.
While one transaction is running on the worker thread, newly arriving batches queue up;
when it finishes, every queued batch is merged into the next ``BEGIN IMMEDIATE ...
COMMIT`` and each caller is resumed after that commit. If the merged transaction fails
because of what it contains (a constraint, a bad value), the batches are retried one by
one, each in its own transaction, so a bad batch fails only its own caller. If it fails
because of the database itself (:class:`sqlite3.OperationalError`: locked past the busy
timeout, disk full, I/O error), every batch of the round fails with that error at once,
without retrying each one against the same wall. :class:`GroupCommitter` is storage-agnostic and is reused by
:mod:`.postgres`.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A committed batch
survives a crash of the process; after a power loss or OS crash the most recent
transactions may roll back (the database stays consistent). That is the trade SQLite
recommends for WAL and what makes thousands of commits per second possible.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ...core.enums import CallResultType
from ...core.records import CallRecord
from .base import (
    DeleteSession,
    FinishCall,
    HideUserCalls,
    MarkAlive,
    SaveLiveCall,
    SaveSession,
    SessionRow,
    SetCallbackConfig,
    SetGroupMembers,
    UserCallRow,
    Write,
)

log = logging.getLogger("ringline.store")

__all__ = [
    "SCHEMA_VERSION",
    "CommitStats",
    "GroupCommitter",
    "SqliteStore",
]

#: The schema version this code creates and understands (``schema_version`` table).
SCHEMA_VERSION = 2

_T = TypeVar("_T")

#: Commits a list of batches; returns, per batch and in order, ``None`` (committed) or
#: the exception that made that batch fail. Must not raise for a per-batch failure.
CommitGroup = Callable[[list[tuple[Write, ...]]], Awaitable[list[BaseException | None]]]


# --------------------------------------------------------------------------- group commit


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Counters of a :class:`GroupCommitter`.

    ``batches``: ``apply`` calls handed to the committer and resolved.
    ``groups``: merged commit rounds (one transaction each, unless a round fell back to
    per-batch transactions). ``batches / groups`` is the average merge factor.
    """

    batches: int
    groups: int


class GroupCommitter:
    """Merges concurrent batches of writes into one transaction (group commit).

    Usage: create it with a ``commit`` coroutine function (see :data:`CommitGroup`),
    ``await submit(writes)`` from any task of ONE event loop, ``await close()`` at
    shutdown. At most one commit round runs at a time; batches submitted meanwhile wait
    and are all committed by the next round. ``submit`` returns once its batch is
    committed, or raises the exception that made that batch fail.

    Cancelling a task waiting in ``submit`` does not withdraw its batch: the batch is
    committed anyway (or fails) with the rest of its round.
    """

    __slots__ = ("_batches", "_closed", "_commit", "_groups", "_pending", "_task")

    def __init__(self, commit: CommitGroup) -> None:
        self._commit = commit
        self._pending: list[tuple[tuple[Write, ...], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._batches = 0
        self._groups = 0

    @property
    def stats(self) -> CommitStats:
        """Counters so far (cheap; for metrics and tests)."""
        return CommitStats(batches=self._batches, groups=self._groups)

    async def submit(self, writes: tuple[Write, ...]) -> None:
        """Queue ``writes`` for the next commit round and wait until it is committed.

        Raises RuntimeError after :meth:`close`, or the batch's own failure.
        """
        if self._closed:
            raise RuntimeError("the store is closed; open a new one to write again")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((writes, fut))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="ringline-store-group-commit")
        await fut

    async def close(self) -> None:
        """Refuse new batches and wait until every queued batch is resolved. Idempotent."""
        self._closed = True
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _run(self) -> None:
        group: list[tuple[tuple[Write, ...], asyncio.Future[None]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    results = await self._commit([writes for writes, _ in group])
                    if len(results) != len(group):
                        raise RuntimeError(
                            f"group commit returned {len(results)} results for {len(group)} batches"
                        )
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # the commit function broke its contract
                    results = [exc] * len(group)
                self._groups += 1
                self._batches += len(group)
                for (_, fut), error in zip(group, results, strict=True):
                    if fut.done():  # the waiting task was cancelled
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
                group = []
        except asyncio.CancelledError:
            for _, fut in itertools.chain(group, self._pending):
                fut.cancel()
            self._pending = []
            raise
        finally:
            self._task = None


# --------------------------------------------------------------------------- schema

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE calls (
                call_id       TEXT    NOT NULL PRIMARY KEY,
                sdk_app_id    INTEGER NOT NULL,
                caller        TEXT    NOT NULL,
                media_type    INTEGER NOT NULL,
                scene         INTEGER NOT NULL,
                call_type     TEXT    NOT NULL CHECK (call_type IN ('SingleCall', 'MultiCall')),
                chat_group_id TEXT    NOT NULL,
                start_time    REAL    NOT NULL,
                accept_time   REAL    NOT NULL,
                end_time      REAL    NOT NULL,
                result        TEXT    NOT NULL,
                end_reason    INTEGER NOT NULL,
                record        TEXT    NOT NULL
            )
            """,
            "CREATE INDEX calls_by_start ON calls (start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_result ON calls (result, start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_type ON calls (call_type, start_time DESC, call_id DESC)",
            """
            CREATE TABLE user_calls (
                user_id     TEXT    NOT NULL,
                call_id     TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
                start_time  REAL    NOT NULL,
                result_type INTEGER NOT NULL,
                hidden      INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
                PRIMARY KEY (user_id, call_id)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX user_calls_by_start ON user_calls (user_id, start_time DESC, call_id DESC)",
            "CREATE INDEX user_calls_by_call ON user_calls (call_id)",
            """
            CREATE TABLE live_calls (
                call_id    TEXT NOT NULL PRIMARY KEY,
                snapshot   TEXT NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE sessions (
                token          TEXT    NOT NULL PRIMARY KEY,
                device_id      TEXT    NOT NULL,
                user_id        TEXT    NOT NULL,
                multi_device   INTEGER NOT NULL CHECK (multi_device IN (0, 1)),
                sig_expires_at REAL    NOT NULL,
                created_at     REAL    NOT NULL,
                last_seen      REAL    NOT NULL
            )
            """,
            """
            CREATE TABLE "groups" (
                group_id TEXT    NOT NULL,
                user_id  TEXT    NOT NULL,
                position INTEGER NOT NULL,
                PRIMARY KEY (group_id, user_id)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE alive (
                id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
                at REAL    NOT NULL
            )
            """,
        ),
    ),
    (
        2,
        (
            # One callback configuration per kind ("v4", "v1"), as JSON text.
            """
            CREATE TABLE callback_config (
                kind   TEXT NOT NULL PRIMARY KEY,
                config TEXT NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
)
assert _MIGRATIONS[-1][0] == SCHEMA_VERSION

_SQL_SAVE_LIVE = """
    INSERT INTO live_calls (call_id, snapshot, updated_at)
    SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM calls WHERE call_id = ?1)
    ON CONFLICT (call_id) DO UPDATE
        SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
"""
_SQL_INSERT_CALL = """
    INSERT INTO calls (call_id, sdk_app_id, caller, media_type, scene, call_type,
                       chat_group_id, start_time, accept_time, end_time, result,
                       end_reason, record)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (call_id) DO NOTHING
"""
_SQL_INSERT_USER_CALL = """
    INSERT INTO user_calls (user_id, call_id, start_time, result_type, hidden)
    VALUES (?, ?, ?, ?, 0)
"""
_SQL_DELETE_LIVE = "DELETE FROM live_calls WHERE call_id = ?"
_SQL_SAVE_SESSION = """
    INSERT INTO sessions (token, device_id, user_id, multi_device, sig_expires_at,
                          created_at, last_seen)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (token) DO UPDATE SET
        device_id = excluded.device_id, user_id = excluded.user_id,
        multi_device = excluded.multi_device, sig_expires_at = excluded.sig_expires_at,
        created_at = excluded.created_at, last_seen = excluded.last_seen
"""
_SQL_DELETE_SESSION = "DELETE FROM sessions WHERE token = ?"
_SQL_DELETE_GROUP = 'DELETE FROM "groups" WHERE group_id = ?'
_SQL_INSERT_MEMBER = 'INSERT INTO "groups" (group_id, user_id, position) VALUES (?, ?, ?)'
_SQL_HIDE = "UPDATE user_calls SET hidden = 1 WHERE user_id = ? AND call_id = ?"
_SQL_MARK_ALIVE = """
    INSERT INTO alive (id, at) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET at = max(alive.at, excluded.at)
"""
_SQL_SET_CALLBACK = """
    INSERT INTO callback_config (kind, config) VALUES (?, ?)
    ON CONFLICT (kind) DO UPDATE SET config = excluded.config
"""
_SQL_DELETE_CALLBACK = "DELETE FROM callback_config WHERE kind = ?"


def _record_json(record: CallRecord) -> str:
    return json.dumps(record.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _record_from_json(text: str) -> CallRecord:
    return CallRecord.from_dict(json.loads(text))


def _config_json(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False)


def _config_from_json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"callback_config holds {type(value).__name__}, not a JSON object")
    return value


def _call_row(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.call_id,
        record.sdk_app_id,
        record.caller,
        int(record.media_type),
        int(record.scene),
        record.call_type,
        record.chat_group_id,
        record.start_time,
        record.accept_time,
        record.end_time,
        record.result.value,
        int(record.end_reason),
        _record_json(record),
    )


def _runs(writes: Iterable[Write]) -> Iterable[tuple[type, list[Write]]]:
    """Consecutive writes of the same type, in order (so each run can use executemany)."""
    for kind, run in itertools.groupby(writes, key=type):
        yield kind, list(run)


def _last_members(run: list[SetGroupMembers]) -> dict[str, tuple[str, ...]]:
    """The final member list per group of a run of replaces, members de-duplicated."""
    return {w.group_id: tuple(dict.fromkeys(w.members)) for w in run}


# --------------------------------------------------------------------------- the store


class SqliteStore:
    """:class:`~.base.Store` on a SQLite file (or ``":memory:"``).

    Construct, then ``await open()`` before anything else (creates or migrates the
    schema), and ``await close()`` at shutdown. Use one instance from one event loop.
    A ``":memory:"`` store lives as long as the instance and is gone after ``close()``.
    Write failures raise the :mod:`sqlite3` exception of the failing batch.
    """

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        """``busy_timeout``: seconds a transaction waits for another process's lock."""
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._committer = GroupCommitter(self._commit_group)
        self._state = "new"

    # ---------------------------------------------------------------- lifecycle

    _checkpointer: _Checkpointer | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def commit_stats(self) -> CommitStats:
        """Group-commit counters: how many ``apply`` batches shared how many commits."""
        return self._committer.stats

    async def open(self) -> None:
        """Open the database and create or migrate its schema.

        Call once; afterwards the store is ready. Raises RuntimeError if the file
        cannot be opened or its schema is newer than this code understands.
        """
        if self._state != "new":
            raise RuntimeError(f"SqliteStore.open() called on a {self._state} store")
        self._state = "opening"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ringline-sqlite")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._state = "closed"
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self._state != "opening":  # close() ran meanwhile and closed the connection
            raise RuntimeError("SqliteStore was closed while it was opening")
        if self._path != ":memory:":
            self._checkpointer = _Checkpointer(self._path, self._busy_timeout)
            self._checkpointer.start()
        self._state = "open"

    async def close(self) -> None:
        """Commit every queued batch, then close the connection and the thread. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        try:
            await self._committer.close()
            if self._checkpointer is not None:
                await asyncio.to_thread(self._checkpointer.stop)
                self._checkpointer = None
            await self._run(self._close_sync)
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)
            self._state = "closed"

    async def schema_version(self) -> int:
        """The schema version recorded in the database (``SCHEMA_VERSION`` once open)."""
        return await self._read(self._schema_version_sync)

    # ---------------------------------------------------------------- writes

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction; return when committed.

        Concurrent calls are merged into one commit (see module doc). On failure
        nothing of this batch is applied and the error is raised; other batches are
        unaffected. The events that depend on the batch may be sent once this returns.
        """
        self._check_open()
        batch = tuple(writes)
        if not batch:
            return
        await self._committer.submit(batch)

    # ---------------------------------------------------------------- reads

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every live call, oldest update first."""
        rows = await self._read(
            self._fetchall,
            "SELECT call_id, snapshot, updated_at FROM live_calls ORDER BY updated_at, call_id",
            (),
        )
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def load_sessions(self) -> list[SessionRow]:
        """Every saved session (ordered by creation time)."""
        rows = await self._read(
            self._fetchall,
            "SELECT token, device_id, user_id, multi_device, sig_expires_at, created_at,"
            " last_seen FROM sessions ORDER BY created_at, token",
            (),
        )
        return [
            SessionRow(
                token=str(r[0]),
                device_id=str(r[1]),
                user_id=str(r[2]),
                multi_device=bool(r[3]),
                sig_expires_at=float(r[4]),
                created_at=float(r[5]),
                last_seen=float(r[6]),
            )
            for r in rows
        ]

    async def load_groups(self) -> dict[str, tuple[str, ...]]:
        """Every chat group with its members, in the order they were set."""
        rows = await self._read(
            self._fetchall,
            'SELECT group_id, user_id FROM "groups" ORDER BY group_id, position',
            (),
        )
        groups: dict[str, list[str]] = {}
        for group_id, user_id in rows:
            groups.setdefault(str(group_id), []).append(str(user_id))
        return {g: tuple(m) for g, m in groups.items()}

    async def last_alive(self) -> float | None:
        """The latest :class:`~.base.MarkAlive` time, or None on a fresh store."""
        rows = await self._read(self._fetchall, "SELECT at FROM alive WHERE id = 1", ())
        return float(rows[0][0]) if rows else None

    async def get_record(self, call_id: str) -> CallRecord | None:
        """The finished record of ``call_id``, or None."""
        rows = await self._read(self._fetchall, "SELECT record FROM calls WHERE call_id = ?", (call_id,))
        return _record_from_json(rows[0][0]) if rows else None

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind``, or None if unset."""
        rows = await self._read(self._fetchall, "SELECT config FROM callback_config WHERE kind = ?", (kind,))
        return _config_from_json(rows[0][0]) if rows else None

    async def query_user_calls(
        self,
        user_id: str,
        *,
        begin: float | None,
        end: float | None,
        result_type: CallResultType,
        limit: int,
    ) -> list[UserCallRow]:
        """The user's own, non-hidden calls, newest first (ties: call id descending).

        ``begin``/``end`` bound the start time (inclusive); ``result_type`` UNKNOWN = all;
        ``limit`` <= 0 returns an empty list.
        """
        if limit <= 0:
            return []
        where = ["u.user_id = ?", "u.hidden = 0"]
        args: list[Any] = [user_id]
        if begin is not None:
            where.append("u.start_time >= ?")
            args.append(begin)
        if end is not None:
            where.append("u.start_time <= ?")
            args.append(end)
        if result_type is not CallResultType.UNKNOWN:
            where.append("u.result_type = ?")
            args.append(int(result_type))
        args.append(limit)
        sql = (
            "SELECT c.record, u.result_type FROM user_calls AS u"
            " JOIN calls AS c ON c.call_id = u.call_id"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY u.start_time DESC, u.call_id DESC LIMIT ?"
        )
        rows = await self._read(self._fetchall, sql, tuple(args))
        return [
            UserCallRow(record=_record_from_json(r[0]), result_type=CallResultType(int(r[1]))) for r in rows
        ]

    async def query_records(
        self,
        *,
        start_time: float | None,
        end_time: float | None,
        results: Sequence[str] | None,
        call_type: str | None,
        page: int,
        per_page: int,
    ) -> tuple[int, list[CallRecord]]:
        """Exact total count and one page (1-based) of records, newest start time first.

        ``results`` None or empty = every result. Ties on start time are ordered by call
        id (descending) so pages never overlap. Raises ValueError if ``page`` or
        ``per_page`` is below 1.
        """
        if page < 1 or per_page < 1:
            raise ValueError(f"page and per_page must be >= 1 (got {page}, {per_page})")
        where: list[str] = []
        args: list[Any] = []
        if start_time is not None:
            where.append("start_time >= ?")
            args.append(start_time)
        if end_time is not None:
            where.append("start_time <= ?")
            args.append(end_time)
        if results:
            values = list(dict.fromkeys(str(r) for r in results))
            where.append(f"result IN ({', '.join('?' * len(values))})")
            args.extend(values)
        if call_type is not None:
            where.append("call_type = ?")
            args.append(call_type)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        offset = (page - 1) * per_page
        total, texts = await self._read(self._query_records_sync, clause, tuple(args), per_page, offset)
        return total, [_record_from_json(t) for t in texts]

    # ---------------------------------------------------------------- thread side

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"SqliteStore is {self._state}: await open() first, and do not use it after close()"
            )

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        self._check_open()
        return await self._run(fn, *args)

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _open_sync(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -32000")
            if self._path != ":memory:":
                # Checkpoints (the only fsyncs in WAL + synchronous=NORMAL) run on a
                # thread of their own, so they never stall a commit (see _Checkpointer).
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._migrate_sync(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _migrate_sync(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER NOT NULL PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = int(row[0])
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}, newer than this Ringline"
                    f" understands ({SCHEMA_VERSION}); upgrade Ringline"
                )
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA analysis_limit = 400")
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # only a planner hint; closing matters more
        finally:
            conn.close()

    def _schema_version_sync(self) -> int:
        row = self._db().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0])

    def _fetchall(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return self._db().execute(sql, args).fetchall()

    def _query_records_sync(
        self, clause: str, args: tuple[Any, ...], limit: int, offset: int
    ) -> tuple[int, list[str]]:
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot for the count and the page
        try:
            total = int(conn.execute(f"SELECT count(*) FROM calls{clause}", args).fetchone()[0])
            texts: list[str] = []
            if offset < total:
                texts = [
                    str(r[0])
                    for r in conn.execute(
                        f"SELECT record FROM calls{clause}"
                        " ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?",
                        (*args, limit, offset),
                    )
                ]
        finally:
            conn.execute("COMMIT")
        return total, texts

    async def _commit_group(self, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        return await self._run(self._commit_group_sync, batches)

    def _commit_group_sync(self, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        conn = self._db()
        if len(batches) > 1:
            try:
                self._transaction_sync(conn, itertools.chain.from_iterable(batches))
            except sqlite3.OperationalError as exc:  # the database, not the content
                return [exc] * len(batches)
            except Exception:
                pass  # retried batch by batch just below
            else:
                return [None] * len(batches)
        results: list[BaseException | None] = []
        for batch in batches:
            try:
                self._transaction_sync(conn, batch)
            except Exception as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def _transaction_sync(self, conn: sqlite3.Connection, writes: Iterable[Write]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, run in _runs(writes):
                self._apply_run_sync(conn, kind, run)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _apply_run_sync(conn: sqlite3.Connection, kind: type, run: list[Write]) -> None:
        if kind is SaveLiveCall:
            lives = cast(list[SaveLiveCall], run)
            conn.executemany(_SQL_SAVE_LIVE, [(w.call_id, w.snapshot, w.updated_at) for w in lives])
        elif kind is FinishCall:
            for w in cast(list[FinishCall], run):
                record = w.record
                if conn.execute(_SQL_INSERT_CALL, _call_row(record)).rowcount == 1:
                    conn.executemany(
                        _SQL_INSERT_USER_CALL,
                        [
                            (user_id, record.call_id, record.start_time, int(result_type))
                            for user_id, result_type in w.user_results
                        ],
                    )
                conn.execute(_SQL_DELETE_LIVE, (record.call_id,))
        elif kind is SaveSession:
            conn.executemany(
                _SQL_SAVE_SESSION,
                [
                    (
                        s.token,
                        s.device_id,
                        s.user_id,
                        int(s.multi_device),
                        s.sig_expires_at,
                        s.created_at,
                        s.last_seen,
                    )
                    for s in (w.session for w in cast(list[SaveSession], run))
                ],
            )
        elif kind is DeleteSession:
            conn.executemany(_SQL_DELETE_SESSION, [(w.token,) for w in cast(list[DeleteSession], run)])
        elif kind is SetGroupMembers:
            groups = _last_members(cast(list[SetGroupMembers], run))
            conn.executemany(_SQL_DELETE_GROUP, [(g,) for g in groups])
            conn.executemany(
                _SQL_INSERT_MEMBER,
                [(g, m, i) for g, members in groups.items() for i, m in enumerate(members)],
            )
        elif kind is HideUserCalls:
            conn.executemany(
                _SQL_HIDE,
                [(w.user_id, c) for w in cast(list[HideUserCalls], run) for c in w.call_ids],
            )
        elif kind is MarkAlive:
            conn.execute(_SQL_MARK_ALIVE, (max(w.at for w in cast(list[MarkAlive], run)),))
        elif kind is SetCallbackConfig:
            for c in cast(list[SetCallbackConfig], run):  # in order: the last one of a kind wins
                if c.config is None:
                    conn.execute(_SQL_DELETE_CALLBACK, (c.kind,))
                else:
                    conn.execute(_SQL_SET_CALLBACK, (c.kind, _config_json(c.config)))
        else:
            raise TypeError(f"not a store write: {run[0]!r}")


class _Checkpointer:
    """Copies the WAL back into the database file every ``interval`` seconds from its
    own connection and thread (PASSIVE: never waits for, nor blocks, the writer).

    SQLite's automatic checkpoint would run inside a ``COMMIT`` on the writer thread
    and hold every commit behind it for the length of two fsyncs; measured at 250
    calls/s that was the whole p99 of invite→ring. Start with :meth:`start`, stop
    with :meth:`stop` (joins the thread, then runs a last checkpoint).
    """

    def __init__(self, path: str, busy_timeout: float, interval: float = 0.5) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ringline-sqlite-checkpoint")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.warning("SQLite checkpoint failed; will retry", exc_info=True)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()
