"""The PostgreSQL store, on an :mod:`asyncpg` connection pool.

Needs the optional extra: ``pip install 'ringline[postgres]'`` (asyncpg is imported
only by :meth:`PostgresStore.open`, so this module imports without it).

Writes use the same group commit as the SQLite store (:class:`.sqlite.GroupCommitter`):
one commit round at a time, on one pooled connection; batches that arrive meanwhile are
merged into the next round's single transaction, and if that transaction fails every
batch is retried alone, so a bad batch fails only its own caller (unless the connection
itself was lost: then every batch of the round fails with that error). Consecutive
writes of one type go out as one pipelined ``executemany``. Reads use other pooled
connections and run concurrently with writes; ``query_records`` reads its count and its
page in one REPEATABLE READ snapshot.

The tables live in the first schema of the connection's ``search_path``; to put them in
their own schema, add ``?search_path=myschema`` to the DSN (asyncpg passes unknown DSN
query parameters as server settings) and create that schema beforehand.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

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
from .sqlite import CommitStats, GroupCommitter

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

#: The schema version this code creates and understands (``schema_version`` table).
SCHEMA_VERSION = 2

_log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'ringline[postgres]'"

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE calls (
                call_id       TEXT             NOT NULL PRIMARY KEY,
                sdk_app_id    BIGINT           NOT NULL,
                caller        TEXT             NOT NULL,
                media_type    INTEGER          NOT NULL,
                scene         INTEGER          NOT NULL,
                call_type     TEXT             NOT NULL
                              CHECK (call_type IN ('SingleCall', 'MultiCall')),
                chat_group_id TEXT             NOT NULL,
                start_time    DOUBLE PRECISION NOT NULL,
                accept_time   DOUBLE PRECISION NOT NULL,
                end_time      DOUBLE PRECISION NOT NULL,
                result        TEXT             NOT NULL,
                end_reason    INTEGER          NOT NULL,
                record        TEXT             NOT NULL
            )
            """,
            "CREATE INDEX calls_by_start ON calls (start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_result ON calls (result, start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_type ON calls (call_type, start_time DESC, call_id DESC)",
            """
            CREATE TABLE user_calls (
                user_id     TEXT             NOT NULL,
                call_id     TEXT             NOT NULL
                            REFERENCES calls (call_id) ON DELETE CASCADE,
                start_time  DOUBLE PRECISION NOT NULL,
                result_type INTEGER          NOT NULL,
                hidden      BOOLEAN          NOT NULL DEFAULT FALSE,
                PRIMARY KEY (user_id, call_id)
            )
            """,
            "CREATE INDEX user_calls_by_start ON user_calls (user_id, start_time DESC, call_id DESC)",
            "CREATE INDEX user_calls_by_call ON user_calls (call_id)",
            """
            CREATE TABLE live_calls (
                call_id    TEXT             NOT NULL PRIMARY KEY,
                snapshot   TEXT             NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE sessions (
                token          TEXT             NOT NULL PRIMARY KEY,
                device_id      TEXT             NOT NULL,
                user_id        TEXT             NOT NULL,
                multi_device   BOOLEAN          NOT NULL,
                sig_expires_at DOUBLE PRECISION NOT NULL,
                created_at     DOUBLE PRECISION NOT NULL,
                last_seen      DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE "groups" (
                group_id TEXT    NOT NULL,
                user_id  TEXT    NOT NULL,
                position INTEGER NOT NULL,
                PRIMARY KEY (group_id, user_id)
            )
            """,
            """
            CREATE TABLE alive (
                id INTEGER          NOT NULL PRIMARY KEY CHECK (id = 1),
                at DOUBLE PRECISION NOT NULL
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
            )
            """,
        ),
    ),
)
assert _MIGRATIONS[-1][0] == SCHEMA_VERSION

