"""The default store: SQLite through the stdlib :mod:`sqlite3`.

The operations are those of :mod:`.engine`, written once for both backends; this module
is SQLite's dialect (:class:`SqliteDialect`: its statements and the steps it takes its
own way) and its driver (:func:`run_sync`).

Threading: the store owns two connections. The *writer* runs every write transaction
on the event loop's own thread: it waits for the write lock without blocking the loop
(``BEGIN IMMEDIATE`` tried again in short steps while another process, a callback
worker, holds it), then runs the transaction's statements and its ``COMMIT`` in one go,
so no other statement runs in between. A transaction here is short (no fsync: see
*Durability*), and running it where the rest of the process runs spares a thread
hand-off per round; above all the lock is held only as long as the statements take,
never while a thread waits for the GIL between two of them (with a worker thread, each
statement of a transaction could wait up to the interpreter's switch interval, 5 ms,
for a busy event loop, and so did every other process waiting for the lock). The
*reader*, a second connection on a dedicated thread, runs every read, so a long query
(a deep page of records) never stalls the loop; WAL mode lets it read while the writer
writes, and a read issued after :meth:`SqliteStore.apply` returned always sees that
batch. A ``":memory:"`` database has no second connection (it would be another
database): its reads run on the writer, between transactions.

Group commit: :meth:`SqliteStore.apply` hands its batch to a
:class:`~.batching.GroupCommitter`. While one transaction is waiting for the lock or
running, newly arriving batches queue up; when it finishes, every queued batch is merged
into the next ``BEGIN IMMEDIATE ... COMMIT`` and each caller is resumed after that
commit. If the merged transaction fails because of what it contains (a constraint, a
bad value), the batches are retried one by one, each in its own transaction, so a bad
batch fails only its own caller. If it fails because of the database itself
(:class:`sqlite3.OperationalError`: locked past the busy timeout, disk full, I/O
error), every batch of the round fails with that error at once, without retrying each
one against the same wall.

Callback outbox: :attr:`SqliteStore.outbox` (a :class:`SqliteOutbox`) keeps callback
deliveries in the ``outbox`` and ``webhook_gone`` tables (schema version 3; layout and
the *head* invariant in :mod:`.outbox`). Deliveries enter with the
:class:`~.base.DeliveriesWrite` write, in the batch of their event. The deliverer's
claims, marks and releases are writes like any other, each round in one ``BEGIN
IMMEDIATE`` transaction; operations that arrive while a round runs are merged
into the next one (:class:`~.outbox.OpBatcher`), like batches of writes.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A committed batch
survives a crash of the process; after a power loss or OS crash the most recent
transactions may roll back (the database stays consistent). That is the trade SQLite
recommends for WAL and what makes thousands of commits per second possible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..webhooks.delivery import DeliveryState
from . import outbox
from .base import FinishedCallWrite, UserCallsHide
from .batching import Ok
from .engine import Runner, SqlOutbox, SqlStore, StoreDialect, Transition, in_rounds, migrate
from .ops import Execute, ExecuteMany, Fetch, Op, Query, fetch_one
from .outbox import (
    DEFAULT_LEASE,
    OPEN_STATES,
    OUTBOX_COLUMNS,
    GroupInfo,
    NewRow,
    OpRefused,
)
from .schema import SCHEMA_VERSION, SQLITE_DDL, migrations
from .sql import SQLITE, RecordFilter, Statement, records_count_by_day
from .sql import call_columns as _call_row  # the name bench/callbacks.py seeds with

log = logging.getLogger("ringline.store")

__all__ = ["SCHEMA_VERSION", "SqliteDialect", "SqliteOutbox", "SqliteStore", "run_sync"]

_T = TypeVar("_T")

#: The longest step between two tries of a write transaction for the lock (``_begin``).
LOCK_POLL_MAX = 0.001
#: Default seconds a write waiting for the lock tries again at every turn of the event
#: loop before it steps back to sleeps (``SqliteStore(lock_spin=…)``).
LOCK_SPIN = 0.002

# What the dialect reads from this module each time it uses it (see StoreDialect), so
# a test may stand in the code of an older schema version: the migrations in SQLite's
# DDL, the purge chunk and the planning of outbox rows.
_MIGRATIONS = migrations(SQLITE_DDL)
# A purge's transactions run on the event loop's thread like every write: 250 rows a
# transaction (8-21 ms measured, against 85-105 ms for 5,000) keep each stall short.
PURGE_CHUNK = 250
plan_inserts = outbox.plan_inserts

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
_SQL_INSERT_MEMBER = 'INSERT INTO "groups" (group_id, user_id, position) VALUES (?, ?, ?)'
_SQL_HIDE = "UPDATE user_calls SET hidden = 1 WHERE user_id = ? AND call_id = ?"
_SQL_MARK_ALIVE = """
    INSERT INTO alive (id, at) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET at = max(alive.at, excluded.at)
