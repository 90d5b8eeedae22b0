"""The default store: SQLite through the stdlib :mod:`sqlite3`, on one worker thread.

Threading: the store owns ONE connection, created, used and closed on ONE dedicated
worker thread (a ``ThreadPoolExecutor(max_workers=1)``). Writes *and* reads go through
that thread, so a read issued after :meth:`SqliteStore.apply` returned always sees that
batch, and the event loop never blocks on disk I/O.

Group commit: :meth:`SqliteStore.apply` hands its batch to a :class:`~.batching.GroupCommitter`.
While one transaction is running on the worker thread, newly arriving batches queue up;
when it finishes, every queued batch is merged into the next ``BEGIN IMMEDIATE ...
COMMIT`` and each caller is resumed after that commit. If the merged transaction fails
because of what it contains (a constraint, a bad value), the batches are retried one by
one, each in its own transaction, so a bad batch fails only its own caller. If it fails
because of the database itself (:class:`sqlite3.OperationalError`: locked past the busy
timeout, disk full, I/O error), every batch of the round fails with that error at once,
without retrying each one against the same wall. The committer is storage-agnostic and
shared with :mod:`.postgres`.

Callback outbox: :attr:`SqliteStore.outbox` (a :class:`SqliteOutbox`) keeps callback
deliveries in the ``outbox`` and ``webhook_gone`` tables (schema version 3; layout and
the *head* invariant in :mod:`.outbox`). Deliveries enter with the
:class:`~.base.DeliveriesWrite` write, in the batch of their event. The deliverer's
claims, marks and releases run on the same worker thread as every write, each round in
one ``BEGIN IMMEDIATE`` transaction; operations that arrive while a round runs are merged
into the next one (:class:`~.outbox.OpBatcher`), like batches of writes.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A committed batch
survives a crash of the process; after a power loss or OS crash the most recent
transactions may roll back (the database stays consistent). That is the trade SQLite
recommends for WAL and what makes thousands of commits per second possible.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from ...core.enums import CallResultType
from ...core.records import CallRecord
from ..webhooks.delivery import Delivery, DeliveryState, OutboxEntry, new_claim_owner
from .base import (
    AliveWrite,
    CallbackConfigWrite,
    DeliveriesWrite,
    EndpointRevive,
    FinishedCallWrite,
    GroupMembersWrite,
    LiveCallWrite,
    ProfileWrite,
    SessionDelete,
    SessionRow,
    SessionWrite,
    UserCallRow,
    UserCallsHide,
    Write,
)
from .batching import CommitStats, GroupCommitter
from .outbox import (
    DEFAULT_LEASE,
    DROPPED_GONE,
    OUTBOX_COLUMNS,
    PURGE_CHUNK,
    GroupInfo,
    Ok,
    OpBatcher,
    OpRefused,
    check_lease,
    claimed_from_row,
    entry_from_row,
    in_flight_now,
    no_such_delivery,
    outcome_of,
    plan_inserts,
    state_values,
    url_still_gone,
)
from .sql import (
    LOAD_SESSIONS,
    SQLITE,
    RecordFilter,
    Statement,
    config_from_json,
    config_json,
    deliveries_count,
    deliveries_page,
    last_profiles,
    page_offset,
    record_from_json,
    records_count_by_day,
    records_page,
    session_from_row,
    user_calls,
)
from .sql import call_columns as _call_row  # the name bench/callbacks.py seeds with

log = logging.getLogger("ringline.store")

__all__ = [
    "SCHEMA_VERSION",
    "SqliteOutbox",
    "SqliteStore",
]

#: The schema version this code creates and understands (``schema_version`` table).
SCHEMA_VERSION = 7

_T = TypeVar("_T")

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
    (
        3,
        (
            # The callback outbox: one row per delivery (see .outbox for the columns and
            # the head invariant), and the urls that answered 410 Gone.
            """
            CREATE TABLE IF NOT EXISTS outbox (
                event_id        TEXT    NOT NULL PRIMARY KEY,
                url             TEXT    NOT NULL,
                call_id         TEXT    NOT NULL,
                sequence        INTEGER NOT NULL,
                command         TEXT    NOT NULL,
                body            BLOB    NOT NULL,
                created_at      REAL    NOT NULL,
                window_start    REAL    NOT NULL,
                state           TEXT    NOT NULL CHECK (state IN
                                ('pending', 'in_flight', 'delivered', 'given_up', 'gone')),
                head            INTEGER NOT NULL DEFAULT 0 CHECK (head IN (0, 1)),
                next_at         REAL    NOT NULL,
                attempts        INTEGER NOT NULL DEFAULT 0,
                leased_until    REAL    NOT NULL DEFAULT 0,
                last_attempt_at REAL,
                last_status     INTEGER,
                last_error      TEXT    NOT NULL DEFAULT '',
                finished_at     REAL
            )
            """,
            "CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_call ON outbox (url, call_id, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_open ON outbox (url, call_id, sequence)"
            " WHERE state IN ('pending', 'in_flight')",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at, created_at, sequence)"
            " WHERE head = 1 AND state = 'pending'",
            "CREATE INDEX IF NOT EXISTS outbox_expired ON outbox (leased_until)"
            " WHERE head = 1 AND state = 'in_flight'",
            "CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, created_at, call_id, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_by_call_id ON outbox (call_id, created_at, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (finished_at) WHERE state = 'delivered'",
            """
            CREATE TABLE IF NOT EXISTS webhook_gone (
                url     TEXT NOT NULL PRIMARY KEY,
                gone_at REAL NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        4,
        (
            # Records by type and result together (get_record_by_filter with both).
            "CREATE INDEX IF NOT EXISTS calls_by_type_result"
            " ON calls (call_type, result, start_time DESC, call_id DESC)",
            # One outbox index less to keep up per callback: the unique one, led by the
            # call id, also serves listings by call.
            "DROP INDEX IF EXISTS outbox_by_call_id",
            "DROP INDEX IF EXISTS outbox_by_call",
            "CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_call ON outbox (call_id, url, sequence)",
            # Records per UTC day, type and result, kept by triggers in the record's own
            # transaction: an exact TotalNum adds whole days and counts only the partial
            # days at the ends of a time window (see .sql.records_count_by_day).
            """
            CREATE TABLE IF NOT EXISTS call_counts (
                day       INTEGER NOT NULL,
                call_type TEXT    NOT NULL,
                result    TEXT    NOT NULL,
                n         INTEGER NOT NULL,
                PRIMARY KEY (day, call_type, result)
            ) WITHOUT ROWID
            """,
            """
            CREATE TRIGGER IF NOT EXISTS calls_counted AFTER INSERT ON calls BEGIN
                INSERT INTO call_counts (day, call_type, result, n)
                VALUES (CAST(NEW.start_time / 86400 AS INTEGER), NEW.call_type, NEW.result, 1)
                ON CONFLICT (day, call_type, result) DO UPDATE SET n = n + 1;
            END
            """,
            """
            CREATE TRIGGER IF NOT EXISTS calls_uncounted AFTER DELETE ON calls BEGIN
                UPDATE call_counts SET n = n - 1
                WHERE day = CAST(OLD.start_time / 86400 AS INTEGER)
                  AND call_type = OLD.call_type AND result = OLD.result;
            END
            """,
            "DELETE FROM call_counts",
            "INSERT INTO call_counts (day, call_type, result, n)"
            " SELECT CAST(start_time / 86400 AS INTEGER), call_type, result, count(*)"
            " FROM calls GROUP BY 1, 2, 3",
        ),
    ),
    (
        5,
        (
            # Profiles (set_self_info), so invitations still show the inviter's nickname
            # and avatar after a restart. A rowid table: rows may be a few KB.
            """
            CREATE TABLE IF NOT EXISTS profiles (
                user_id    TEXT NOT NULL PRIMARY KEY,
                nickname   TEXT NOT NULL,
                avatar     TEXT NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
        ),
    ),
    (
        6,
        (
            # Who holds each claim (the deliverer's claim owner), so the claims of a
            # crashed callback worker are handed back at once (release_owner).
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT NOT NULL DEFAULT ''",
        ),
    ),
    (
        7,
        (
            # Each delivery's extra query parameters (ClientIP / OptPlatform: who caused
            # the event); '' for deliveries queued before.
            "ALTER TABLE outbox ADD COLUMN extra_query TEXT NOT NULL DEFAULT ''",
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
_SQL_SAVE_PROFILE = """
    INSERT INTO profiles (user_id, nickname, avatar, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (user_id) DO UPDATE SET
        nickname = excluded.nickname, avatar = excluded.avatar, updated_at = excluded.updated_at
"""
_SQL_DELETE_PROFILE = "DELETE FROM profiles WHERE user_id = ?"
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
_SQL_REVIVE = "DELETE FROM webhook_gone WHERE url = ?"
_SQL_SET_GONE = """
    INSERT INTO webhook_gone (url, gone_at) VALUES (?, ?)
    ON CONFLICT (url) DO UPDATE SET gone_at = excluded.gone_at
"""
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
_SQL_ENTRY = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = ?"


def _queue_sync(conn: sqlite3.Connection, deliveries: list[Delivery]) -> None:
    """Insert ``deliveries`` as DeliveriesWrite says (pending, or gone at once)."""
    if not deliveries:
        return
    ids = [d.event_id for d in deliveries]
    existing: set[str] = set()
    for k in range(0, len(ids), 500):  # one look-up per 500, not one per delivery
        chunk = ids[k : k + 500]
        marks = ", ".join("?" * len(chunk))
        existing.update(
            str(r[0]) for r in conn.execute(f"SELECT event_id FROM outbox WHERE event_id IN ({marks})", chunk)
        )
    groups: dict[tuple[str, str], GroupInfo] = {}
    for key in dict.fromkeys((d.url, d.call_id) for d in deliveries):
        last = conn.execute(_SQL_OUTBOX_LAST_SEQ, key).fetchone()[0]
        has_open = bool(conn.execute(_SQL_OUTBOX_HAS_OPEN, key).fetchone()[0])
        groups[key] = GroupInfo(None if last is None else int(last), has_open)
    gone: dict[str, float] = {}
    for url in dict.fromkeys(d.url for d in deliveries):
        row = conn.execute(_SQL_GONE_AT, (url,)).fetchone()
        if row is not None:
            gone[url] = float(row[0])
    rows = plan_inserts(deliveries, existing_ids=existing, groups=groups, gone=gone)
    conn.executemany(_SQL_OUTBOX_INSERT, [(*r[:9], int(r.head), *r[10:]) for r in rows])


def _runs(writes: Iterable[Write]) -> Iterable[tuple[type, list[Write]]]:
    """Consecutive writes of the same type, in order (so each run can use executemany)."""
    for kind, run in itertools.groupby(writes, key=type):
        yield kind, list(run)


def _last_members(run: list[GroupMembersWrite]) -> dict[str, tuple[str, ...]]:
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

    def __init__(self, path: str, *, busy_timeout: float = 10.0, outbox_lease: float = DEFAULT_LEASE) -> None:
        """``busy_timeout``: seconds a transaction waits for another process's lock.
        ``outbox_lease``: the claim lease of :attr:`outbox` (seconds, > the deliverer's
        total timeout)."""
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._committer = GroupCommitter(self._commit_group)
        self._ops = OpBatcher(self._ops_round)
        self._outbox = SqliteOutbox(self, outbox_lease)
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

    @property
    def outbox(self) -> SqliteOutbox:
        """The durable callback outbox in this database (usable while the store is open)."""
        return self._outbox

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
            await self._ops.close()
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
        rows = await self._read(self._fetchall, LOAD_SESSIONS, ())
        return [session_from_row(r) for r in rows]

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

    async def load_profiles(self) -> dict[str, tuple[str, str]]:
        """Every saved profile: ``user_id -> (nickname, avatar)``."""
        rows = await self._read(self._fetchall, "SELECT user_id, nickname, avatar FROM profiles", ())
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    async def last_alive(self) -> float | None:
        """The latest :class:`~.base.AliveWrite` time, or None on a fresh store."""
        rows = await self._read(self._fetchall, "SELECT at FROM alive WHERE id = 1", ())
        return float(rows[0][0]) if rows else None

    async def get_record(self, call_id: str) -> CallRecord | None:
        """The finished record of ``call_id``, or None."""
        rows = await self._read(self._fetchall, "SELECT record FROM calls WHERE call_id = ?", (call_id,))
        return record_from_json(rows[0][0]) if rows else None

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind``, or None if unset."""
        rows = await self._read(self._fetchall, "SELECT config FROM callback_config WHERE kind = ?", (kind,))
        return config_from_json(rows[0][0]) if rows else None

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
        sql, args = user_calls(SQLITE, user_id, begin=begin, end=end, result_type=result_type, limit=limit)
        rows = await self._read(self._fetchall, sql, args)
        return [
            UserCallRow(record=record_from_json(r[0]), result_type=CallResultType(int(r[1]))) for r in rows
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
        user_id: str | None = None,
    ) -> tuple[int, list[CallRecord]]:
        """Exact total count and one page (1-based) of records, newest start time first.

        ``results`` None or empty = every result. Ties on start time are ordered by call
        id (descending) so pages never overlap. Raises ValueError if ``page`` or
        ``per_page`` is below 1.
        """
        offset = page_offset(page, per_page)
        f = RecordFilter.of(
            start_time=start_time, end_time=end_time, results=results, call_type=call_type, user_id=user_id
        )
        count = records_count_by_day(SQLITE, f)  # exact, from call_counts (schema 4)
        rows = records_page(SQLITE, f, limit=per_page, offset=offset)
        total, texts = await self._read(self._query_records_sync, count, rows, offset)
        return total, [record_from_json(t) for t in texts]

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
            folder = os.path.dirname(os.path.abspath(self._path))
            hint = (
                f"; the folder {folder} does not exist: create it or fix the path"
                if self._path != ":memory:" and not os.path.isdir(folder)
                else ""
            )
            raise RuntimeError(f"cannot open SQLite database {self._path!r}: {exc}{hint}") from exc
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
        self, count: list[Statement], rows: Statement, offset: int
    ) -> tuple[int, list[str]]:
        """The sum of the ``count`` statements' values, and the ``rows`` page unless
        ``offset`` is past that total, in one snapshot."""
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot for the count and the page
        try:
            total = int(sum(conn.execute(sql, args).fetchone()[0] for sql, args in count))
            texts: list[str] = []
            if offset < total:
                texts = [str(r[0]) for r in conn.execute(*rows)]
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
        if kind is LiveCallWrite:
            lives = cast(list[LiveCallWrite], run)
            conn.executemany(_SQL_SAVE_LIVE, [(w.call_id, w.snapshot, w.updated_at) for w in lives])
        elif kind is FinishedCallWrite:
            for w in cast(list[FinishedCallWrite], run):
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
        elif kind is SessionWrite:
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
                    for s in (w.session for w in cast(list[SessionWrite], run))
                ],
            )
        elif kind is SessionDelete:
            conn.executemany(_SQL_DELETE_SESSION, [(w.token,) for w in cast(list[SessionDelete], run)])
        elif kind is GroupMembersWrite:
            groups = _last_members(cast(list[GroupMembersWrite], run))
            conn.executemany(_SQL_DELETE_GROUP, [(g,) for g in groups])
            conn.executemany(
                _SQL_INSERT_MEMBER,
                [(g, m, i) for g, members in groups.items() for i, m in enumerate(members)],
            )
        elif kind is ProfileWrite:
            upserts, deletes = last_profiles(cast(list[ProfileWrite], run))
            conn.executemany(_SQL_DELETE_PROFILE, [(u,) for u in deletes])
            conn.executemany(_SQL_SAVE_PROFILE, upserts)
        elif kind is UserCallsHide:
            conn.executemany(
                _SQL_HIDE,
                [(w.user_id, c) for w in cast(list[UserCallsHide], run) for c in w.call_ids],
            )
        elif kind is AliveWrite:
            conn.execute(_SQL_MARK_ALIVE, (max(w.at for w in cast(list[AliveWrite], run)),))
        elif kind is CallbackConfigWrite:
            for c in cast(list[CallbackConfigWrite], run):  # in order: the last one of a kind wins
                if c.config is None:
                    conn.execute(_SQL_DELETE_CALLBACK, (c.kind,))
                else:
                    conn.execute(_SQL_SET_CALLBACK, (c.kind, config_json(c.config)))
        elif kind is DeliveriesWrite:
            _queue_sync(conn, [d for w in cast(list[DeliveriesWrite], run) for d in w.deliveries])
        elif kind is EndpointRevive:
            conn.executemany(_SQL_REVIVE, [(w.url,) for w in cast(list[EndpointRevive], run)])
        else:
            raise TypeError(f"not a store write: {run[0]!r}")

    # ---------------------------------------------------------------- outbox rounds

    async def _op(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run the outbox operation ``op`` (a function of the connection, run on the
        worker thread inside a transaction) in the next round."""
        self._check_open()
        return cast(_T, await self._ops.submit(op))

    async def _ops_round(self, ops: list[Any]) -> list[Ok | BaseException]:
        return await self._run(self._ops_round_sync, ops)

    def _ops_round_sync(self, ops: list[Callable[[sqlite3.Connection], Any]]) -> list[Ok | BaseException]:
        conn = self._db()
        if len(ops) > 1:
            try:
                return self._ops_transaction_sync(conn, ops)
            except sqlite3.OperationalError as exc:  # the database, not one op
                return [exc] * len(ops)
            except Exception:
                pass  # rerun one by one just below
        results: list[Ok | BaseException] = []
        for op in ops:
            try:
                results.extend(self._ops_transaction_sync(conn, [op]))
            except Exception as exc:
                results.append(exc)
        return results

    @staticmethod
    def _ops_transaction_sync(
        conn: sqlite3.Connection, ops: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[Ok | BaseException]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            results: list[Ok | BaseException] = []
            for op in ops:
                try:
                    results.append(Ok(op(conn)))
                except OpRefused as exc:  # refused before writing: the transaction is intact
                    results.append(outcome_of(exc))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results


# --------------------------------------------------------------------------- the outbox


def _recompute_head(conn: sqlite3.Connection, url: str, call_id: str) -> None:
    conn.execute(_SQL_RECOMPUTE_HEAD, (url, call_id))


def _state_of(conn: sqlite3.Connection, event_id: str) -> tuple[str, str, str, float]:
    row = conn.execute(_SQL_STATE_OF, (event_id,)).fetchone()
    if row is None:
        raise OpRefused(no_such_delivery(event_id))
    return str(row[0]), str(row[1]), str(row[2]), float(row[3])


_OPEN = (DeliveryState.PENDING.value, DeliveryState.IN_FLIGHT.value)


class SqliteOutbox:
    """The :class:`~.base.DurableOutbox` of a :class:`SqliteStore` (its ``outbox``).

    Usable while the store is open; every statement runs on the store's worker thread.
    Claims, marks, releases, redeliveries and purges go in rounds of one transaction
    (see the module doc), reads go straight to the thread. Semantics: those of
    :class:`~ringline.server.webhooks.MemoryOutbox`; see :class:`~.base.DurableOutbox`.
    ``lease`` (seconds) and ``owner`` (recorded with each claim, see
    :meth:`release_owner`) may be changed at any time; they apply to later claims.
    """

    def __init__(self, store: SqliteStore, lease: float = DEFAULT_LEASE) -> None:
        self._store = store
        self.lease = check_lease(lease)
        self.owner = new_claim_owner()

    # -- the deliverer's protocol

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        """Claim up to ``limit`` due deliveries (per (url, call) only the head), as
        :attr:`owner`."""
        lease, owner = self.lease, self.owner

        def op(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(_SQL_CLAIM, (now, limit)).fetchall()
            conn.executemany(_SQL_TAKE, [(now + lease, owner, r[0]) for r in rows])
            return [claimed_from_row(r) for r in rows]

        if limit <= 0:
            self._store._check_open()
            return []
        return await self._store._op(op)

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        """Record a 2xx (also for a delivery marked gone or given up meanwhile)."""

        def op(conn: sqlite3.Connection) -> None:
            state, url, call_id, _ = _state_of(conn, event_id)
            if state == DeliveryState.DELIVERED:
                return
            conn.execute(_SQL_DELIVERED, (at, status, at, event_id))
            if state in _OPEN:
                _recompute_head(conn, url, call_id)

        await self._store._op(op)

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        """Record a failed attempt: retry at ``next_at``, or give up (None)."""

        def op(conn: sqlite3.Connection) -> None:
            state, url, call_id, _ = _state_of(conn, event_id)
            if state != DeliveryState.IN_FLIGHT:
                return
            if next_at is None:
                conn.execute(_SQL_GIVEN_UP, (at, status, error, at, event_id))
            else:
                conn.execute(_SQL_RETRY_LATER, (at, status, error, next_at, event_id))
            _recompute_head(conn, url, call_id)

        await self._store._op(op)

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        """Finish every open delivery to ``url`` as gone, recording the attempt of
        ``event_id`` (in flight to ``url``) that got the 410; later ones are gone at once."""

        def op(conn: sqlite3.Connection) -> int:
            finished = 0
            if event_id is not None:
                state, its_url, _, _ = _state_of(conn, event_id)  # unknown: refused before writing
                if state == DeliveryState.IN_FLIGHT and its_url == url:
                    conn.execute(_SQL_GONE_ATTEMPT, (at, status, error, event_id))
                    finished = 1
            conn.execute(_SQL_SET_GONE, (url, at))
            return finished + int(conn.execute(_SQL_DROP_GONE, (at, DROPPED_GONE, url)).rowcount)

        return await self._store._op(op)

    async def release(self, event_ids: Sequence[str]) -> None:
        """Put claimed deliveries back to pending (no attempt counted)."""
        ids = list(dict.fromkeys(event_ids))

        def op(conn: sqlite3.Connection) -> None:
            groups: dict[tuple[str, str], None] = {}
            for event_id in ids:
                row = conn.execute(_SQL_STATE_OF, (event_id,)).fetchone()
                if row is not None and row[0] == DeliveryState.IN_FLIGHT:
                    conn.execute(_SQL_RELEASE, (event_id,))
                    groups[(str(row[1]), str(row[2]))] = None
            for url, call_id in groups:
                _recompute_head(conn, url, call_id)

        if ids:
            await self._store._op(op)
        else:
            self._store._check_open()

    async def release_owner(self, owner: str) -> int:
        """Put every in-flight delivery claimed by ``owner`` back to pending (see
        DurableOutbox.release_owner); returns how many. Then wake the deliverers."""

        def op(conn: sqlite3.Connection) -> int:
            rows = conn.execute(_SQL_CLAIMS_OF, (owner,)).fetchall()
            conn.executemany(_SQL_RELEASE, [(r[0],) for r in rows])
            for url, call_id in dict.fromkeys((str(r[1]), str(r[2])) for r in rows):
                _recompute_head(conn, url, call_id)
            return len(rows)

        return await self._store._op(op)

    async def claim_owners(self) -> dict[str, str]:
        """Event id -> owner of every in-flight delivery."""
        rows = await self._store._read(self._store._fetchall, _SQL_CLAIM_OWNERS, ())
        return {str(e): str(o) for e, o in rows}

    # -- operators

    async def get_delivery(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or None."""
        rows = await self._store._read(self._store._fetchall, _SQL_ENTRY, (event_id,))
        return entry_from_row(rows[0]) if rows else None

    async def list_deliveries(
        self,
        states: Sequence[DeliveryState],
        *,
        call_id: str | None = None,
        url: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[int, list[OutboxEntry]]:
        """Exact total and one page, oldest created first (see DurableOutbox)."""
        offset = page_offset(page, per_page)
        values = state_values(states)
        count = deliveries_count(SQLITE, values, call_id=call_id, url=url)
        page_rows = deliveries_page(SQLITE, values, call_id=call_id, url=url, limit=per_page, offset=offset)

        def read() -> tuple[int, list[Any]]:
            conn = self._store._db()
            conn.execute("BEGIN")  # one snapshot for the count and the page
            try:
                total = int(conn.execute(*count).fetchone()[0])
                rows: list[Any] = []
                if offset < total:
                    rows = conn.execute(*page_rows).fetchall()
            finally:
                conn.execute("COMMIT")
            return total, rows

        total, rows = await self._store._read(read)
        return total, [entry_from_row(r) for r in rows]

    async def counts(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state (all states present)."""
        rows = await self._store._read(
            self._store._fetchall, "SELECT state, count(*) FROM outbox GROUP BY state", ()
        )
        found = dict.fromkeys(DeliveryState, 0)
        for state, n in rows:
            found[DeliveryState(state)] = int(n)
        return found

    async def gone_endpoints(self) -> dict[str, float]:
        """Urls that answered 410 Gone and were not revived, with when."""
        rows = await self._store._read(self._store._fetchall, "SELECT url, gone_at FROM webhook_gone", ())
        return {str(u): float(at) for u, at in rows}

    async def redeliver(self, event_id: str, now: float) -> OutboxEntry:
        """Send ``event_id`` again (see DurableOutbox.redeliver); then wake the deliverer."""

        def op(conn: sqlite3.Connection) -> OutboxEntry:
            state, url, call_id, _ = _state_of(conn, event_id)
            if state == DeliveryState.IN_FLIGHT:
                raise OpRefused(in_flight_now(event_id))
            if conn.execute(_SQL_GONE_AT, (url,)).fetchone() is not None:
                raise OpRefused(url_still_gone(event_id, url))
            if state == DeliveryState.PENDING:
                conn.execute(_SQL_DUE_NOW, (now, event_id))
            else:
                conn.execute(_SQL_REOPEN, (now, event_id))
                _recompute_head(conn, url, call_id)
            return entry_from_row(conn.execute(_SQL_ENTRY, (event_id,)).fetchone())

        return await self._store._op(op)

    async def purge_finished(self, before: float) -> int:
        """Delete delivered deliveries finished before ``before``; returns how many.
        Deletes in chunks, one transaction each, so call writes go on meanwhile."""

        def op(conn: sqlite3.Connection) -> int:
            return int(conn.execute(_SQL_PURGE, (before, PURGE_CHUNK)).rowcount)

        total = 0
        while True:
            n = await self._store._op(op)
            total += n
            if n < PURGE_CHUNK:
                return total


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