_SQL_SAVE_LIVE = """
    INSERT INTO live_calls (call_id, snapshot, updated_at)
    SELECT $1::text, $2::text, $3::double precision
    WHERE NOT EXISTS (SELECT 1 FROM calls WHERE call_id = $1::text)
    ON CONFLICT (call_id) DO UPDATE
        SET snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at
"""
# One statement per FinishCall: insert the record unless it exists, index it for its
# users only if it was inserted now, and delete the live snapshot in any case.
_SQL_FINISH = """
    WITH inserted AS (
        INSERT INTO calls (call_id, sdk_app_id, caller, media_type, scene, call_type,
                           chat_group_id, start_time, accept_time, end_time, result,
                           end_reason, record)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (call_id) DO NOTHING
        RETURNING call_id, start_time
    ), indexed AS (
        INSERT INTO user_calls (user_id, call_id, start_time, result_type, hidden)
        SELECT u.user_id, i.call_id, i.start_time, u.result_type, FALSE
        FROM inserted AS i
        CROSS JOIN unnest($14::text[], $15::integer[]) AS u (user_id, result_type)
    )
    DELETE FROM live_calls WHERE call_id = $1
"""
_SQL_SAVE_SESSION = """
    INSERT INTO sessions (token, device_id, user_id, multi_device, sig_expires_at,
                          created_at, last_seen)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (token) DO UPDATE SET
        device_id = EXCLUDED.device_id, user_id = EXCLUDED.user_id,
        multi_device = EXCLUDED.multi_device, sig_expires_at = EXCLUDED.sig_expires_at,
        created_at = EXCLUDED.created_at, last_seen = EXCLUDED.last_seen
"""
_SQL_DELETE_SESSION = "DELETE FROM sessions WHERE token = $1"
_SQL_DELETE_GROUP = 'DELETE FROM "groups" WHERE group_id = $1'
_SQL_INSERT_MEMBERS = """
    INSERT INTO "groups" (group_id, user_id, position)
    SELECT $1::text, m.user_id, (m.ord - 1)::integer
    FROM unnest($2::text[]) WITH ORDINALITY AS m (user_id, ord)
"""
_SQL_HIDE = """
    UPDATE user_calls SET hidden = TRUE
    WHERE user_id = $1 AND call_id = ANY($2::text[]) AND NOT hidden
"""
_SQL_MARK_ALIVE = """
    INSERT INTO alive (id, at) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET at = GREATEST(alive.at, EXCLUDED.at)
"""
_SQL_SET_CALLBACK = """
    INSERT INTO callback_config (kind, config) VALUES ($1, $2)
    ON CONFLICT (kind) DO UPDATE SET config = EXCLUDED.config
"""
_SQL_DELETE_CALLBACK = "DELETE FROM callback_config WHERE kind = $1"