"""
# -- the outbox (see .outbox for the head invariant)

_SQL_OUTBOX_INSERT = """
    INSERT INTO outbox (event_id, url, call_id, sequence, command, body, created_at,
                        window_start, state, head, next_at, last_error, finished_at, extra_query)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_OUTBOX_LAST_SEQ = "SELECT max(sequence) FROM outbox WHERE url = ? AND call_id = ?"
_SQL_OUTBOX_HAS_OPEN = """
    SELECT EXISTS (SELECT 1 FROM outbox
                   WHERE url = ? AND call_id = ? AND state IN ('pending', 'in_flight'))
"""
_SQL_GONE_AT = "SELECT gone_at FROM webhook_gone WHERE url = ?"
# Due heads in claim order, plus heads whose claim expired (few: at most what was in
# flight when a deliverer died), then the first `limit` of both in claim order.
# INDEXED BY here and below: the plan must not depend on statistics (a claim must never
# scan the pending rows; dropping a url or purging must read only the rows they change).
_SQL_CLAIM = f"""
    SELECT {OUTBOX_COLUMNS} FROM (
        SELECT * FROM (
            SELECT {OUTBOX_COLUMNS} FROM outbox INDEXED BY outbox_due
            WHERE head = 1 AND state = 'pending' AND next_at <= ?1
            ORDER BY next_at, created_at, sequence LIMIT ?2
        )
        UNION ALL
        SELECT {OUTBOX_COLUMNS} FROM outbox INDEXED BY outbox_expired
        WHERE head = 1 AND state = 'in_flight' AND leased_until <= ?1
    )
    ORDER BY next_at, created_at, sequence LIMIT ?2
"""
_SQL_TAKE = "UPDATE outbox SET state = 'in_flight', leased_until = ?, claimed_by = ? WHERE event_id = ?"
# In-flight rows are heads: the partial index of in-flight heads holds every claim.
_SQL_CLAIMS_OF = """
    SELECT event_id, url, call_id FROM outbox INDEXED BY outbox_expired
    WHERE head = 1 AND state = 'in_flight' AND claimed_by = ?
"""
_SQL_CLAIM_OWNERS = """
    SELECT event_id, claimed_by FROM outbox INDEXED BY outbox_expired
    WHERE head = 1 AND state = 'in_flight'
"""
_SQL_STATE_OF = "SELECT state, url, call_id, next_at FROM outbox WHERE event_id = ?"
# Restores the head invariant of one (url, call_id): flips `head` on the open rows
# where it is wrong (at most two: the old head and the new one).
_SQL_RECOMPUTE_HEAD = """
    UPDATE outbox SET head = 1 - head
    WHERE url = ?1 AND call_id = ?2 AND state IN ('pending', 'in_flight')
      AND head != (event_id IS (
          SELECT event_id FROM outbox
          WHERE url = ?1 AND call_id = ?2 AND state IN ('pending', 'in_flight')
          ORDER BY state = 'in_flight' DESC, sequence LIMIT 1))
"""
_SQL_DELIVERED = """
    UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_attempt_at = ?,
        last_status = ?, last_error = '', finished_at = ?, leased_until = 0, head = 0
    WHERE event_id = ?
"""
_SQL_GIVEN_UP = """
    UPDATE outbox SET state = 'given_up', attempts = attempts + 1, last_attempt_at = ?,
        last_status = ?, last_error = ?, finished_at = ?, leased_until = 0, head = 0
    WHERE event_id = ?
"""
_SQL_RETRY_LATER = """
    UPDATE outbox SET state = 'pending', attempts = attempts + 1, last_attempt_at = ?,
        last_status = ?, last_error = ?, next_at = ?, leased_until = 0
    WHERE event_id = ?
"""
# The attempt that got the 410: counted and finished as gone (its group has no open row
# left once _SQL_DROP_GONE has run, so no head to recompute).
_SQL_GONE_ATTEMPT = """
    UPDATE outbox SET state = 'gone', attempts = attempts + 1, last_attempt_at = ?1,
        last_status = ?2, last_error = ?3, finished_at = ?1, leased_until = 0, head = 0
    WHERE event_id = ?4
"""
_SQL_DROP_GONE = """
    UPDATE outbox INDEXED BY outbox_open
    SET state = 'gone', finished_at = ?, leased_until = 0, head = 0, last_error = ?
    WHERE url = ? AND state IN ('pending', 'in_flight')
"""
_SQL_RELEASE = "UPDATE outbox SET state = 'pending', leased_until = 0 WHERE event_id = ?"
_SQL_DUE_NOW = "UPDATE outbox SET next_at = min(next_at, ?) WHERE event_id = ?"
_SQL_REOPEN = """
    UPDATE outbox SET state = 'pending', next_at = ?1, window_start = ?1, finished_at = NULL,
        leased_until = 0, head = 0
    WHERE event_id = ?2
"""
_SQL_PURGE = """
    DELETE FROM outbox WHERE rowid IN (
        SELECT rowid FROM outbox INDEXED BY outbox_delivered
        WHERE state = 'delivered' AND finished_at < ? LIMIT ?)
"""