def _redact(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = "&".join(
        "password=***" if q.lower().startswith("password=") else q for q in parts.query.split("&") if q
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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


def _finish_args(w: FinishCall) -> tuple[Any, ...]:
    r = w.record
    return (
        r.call_id,
        r.sdk_app_id,
        r.caller,
        int(r.media_type),
        int(r.scene),
        r.call_type,
        r.chat_group_id,
        r.start_time,
        r.accept_time,
        r.end_time,
        r.result.value,
        int(r.end_reason),
        _record_json(r),
        [u for u, _ in w.user_results],
        [int(t) for _, t in w.user_results],
    )


class PostgresStore:
    """:class:`~.base.Store` on PostgreSQL (asyncpg pool of ``min_size..max_size``).

    Construct, then ``await open()`` (connects, creates or migrates the schema under an
    advisory lock, so several servers may open the same database at once), and
    ``await close()`` at shutdown. Use one instance from one event loop. Write failures
    raise the asyncpg exception of the failing batch.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(f"need 0 <= min_size <= max_size, max_size >= 1 (got {min_size}, {max_size})")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None  # asyncpg.Pool; asyncpg ships no type information
        self._committer = GroupCommitter(self._commit_group)
        self._state = "new"

    # ---------------------------------------------------------------- lifecycle

    @property
    def dsn(self) -> str:
        """The DSN handed to asyncpg (may contain a password: do not log it)."""
        return self._dsn

    @property
    def commit_stats(self) -> CommitStats:
        """Group-commit counters: how many ``apply`` batches shared how many commits."""
        return self._committer.stats

    async def open(self) -> None:
        """Connect and create or migrate the schema.

        Call once; afterwards the store is ready. Raises RuntimeError if asyncpg is not
        installed, the server is unreachable or refuses us, or the schema is newer than
        this code understands.
        """
        if self._state != "new":
            raise RuntimeError(f"PostgresStore.open() called on a {self._state} store")
        try:
            import asyncpg
        except ImportError as exc:
            raise RuntimeError(f"the PostgreSQL store needs asyncpg: {_INSTALL_HINT}") from exc
        self._state = "opening"
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=self._min_size, max_size=self._max_size)
        except Exception as exc:
            self._state = "closed"
            raise RuntimeError(f"cannot connect to PostgreSQL at {_redact(self._dsn)}: {exc}") from exc
        if self._state != "opening":  # close() ran meanwhile
            await pool.close()
            raise RuntimeError("PostgresStore was closed while it was opening")
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._state = "closed"
            self._pool = None
            await pool.close()
            raise
        if self._state != "opening":
            raise RuntimeError("PostgresStore was closed while it was opening")
        self._state = "open"

    async def close(self) -> None:
        """Commit every queued batch, then close the pool. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        try:
            await self._committer.close()
        finally:
            pool, self._pool = self._pool, None
            self._state = "closed"
            if pool is not None:
                await pool.close()

    async def schema_version(self) -> int:
        """The schema version recorded in the database (``SCHEMA_VERSION`` once open)."""
        self._check_open()
        return int(await self._pool.fetchval("SELECT max(version) FROM schema_version"))

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialise concurrent openers of the same schema (CREATE TABLE IF NOT
            # EXISTS is not safe against a concurrent creator).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ringline.schema:' || coalesce(current_schema(), '')))"
            )
            exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists:
                await conn.execute(
                    "CREATE TABLE schema_version ("
                    " version INTEGER NOT NULL PRIMARY KEY,"
                    " applied_at DOUBLE PRECISION NOT NULL)"
                )
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}, newer than this Ringline"
                    f" understands ({SCHEMA_VERSION}); upgrade Ringline"
                )
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                    version,
                    time.time(),
                )

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"PostgresStore is {self._state}: await open() first, and do not use it after close()"
            )

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

    async def _commit_group(self, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        try:
            conn = await self._pool.acquire()
        except Exception as exc:  # no connection at all: every batch fails with it
            return [exc] * len(batches)
        try:
            return await self._commit_on(conn, batches)
        finally:
            try:
                await self._pool.release(conn)
            except Exception:  # the outcome is already known; the pool replaces the conn
                _log.warning("releasing a PostgreSQL connection failed", exc_info=True)

    async def _commit_on(self, conn: Any, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        if len(batches) > 1:
            try:
                async with conn.transaction():
                    await self._apply_writes(conn, itertools.chain.from_iterable(batches))
            except Exception as exc:
                if conn.is_closed():  # the connection, not the content: no point retrying
                    return [exc] * len(batches)
                # otherwise retried batch by batch just below
            else:
                return [None] * len(batches)
        results: list[BaseException | None] = []
        for batch in batches:
            try:
                async with conn.transaction():
                    await self._apply_writes(conn, batch)
            except Exception as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    @staticmethod
    async def _apply_writes(conn: Any, writes: Any) -> None:
        for kind, group in itertools.groupby(writes, key=type):
            run: list[Write] = list(group)
            if kind is SaveLiveCall:
                lives = cast(list[SaveLiveCall], run)
                await conn.executemany(_SQL_SAVE_LIVE, [(w.call_id, w.snapshot, w.updated_at) for w in lives])
            elif kind is FinishCall:
                await conn.executemany(_SQL_FINISH, [_finish_args(w) for w in cast(list[FinishCall], run)])
            elif kind is SaveSession:
                await conn.executemany(
                    _SQL_SAVE_SESSION,
                    [
                        (
                            s.token,
                            s.device_id,
                            s.user_id,
                            bool(s.multi_device),
                            s.sig_expires_at,
                            s.created_at,
                            s.last_seen,
                        )
                        for s in (w.session for w in cast(list[SaveSession], run))
                    ],
                )
            elif kind is DeleteSession:
                await conn.executemany(
                    _SQL_DELETE_SESSION, [(w.token,) for w in cast(list[DeleteSession], run)]
                )
            elif kind is SetGroupMembers:
                # Only the last replace of each group in a run matters.
                groups = {
                    w.group_id: list(dict.fromkeys(w.members)) for w in cast(list[SetGroupMembers], run)
                }
                await conn.executemany(_SQL_DELETE_GROUP, [(g,) for g in groups])
                await conn.executemany(_SQL_INSERT_MEMBERS, [(g, m) for g, m in groups.items() if m])
            elif kind is HideUserCalls:
                await conn.executemany(
                    _SQL_HIDE,
                    [(w.user_id, list(w.call_ids)) for w in cast(list[HideUserCalls], run)],
                )
            elif kind is MarkAlive:
                await conn.execute(_SQL_MARK_ALIVE, max(w.at for w in cast(list[MarkAlive], run)))
            elif kind is SetCallbackConfig:
                for c in cast(list[SetCallbackConfig], run):  # in order: the last one of a kind wins
                    if c.config is None:
                        await conn.execute(_SQL_DELETE_CALLBACK, c.kind)
                    else:
                        await conn.execute(_SQL_SET_CALLBACK, c.kind, _config_json(c.config))
            else:
                raise TypeError(f"not a store write: {run[0]!r}")

    # ---------------------------------------------------------------- reads

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every live call, oldest update first."""
        self._check_open()
        rows = await self._pool.fetch(
            "SELECT call_id, snapshot, updated_at FROM live_calls ORDER BY updated_at, call_id"
        )
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def load_sessions(self) -> list[SessionRow]:
        """Every saved session (ordered by creation time)."""
        self._check_open()
        rows = await self._pool.fetch(
            "SELECT token, device_id, user_id, multi_device, sig_expires_at, created_at,"
            " last_seen FROM sessions ORDER BY created_at, token"
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
        self._check_open()
        rows = await self._pool.fetch('SELECT group_id, user_id FROM "groups" ORDER BY group_id, position')
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(str(r[0]), []).append(str(r[1]))
        return {g: tuple(m) for g, m in groups.items()}

    async def last_alive(self) -> float | None:
        """The latest :class:`~.base.MarkAlive` time, or None on a fresh store."""
        self._check_open()
        at = await self._pool.fetchval("SELECT at FROM alive WHERE id = 1")
        return None if at is None else float(at)

    async def get_record(self, call_id: str) -> CallRecord | None:
        """The finished record of ``call_id``, or None."""
        self._check_open()
        text = await self._pool.fetchval("SELECT record FROM calls WHERE call_id = $1", call_id)
        return None if text is None else _record_from_json(str(text))

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind``, or None if unset."""
        self._check_open()
        text = await self._pool.fetchval("SELECT config FROM callback_config WHERE kind = $1", kind)
        return None if text is None else _config_from_json(str(text))

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
        self._check_open()
        if limit <= 0:
            return []
        args: list[Any] = [user_id]
        where = ["u.user_id = $1", "NOT u.hidden"]
        if begin is not None:
            args.append(float(begin))
            where.append(f"u.start_time >= ${len(args)}")
        if end is not None:
            args.append(float(end))
            where.append(f"u.start_time <= ${len(args)}")
        if result_type is not CallResultType.UNKNOWN:
            args.append(int(result_type))
            where.append(f"u.result_type = ${len(args)}")
        args.append(limit)
        sql = (
            "SELECT c.record, u.result_type FROM user_calls AS u"
            " JOIN calls AS c ON c.call_id = u.call_id"
            f" WHERE {' AND '.join(where)}"
            f" ORDER BY u.start_time DESC, u.call_id DESC LIMIT ${len(args)}"
        )
        rows = await self._pool.fetch(sql, *args)
        return [
            UserCallRow(record=_record_from_json(str(r[0])), result_type=CallResultType(int(r[1])))
            for r in rows
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
        self._check_open()
        if page < 1 or per_page < 1:
            raise ValueError(f"page and per_page must be >= 1 (got {page}, {per_page})")
        args: list[Any] = []
        where: list[str] = []
        if start_time is not None:
            args.append(float(start_time))
            where.append(f"start_time >= ${len(args)}")
        if end_time is not None:
            args.append(float(end_time))
            where.append(f"start_time <= ${len(args)}")
        if results:
            args.append(list(dict.fromkeys(str(r) for r in results)))
            where.append(f"result = ANY(${len(args)}::text[])")
        if call_type is not None:
            args.append(call_type)
            where.append(f"call_type = ${len(args)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        offset = (page - 1) * per_page
        n = len(args)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            total = int(await conn.fetchval(f"SELECT count(*) FROM calls{clause}", *args))
            rows: list[Any] = []
            if offset < total:
                rows = await conn.fetch(
                    f"SELECT record FROM calls{clause}"
                    f" ORDER BY start_time DESC, call_id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
                    *args,
                    per_page,
                    offset,
                )
        return total, [_record_from_json(str(r[0])) for r in rows]