# --------------------------------------------------------------------------- the driver


def run_sync(conn: sqlite3.Connection, op: Op[_T]) -> _T:
    """Run the operation ``op`` on ``conn`` (on the connection's thread) to its end."""
    result: Any = None
    try:
        while True:
            query = op.send(result)
            if isinstance(query, Execute):
                result = conn.execute(query.sql, query.args).rowcount
            elif isinstance(query, ExecuteMany):
                conn.executemany(query.sql, query.rows)
                result = None
            else:
                result = conn.execute(query.sql, query.args).fetchall()
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        op.close()


# --------------------------------------------------------------------------- the dialect


class SqliteDialect(StoreDialect):
    """SQLite's statements, and its read-then-write steps (no ``RETURNING``, no row
    locks: a ``BEGIN IMMEDIATE`` transaction holds the whole database)."""

    sql = SQLITE
    real = "REAL"

    def finish_calls(self, run: list[FinishedCallWrite]) -> Op[None]:
        for w in run:
            record = w.record
            if (yield Execute(_SQL_INSERT_CALL, _call_row(record))) == 1:
                yield ExecuteMany(
                    _SQL_INSERT_USER_CALL,
                    [
                        (user, record.call_id, record.start_time, int(result))
                        for user, result in w.user_results
                    ],
                )
            yield Execute(_SQL_DELETE_LIVE, (record.call_id,))

    def insert_members(self, groups: dict[str, tuple[str, ...]]) -> ExecuteMany:
        return ExecuteMany(
            _SQL_INSERT_MEMBER, [(g, m, i) for g, members in groups.items() for i, m in enumerate(members)]
        )

    def hide_calls(self, run: list[UserCallsHide]) -> ExecuteMany:
        return ExecuteMany(_SQL_HIDE, [(w.user_id, c) for w in run for c in w.call_ids])

    def existing_ids(self, event_ids: list[str]) -> Op[set[str]]:
        existing: set[str] = set()
        for k in range(0, len(event_ids), 500):  # one look-up per 500, not one per delivery
            chunk = tuple(event_ids[k : k + 500])
            marks = ", ".join("?" * len(chunk))
            rows = yield Fetch(f"SELECT event_id FROM outbox WHERE event_id IN ({marks})", chunk)
            existing.update(str(r[0]) for r in rows)
        return existing

    def open_groups(self, keys: list[tuple[str, str]]) -> Op[dict[tuple[str, str], GroupInfo]]:
        groups: dict[tuple[str, str], GroupInfo] = {}
        for key in keys:
            last = (yield Fetch(_SQL_OUTBOX_LAST_SEQ, key))[0][0]
            has_open = bool((yield Fetch(_SQL_OUTBOX_HAS_OPEN, key))[0][0])
            groups[key] = GroupInfo(None if last is None else int(last), has_open)
        return groups

    def gone_urls(self, urls: list[str]) -> Op[dict[str, float]]:
        gone: dict[str, float] = {}
        for url in urls:
            row = yield from fetch_one(_SQL_GONE_AT, url)
            if row is not None:
                gone[url] = float(row[0])
        return gone

    def insert_outbox(self, rows: list[NewRow]) -> Query:
        return ExecuteMany(_SQL_OUTBOX_INSERT, [(*r[:9], int(r.head), *r[10:]) for r in rows])

    def claim(self, now: float, limit: int, until: float, owner: str) -> Op[list[Any]]:
        rows: list[Any] = yield Fetch(_SQL_CLAIM, (now, limit))
        yield ExecuteMany(_SQL_TAKE, [(until, owner, r[0]) for r in rows])
        return rows

    def transition(
        self, to: Transition, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> Op[str | None]:
        row = yield from fetch_one(_SQL_STATE_OF, event_id)
        if row is None:
            return None
        state, url, call_id = str(row[0]), str(row[1]), str(row[2])
        if to == "delivered":
            if state == DeliveryState.DELIVERED:
                return state
            yield Execute(_SQL_DELIVERED, (at, status, at, event_id))
        elif state != DeliveryState.IN_FLIGHT:
            return state
        elif to == "given_up":
            yield Execute(_SQL_GIVEN_UP, (at, status, error, at, event_id))
        else:
            yield Execute(_SQL_RETRY_LATER, (at, status, error, next_at, event_id))
        if state in OPEN_STATES:
            yield Execute(_SQL_RECOMPUTE_HEAD, (url, call_id))
        return state

    def gone_attempt(self, event_id: str, url: str, at: float, status: int, error: str) -> Op[bool | None]:
        row = yield from fetch_one(_SQL_STATE_OF, event_id)
        if row is None:
            return None
        if row[0] != DeliveryState.IN_FLIGHT or row[1] != url:
            return False
        yield Execute(_SQL_GONE_ATTEMPT, (at, status, error, event_id))
        return True

    def release_ids(self, event_ids: list[str]) -> Op[list[tuple[str, str]]]:
        groups: list[tuple[str, str]] = []
        for event_id in event_ids:
            row = yield from fetch_one(_SQL_STATE_OF, event_id)
            if row is not None and row[0] == DeliveryState.IN_FLIGHT:
                yield Execute(_SQL_RELEASE, (event_id,))
                groups.append((str(row[1]), str(row[2])))
        return groups

    def release_owner(self, owner: str) -> Op[list[tuple[str, str]]]:
        rows = yield Fetch(_SQL_CLAIMS_OF, (owner,))
        yield ExecuteMany(_SQL_RELEASE, [(r[0],) for r in rows])
        return [(str(r[1]), str(r[2])) for r in rows]

    def count_records(self, f: RecordFilter) -> list[Statement]:
        return records_count_by_day(SQLITE, f)  # exact, from call_counts (schema 4)


# --------------------------------------------------------------------------- the store


class SqliteStore(SqlStore["SqliteOutbox"]):
    """:class:`~.base.Store` on a SQLite file (or ``":memory:"``).

    Construct, then ``await open()`` before anything else (creates or migrates the
    schema), and ``await close()`` at shutdown. Use one instance from one event loop.
    A ``":memory:"`` store lives as long as the instance and is gone after ``close()``.
    Write failures raise the :mod:`sqlite3` exception of the failing batch.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 10.0,
        outbox_lease: float = DEFAULT_LEASE,
        checkpoints: bool = True,
        lock_spin: float = LOCK_SPIN,
    ) -> None:
        """``busy_timeout``: seconds a transaction waits for another process's lock.
        ``outbox_lease``: the claim lease of :attr:`outbox` (seconds, > the deliverer's
        total timeout). ``checkpoints``: copy the WAL back into the database file from
        a thread of this store; False where another process (the server) does it
        already, as for its callback workers. ``lock_spin``: seconds a write that finds
        another process's lock tries again at every turn of the event loop (the loop
        serves other work in between) before it tries every 0.1-1 ms: the server's
        commits hold calls back, so they take the lock as soon as it is free; a
        callback worker passes 0 and leaves the CPU to the server. ValueError if
        ``lock_spin`` < 0."""
        if not lock_spin >= 0:
            raise ValueError(f"lock_spin must be >= 0 seconds, not {lock_spin}")
        self._lock_spin = float(lock_spin)
        self._path = path
        self._checkpoints = checkpoints
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None  # writes, on the event loop's thread
        self._reader: sqlite3.Connection | None = None  # reads, on the reader thread
        self._executor: ThreadPoolExecutor | None = None  # the reader thread (not for ":memory:")
        super().__init__(SqliteDialect(), lambda store: SqliteOutbox(store, outbox_lease))

    # ---------------------------------------------------------------- lifecycle

    _checkpointer: _Checkpointer | None = None

    @property
    def path(self) -> str:
        return self._path

    async def open(self) -> None:
        """Open the database and create or migrate its schema.

        Call once, from the event loop that will use the store; afterwards the store is
        ready. Raises RuntimeError if the file cannot be opened or its schema is newer
        than this code understands.
        """
        self._begin_open()
        try:
            self._conn = conn = self._connect_writer()
            try:
                await self._transaction([migrate(self._d)])
                # From now on write transactions wait for the lock in _begin's steps.
                self._wait_for_locks(conn, False)
                if self._path != ":memory:":  # a second connection would be another database
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="ringline-sqlite-read")
                    await self._on_reader(self._open_reader_sync)
            except sqlite3.Error as exc:
                raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        except BaseException:
            self._state = "closed"
            await self._release()
            raise
        try:
            self._opened()  # raises if close() ran meanwhile
        except RuntimeError:
            await self._release()  # what opened after close() had released
            raise
        if self._path != ":memory:" and self._checkpoints:
            self._checkpointer = _Checkpointer(self._path, self._busy_timeout)
            self._checkpointer.start()

    async def _release(self) -> None:
        """Stop the checkpointer, then close the connections and the reader thread."""
        try:
            if self._checkpointer is not None:
                await asyncio.to_thread(self._checkpointer.stop)
                self._checkpointer = None
            if self._executor is not None:
                await self._on_reader(self._close_reader_sync)
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)
            self._close_writer()

    # ---------------------------------------------------------------- the driver

    async def _on_reader(self, fn: Callable[..., _T], *args: Any) -> _T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    async def _read(self, op: Op[_T]) -> _T:
        self._check_open()
        if self._executor is None:  # ":memory:": the one connection, between transactions
            return run_sync(self._db(), op)
        return await self._on_reader(self._read_sync, op)

    def _read_sync(self, op: Op[_T]) -> _T:
        assert self._reader is not None
        return run_sync(self._reader, op)

    async def _snapshot(self, op: Op[_T]) -> _T:
        self._check_open()
        if self._executor is None:
            return self._snapshot_sync(self._db(), op)
        return await self._on_reader(self._reader_snapshot_sync, op)

    def _reader_snapshot_sync(self, op: Op[_T]) -> _T:
        assert self._reader is not None
        return self._snapshot_sync(self._reader, op)

    def _snapshot_sync(self, conn: sqlite3.Connection, op: Op[_T]) -> _T:
        conn.execute("BEGIN")  # one snapshot for every statement of op
        try:
            return run_sync(conn, op)
        finally:
            conn.execute("COMMIT")

    def _wait_for_locks(self, conn: sqlite3.Connection, wait: bool) -> None:
        """Let SQLite's busy handler wait up to the busy timeout for a lock (``wait``),
        or not at all (the writer, once open: write transactions wait in :meth:`_begin`
        without blocking the event loop)."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000) if wait else 0}")

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``: take the write lock. If another connection holds it (a
        callback worker's), try again at every turn of the event loop for ``lock_spin``
        seconds, then in steps of 0.1 ms growing to :data:`LOCK_POLL_MAX`, up to the
        busy timeout; then raise SQLite's "database is locked". The event loop runs
        other work meanwhile. (SQLite's own busy handler would block the thread and
        sleep 1, 2, 5, 10, 15, 20, 25 ms between tries; the event loop's timers step in
        whole milliseconds, while another process's transaction takes a few tenths.)"""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        start = time.monotonic()
        deadline = start + self._busy_timeout
        spin_until = start + self._lock_spin
        delay = 0.0001
        while True:
            if time.monotonic() < spin_until:
                await asyncio.sleep(0)  # one turn of the loop
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, LOCK_POLL_MAX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise

    async def _round(
        self, items: list[Any], attempt: Callable[[Runner, list[Any]], Awaitable[list[Any]]]
    ) -> list[Any]:
        return await in_rounds(_LoopRunner(self), items, attempt)

    async def _transaction(self, ops: list[Op[Any]]) -> list[Ok | BaseException]:
        """Run ``ops`` in one write transaction on the event loop's thread: wait for
        the lock (:meth:`_begin`), then run every statement and the ``COMMIT`` without
        giving the loop back, so nothing else runs on the connection in between and the
        lock is held only as long as the statements take."""
        conn = self._db()
        await self._begin(conn)
        try:
            results: list[Ok | BaseException] = []
            for op in ops:
                try:
                    results.append(Ok(run_sync(conn, op)))
                except OpRefused as exc:  # refused before writing: the transaction is intact
                    results.append(exc.error)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            folder = os.path.dirname(os.path.abspath(self._path))
            hint = (
                f"; the folder {folder} does not exist: create it or fix the path"
                if self._path != ":memory:" and not os.path.isdir(folder)
                else ""
            )
            raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}{hint}") from exc
        try:
            self._wait_for_locks(conn, True)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA cache_size = -32000")
            if self._path != ":memory:":
                # Checkpoints (the only fsyncs in WAL + synchronous=NORMAL) run on a
                # thread of their own, so they never stall a commit (see _Checkpointer).
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader_sync(self) -> None:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA cache_size = -32000")
        except BaseException:
            conn.close()
            raise
        self._reader = conn

    def _close_reader_sync(self) -> None:
        conn, self._reader = self._reader, None
        if conn is not None:
            conn.close()

    def _close_writer(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA analysis_limit = 400")
            conn.execute("PRAGMA optimize")  # no busy wait: skipped if a worker writes
        except sqlite3.Error:
            pass  # only a planner hint; closing matters more
        finally:
            conn.close()


class _LoopRunner:
    """Runs each transaction of a round on the event loop's thread, as a whole."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def transaction(self, ops: list[Op[Any]]) -> list[Ok | BaseException]:
        return await self._store._transaction(ops)

    def lost(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError)  # the database, not the content


class SqliteOutbox(SqlOutbox):
    """The :class:`~.base.DurableOutbox` of a :class:`SqliteStore` (its ``outbox``).

    Claims, marks, releases, redeliveries and purges go in rounds of one write
    transaction on the event loop's thread (see the module doc); reads go to the
    store's reader thread. See :class:`~.engine.SqlOutbox`.
    """


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
