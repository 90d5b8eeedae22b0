"""One store engine, two dialects: every store and outbox operation, written once.

The SQLite and PostgreSQL stores differ in their driver (the stdlib's blocking
:mod:`sqlite3`, writing on the event loop's thread; asyncpg's coroutines on a pool) and in some SQL
(placeholders, lists bound as ``IN (…)`` rows or as arrays, ``max`` or ``GREATEST``,
locking, ``UPDATE … RETURNING``). Everything else is here, once:

* **Operations are sans-I/O** (:mod:`.ops`): generators that yield the statements they
  need and are sent each one's result back, so the same operation runs on a SQLite
  connection and on a pooled PostgreSQL connection; each backend module has the few
  lines that drive one on its connection.
* **A dialect** (:class:`StoreDialect`, one per backend module) gives the texts of the
  statements that differ, and the few steps whose shape differs: claiming (a select
  then an update, or one ``UPDATE … RETURNING`` over rows locked ``FOR UPDATE SKIP
  LOCKED``), finishing a delivery (read, write, recompute the head; or one statement),
  and binding lists (one row per value, or one array).
* **Rounds.** Writes (group commit, :class:`~.batching.GroupCommitter`) and outbox
  operations (:class:`~.outbox.OpBatcher`) run in rounds of one transaction;
  :func:`in_rounds` is what happens when a merged transaction fails (every item again
  alone, unless the database itself is in trouble: then every item fails at once).
* :class:`SqlStore` is the :class:`~.base.Store` and :class:`SqlOutbox` the
  :class:`~.base.DurableOutbox` over a dialect; a backend subclasses :class:`SqlStore`
  with its lifecycle (open, migrate, close) and its driver (:meth:`SqlStore._read`,
  :meth:`SqlStore._snapshot`, :meth:`SqlStore._round`).
* The schema: one version and one migration list (:mod:`.schema`), applied by
  :func:`migrate`.

Statements shared by both dialects are written here with ``$n`` placeholders;
:meth:`StoreDialect.text` turns them into SQLite's ``?n``.

Internal to the store package.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

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
from .ops import Execute, ExecuteMany, Fetch, Op, Query, fetch_one, fetch_value
from .outbox import (
    DEFAULT_LEASE,
    DROPPED_GONE,
    OUTBOX_COLUMNS,
    GroupInfo,
    NewRow,
    Ok,
    OpBatcher,
    OpRefused,
    check_lease,
    claimed_from_row,
    entry_from_row,
    in_flight_now,
    no_such_delivery,
    state_values,
    url_still_gone,
)
from .schema import Migration
from .sql import (
    LOAD_SESSIONS,
    Dialect,
    RecordFilter,
    Statement,
    config_from_json,
    config_json,
    deliveries_count,
    deliveries_page,
    last_profiles,
    page_offset,
    record_from_json,
    records_page,
    session_from_row,
    user_calls,
)

__all__ = [
    "Runner",
    "SqlOutbox",
    "SqlStore",
    "StoreDialect",
    "Transition",
    "apply_writes",
    "in_rounds",
    "migrate",
]

_T = TypeVar("_T")
_X = TypeVar("_X")
_R = TypeVar("_R")


#: How a delivery in flight ends an attempt: delivered (also a delivery finished
#: otherwise meanwhile), given up, or back to pending for a retry.
Transition = Literal["delivered", "given_up", "retry"]


# --------------------------------------------------------------------------- the dialect


@functools.lru_cache(maxsize=256)
def _question_marks(sql: str) -> str:
    return re.sub(r"\$(\d+)", r"?\1", sql)


class StoreDialect(ABC):
    """What one backend writes its own way (see the module docstring).

    A dialect lives in its backend's module, and that module defines, under these
    names, what the engine reads from it: its statements ``_SQL_SAVE_LIVE``,
    ``_SQL_MARK_ALIVE``, ``_SQL_STATE_OF``, ``_SQL_RECOMPUTE_HEAD``, ``_SQL_CLAIM_OWNERS``,
    ``_SQL_DROP_GONE``, ``_SQL_DUE_NOW``, ``_SQL_REOPEN`` and ``_SQL_PURGE`` (copied to
    the attributes of the same lower-case names when the dialect is made), and
    ``SCHEMA_VERSION``, ``_MIGRATIONS`` (the migrations in its DDL), ``PURGE_CHUNK`` and
    ``plan_inserts``, read each time they are used (so a test may stand in the code of
    an older schema version). The ``Op`` methods run inside the transaction of a round.
    """

    #: The dialect of the shared query builders (:mod:`.sql`).
    sql: Dialect
    #: The float column type (for ``schema_version``).
    real: str
    #: Taken (shared) first in every round of outbox operations, if any.
    ops_lock: str | None = None
    #: Taken (exclusively) before queueing behind an open head, if any.
    queue_lock: str | None = None

    #: ``(call_id, snapshot, updated_at)``: upsert a live call unless it is finished.
    save_live: str
    #: ``(at)``: the alive mark, never moving back.
    mark_alive: str
    #: ``(event_id)`` -> ``state, url, call_id, …`` of a delivery (locked where rows are).
    state_of: str
    #: ``(url, call_id)``: restore the head invariant of one group (see :mod:`.outbox`).
    recompute_head: str
    #: No arguments -> ``event_id, claimed_by`` of every in-flight delivery.
    claim_owners: str
    #: ``(at, error, url)``: finish every open delivery to ``url`` as gone.
    drop_gone: str
    #: ``(now, event_id)``: a pending delivery becomes due now.
    due_now: str
    #: ``(now, event_id)``: a finished delivery is pending again, due now, window anew.
    reopen: str
    #: ``(before, limit)``: delete up to ``limit`` deliveries delivered before ``before``.
    purge: str

    _STATEMENTS = (
        "save_live",
        "mark_alive",
        "state_of",
        "recompute_head",
        "claim_owners",
        "drop_gone",
        "due_now",
        "reopen",
        "purge",
    )

    def __init__(self) -> None:
        for name in self._STATEMENTS:
            setattr(self, name, getattr(self._module, f"_SQL_{name.upper()}"))

    @property
    def _module(self) -> Any:
        return sys.modules[type(self).__module__]

    def text(self, sql: str) -> str:
        """``sql``, written with ``$n`` placeholders, in this dialect's placeholders."""
        return sql if self.sql.numbered else _question_marks(sql)

    @property
    def schema_version(self) -> int:
        """The schema version this code creates and understands."""
        return int(self._module.SCHEMA_VERSION)

    @property
    def migrations(self) -> Sequence[Migration]:
        """Every migration, oldest first, in this dialect."""
        return cast(Sequence[Migration], self._module._MIGRATIONS)

    @property
    def purge_chunk(self) -> int:
        """How many deliveries one purge transaction deletes at most."""
        return int(self._module.PURGE_CHUNK)

    def plan_inserts(
        self,
        deliveries: list[Delivery],
        existing: set[str],
        groups: dict[tuple[str, str], GroupInfo],
        gone: dict[str, float],
    ) -> list[NewRow]:
        """The outbox rows of ``deliveries`` (see :func:`~.outbox.plan_inserts`)."""
        return cast(
            list[NewRow],
            self._module.plan_inserts(deliveries, existing_ids=existing, groups=groups, gone=gone),
        )

    # -- writes

    @abstractmethod
    def finish_calls(self, run: list[FinishedCallWrite]) -> Op[None]:
        """Apply a run of :class:`~.base.FinishedCallWrite`."""

    @abstractmethod
    def insert_members(self, groups: dict[str, tuple[str, ...]]) -> ExecuteMany:
        """Insert the members of ``groups`` (in order; their old rows are deleted)."""

    @abstractmethod
    def hide_calls(self, run: list[UserCallsHide]) -> ExecuteMany:
        """Hide the calls of a run of :class:`~.base.UserCallsHide`."""

    @abstractmethod
    def existing_ids(self, event_ids: list[str]) -> Op[set[str]]:
        """Those of ``event_ids`` the outbox holds."""

    @abstractmethod
    def open_groups(self, keys: list[tuple[str, str]]) -> Op[dict[tuple[str, str], GroupInfo]]:
        """Per (url, call_id): its highest sequence and whether it has an open row."""

    @abstractmethod
    def gone_urls(self, urls: list[str]) -> Op[dict[str, float]]:
        """Those of ``urls`` marked gone, with when."""

    @abstractmethod
    def insert_outbox(self, rows: list[NewRow]) -> Query:
        """Insert the planned outbox ``rows``."""

    # -- the outbox

    @abstractmethod
    def claim(self, now: float, limit: int, until: float, owner: str) -> Op[list[Any]]:
        """Claim up to ``limit`` due heads (and heads whose lease ran out) for ``owner``
        until ``until``; their rows (:data:`~.outbox.OUTBOX_COLUMNS`) in claim order."""

    @abstractmethod
    def transition(
        self, to: Transition, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> Op[str | None]:
        """End the attempt of ``event_id`` as ``to`` (only from in flight; ``delivered``
        from any state but delivered), keeping the head invariant; returns the delivery's
        state before, None if unknown."""

    @abstractmethod
    def gone_attempt(self, event_id: str, url: str, at: float, status: int, error: str) -> Op[bool | None]:
        """Record the attempt of ``event_id`` that got a 410 from ``url`` and finish it as
        gone, if it is in flight to ``url``; whether it was (None: unknown id)."""

    @abstractmethod
    def release_ids(self, event_ids: list[str]) -> Op[list[tuple[str, str]]]:
        """Put those of ``event_ids`` in flight back to pending; their (url, call_id)."""

    @abstractmethod
    def release_owner(self, owner: str) -> Op[list[tuple[str, str]]]:
        """Put every in-flight delivery of ``owner`` back to pending; their (url, call_id)."""

    # -- reads

    @abstractmethod
    def count_records(self, f: RecordFilter) -> list[Statement]:
        """Statements whose values (one each, read in one snapshot) add up to the number
        of calls ``f`` selects."""


# --------------------------------------------------------------------------- shared SQL

_SQL_SAVE_SESSION = """
    INSERT INTO sessions (token, device_id, user_id, multi_device, sig_expires_at,
                          created_at, last_seen)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (token) DO UPDATE SET
        device_id = excluded.device_id, user_id = excluded.user_id,
        multi_device = excluded.multi_device, sig_expires_at = excluded.sig_expires_at,
        created_at = excluded.created_at, last_seen = excluded.last_seen
"""
_SQL_DELETE_SESSION = "DELETE FROM sessions WHERE token = $1"
_SQL_DELETE_GROUP = 'DELETE FROM "groups" WHERE group_id = $1'
_SQL_SAVE_PROFILE = """
    INSERT INTO profiles (user_id, nickname, avatar, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (user_id) DO UPDATE SET
        nickname = excluded.nickname, avatar = excluded.avatar, updated_at = excluded.updated_at
"""
_SQL_DELETE_PROFILE = "DELETE FROM profiles WHERE user_id = $1"
_SQL_SET_CALLBACK = """
    INSERT INTO callback_config (kind, config) VALUES ($1, $2)
    ON CONFLICT (kind) DO UPDATE SET config = excluded.config
"""
_SQL_DELETE_CALLBACK = "DELETE FROM callback_config WHERE kind = $1"
_SQL_REVIVE = "DELETE FROM webhook_gone WHERE url = $1"
_SQL_SET_GONE = """
    INSERT INTO webhook_gone (url, gone_at) VALUES ($1, $2)
    ON CONFLICT (url) DO UPDATE SET gone_at = excluded.gone_at
"""
_SQL_GONE_AT = "SELECT gone_at FROM webhook_gone WHERE url = $1"
_SQL_ENTRY = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = $1"
_SQL_RECORD = "SELECT record FROM calls WHERE call_id = $1"
_SQL_CALLBACK = "SELECT config FROM callback_config WHERE kind = $1"
_SQL_ADD_VERSION = "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)"


# --------------------------------------------------------------------------- writes


def apply_writes(d: StoreDialect, writes: Iterable[Write]) -> Op[None]:
    """Apply ``writes`` in order, consecutive writes of one type together (so each run
    can go out as one ``executemany``)."""
    for kind, group in itertools.groupby(writes, key=type):
        run: list[Any] = list(group)
        if kind is LiveCallWrite:
            yield ExecuteMany(d.save_live, [(w.call_id, w.snapshot, w.updated_at) for w in run])
        elif kind is FinishedCallWrite:
            yield from d.finish_calls(run)
        elif kind is SessionWrite:
            rows = [_session_row(w.session) for w in cast(list[SessionWrite], run)]
            yield ExecuteMany(d.text(_SQL_SAVE_SESSION), rows)
        elif kind is SessionDelete:
            yield ExecuteMany(d.text(_SQL_DELETE_SESSION), [(w.token,) for w in run])
        elif kind is GroupMembersWrite:
            # Only the last replace of each group in a run matters.
            groups = {w.group_id: tuple(dict.fromkeys(w.members)) for w in cast(list[GroupMembersWrite], run)}
            yield ExecuteMany(d.text(_SQL_DELETE_GROUP), [(g,) for g in groups])
            yield d.insert_members(groups)
        elif kind is ProfileWrite:
            upserts, deletes = last_profiles(run)
            yield ExecuteMany(d.text(_SQL_DELETE_PROFILE), [(u,) for u in deletes])
            yield ExecuteMany(d.text(_SQL_SAVE_PROFILE), list(upserts))
        elif kind is UserCallsHide:
            yield d.hide_calls(run)
        elif kind is AliveWrite:
            yield Execute(d.mark_alive, (max(w.at for w in cast(list[AliveWrite], run)),))
        elif kind is CallbackConfigWrite:
            for c in cast(list[CallbackConfigWrite], run):  # in order: the last one of a kind wins
                if c.config is None:
                    yield Execute(d.text(_SQL_DELETE_CALLBACK), (c.kind,))
                else:
                    yield Execute(d.text(_SQL_SET_CALLBACK), (c.kind, config_json(c.config)))
        elif kind is DeliveriesWrite:
            yield from _queue(d, [x for w in cast(list[DeliveriesWrite], run) for x in w.deliveries])
        elif kind is EndpointRevive:
            yield ExecuteMany(d.text(_SQL_REVIVE), [(w.url,) for w in run])
        else:
            raise TypeError(f"not a store write: {run[0]!r}")


def _session_row(s: SessionRow) -> tuple[Any, ...]:
    return (
        s.token,
        s.device_id,
        s.user_id,
        bool(s.multi_device),
        s.sig_expires_at,
        s.created_at,
        s.last_seen,
    )


def _queue(d: StoreDialect, deliveries: list[Delivery]) -> Op[None]:
    """Insert ``deliveries`` as DeliveriesWrite says (pending, or gone at once)."""
    if not deliveries:
        return
    existing = yield from d.existing_ids([x.event_id for x in deliveries])
    keys = list(dict.fromkeys((x.url, x.call_id) for x in deliveries))
    groups = yield from d.open_groups(keys)
    if d.queue_lock is not None and any(g.has_open for g in groups.values()):
        # A new row behind an open head waits for that head to finish. A deliverer on
        # another connection may be finishing it right now: its statement cannot see
        # our uncommitted row, so it would promote nothing, and our row, decided against
        # an old snapshot, would wait forever. The exclusive outbox lock waits for every
        # round of outbox operations under way and keeps new ones out until we commit;
        # the groups are then read again, so a head finished meanwhile is seen finished.
        yield Execute(d.queue_lock)
        groups = yield from d.open_groups(keys)
    gone = yield from d.gone_urls(list(dict.fromkeys(x.url for x in deliveries)))
    yield d.insert_outbox(d.plan_inserts(deliveries, existing, groups, gone))


def migrate(d: StoreDialect) -> Op[None]:
    """Create or migrate the schema (run it in one transaction): apply every migration
    above the database's version. Raises RuntimeError for a newer database."""
    yield Execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        f" version INTEGER NOT NULL PRIMARY KEY, applied_at {d.real} NOT NULL)"
    )
    current = int((yield from fetch_value("SELECT coalesce(max(version), 0) FROM schema_version")))
    if current > d.schema_version:
        raise RuntimeError(
            f"the database schema is version {current}, newer than this Ringline"
            f" understands ({d.schema_version}); upgrade Ringline"
        )
    for version, statements in d.migrations:
        if version <= current:
            continue
        for statement in statements:
            yield Execute(statement)
        yield Execute(d.text(_SQL_ADD_VERSION), (version, time.time()))


# --------------------------------------------------------------------------- rounds


class Runner(Protocol):
    """Runs operations on one connection, for the rounds of a backend."""

    async def transaction(self, ops: list[Op[Any]]) -> list[Ok | BaseException]:
        """Run ``ops`` in order in ONE transaction and commit it; per op, :class:`Ok`
        with its value, or the error of an op that raised :class:`OpRefused` (refused
        before writing). Any other error rolls the transaction back and is raised."""
        ...

    def lost(self, error: BaseException) -> bool:
        """True if ``error`` is the database's own trouble (locked, disk full, the
        connection lost), not the content's: no item of the round should be retried."""
        ...


async def in_rounds(
    runner: Runner, items: list[_X], attempt: Callable[[Runner, list[_X]], Awaitable[list[_R]]]
) -> list[_R | BaseException]:
    """Run ``items`` in one ``attempt`` (one transaction); if it fails, each item in an
    attempt of its own, so a bad item fails only its own caller, unless the failure is
    the database's own (``runner.lost``): then every item fails with it."""
    if len(items) > 1:
        try:
            return list(await attempt(runner, items))
        except Exception as exc:
            if runner.lost(exc):
                return [exc] * len(items)
            # otherwise each one alone, just below
    results: list[_R | BaseException] = []
    for item in items:
        try:
            results.extend(await attempt(runner, [item]))
        except Exception as exc:
            results.append(exc)
    return results


def _take(sql: str) -> Op[None]:
    yield Execute(sql)


# --------------------------------------------------------------------------- the store


_O = TypeVar("_O", bound="SqlOutbox")


class SqlStore(ABC, Generic[_O]):
    """:class:`~.base.Store` over a :class:`StoreDialect` (see the module docstring).

    A backend subclass opens its database (``open`` calls :meth:`_begin_open` first and
    :meth:`_opened` last), lets go of it (:meth:`_release`, called by :meth:`close`), and
    gives the driver: :meth:`_read`, :meth:`_snapshot` and :meth:`_round`.
    """

    def __init__(self, dialect: StoreDialect, outbox: Callable[[SqlStore[Any]], _O]) -> None:
        self._d = dialect
        self._committer = GroupCommitter(self._commit_group)
        self._ops = OpBatcher(self._ops_round)
        self._outbox = outbox(self)
        self._state = "new"
        self.fence: Callable[[], Op[None]] | None = None
        """Set by a cluster node that owns the calls (docs/cluster.md): an operation run
        first in every transaction of :meth:`apply`, in the same transaction, that raises
        when this node no longer holds its lease, so that none of its writes land."""

    # ---------------------------------------------------------------- the driver

    @abstractmethod
    async def _read(self, op: Op[_T]) -> _T:
        """Run the reading ``op`` (the store must be open), outside write transactions:
        it sees every committed round."""

    @abstractmethod
    async def _snapshot(self, op: Op[_T]) -> _T:
        """Like :meth:`_read`, with every statement of ``op`` in one read snapshot."""

    @abstractmethod
    async def _round(
        self, items: list[_X], attempt: Callable[[Runner, list[_X]], Awaitable[list[_R]]]
    ) -> list[_R | BaseException]:
        """Run a round of ``items`` through :func:`in_rounds` on a connection."""

    # ---------------------------------------------------------------- state

    @property
    def outbox(self) -> _O:
        """The durable callback outbox in this database (usable while the store is open)."""
        return self._outbox

    @property
    def commit_stats(self) -> CommitStats:
        """Group-commit counters: how many ``apply`` batches shared how many commits."""
        return self._committer.stats

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"{type(self).__name__} is {self._state}: await open() first, and do not use it after close()"
            )

    def _begin_open(self) -> None:
        """Called first by ``open``: refuses a store opened before, then it is opening."""
        if self._state != "new":
            raise RuntimeError(f"{type(self).__name__}.open() called on a {self._state} store")
        self._state = "opening"

    def _opened(self) -> None:
        """Called last by ``open``: the store is open, unless ``close`` ran meanwhile."""
        if self._state != "opening":
            raise RuntimeError(f"{type(self).__name__} was closed while it was opening")
        self._state = "open"

    async def close(self) -> None:
        """Commit every queued batch and run every queued outbox operation, then let go
        of the database. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        try:
            await self._committer.close()
            await self._ops.close()
        finally:
            try:
                await self._release()
            finally:
                self._state = "closed"

    @abstractmethod
    async def _release(self) -> None:
        """Close the database connections and what runs them (also when the last rounds
        failed)."""

    async def schema_version(self) -> int:
        """The schema version recorded in the database (``SCHEMA_VERSION`` once open)."""
        return int(await self._read(fetch_value("SELECT max(version) FROM schema_version")))

    # ---------------------------------------------------------------- writes

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction; return when committed.

        Concurrent calls are merged into one commit (group commit, see
        :mod:`.batching`). On failure nothing of this batch is applied and the error is
        raised; other batches are unaffected. The events that depend on the batch may be
        sent once this returns.
        """
        self._check_open()
        batch = tuple(writes)
        if not batch:
            return
        await self._committer.submit(batch)

    async def _commit_group(self, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        d = self._d

        fence = self.fence

        async def attempt(runner: Runner, group: list[tuple[Write, ...]]) -> list[None]:
            writes = apply_writes(d, itertools.chain.from_iterable(group))
            await runner.transaction([writes] if fence is None else [fence(), writes])
            return [None] * len(group)

        return await self._round(batches, attempt)

    # ---------------------------------------------------------------- outbox rounds

    async def _op(self, make: Callable[[], Op[_T]]) -> _T:
        """Run the outbox operation ``make()`` in the next round (``make`` may be called
        again if the round's transaction fails)."""
        self._check_open()
        return cast(_T, await self._ops.submit(make))

    async def _ops_round(self, makers: list[Any]) -> list[Ok | BaseException]:
        lock = self._d.ops_lock

        async def attempt(runner: Runner, group: list[Callable[[], Op[Any]]]) -> list[Ok | BaseException]:
            if lock is None:
                return await runner.transaction([make() for make in group])
            # Before any row lock: a queueing server holding the lock exclusively waits
            # for nothing of ours (no deadlock), and our statements see its rows.
            return (await runner.transaction([_take(lock), *(make() for make in group)]))[1:]

        return await self._round(makers, attempt)

    # ---------------------------------------------------------------- reads

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every live call, oldest update first."""
        rows = await self._read(
            _rows("SELECT call_id, snapshot, updated_at FROM live_calls ORDER BY updated_at, call_id")
        )
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def load_sessions(self) -> list[SessionRow]:
        """Every saved session (ordered by creation time)."""
        return [session_from_row(r) for r in await self._read(_rows(LOAD_SESSIONS))]

    async def load_groups(self) -> dict[str, tuple[str, ...]]:
        """Every chat group with its members, in the order they were set."""
        rows = await self._read(_rows('SELECT group_id, user_id FROM "groups" ORDER BY group_id, position'))
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(str(r[0]), []).append(str(r[1]))
        return {g: tuple(m) for g, m in groups.items()}

    async def load_profiles(self) -> dict[str, tuple[str, str]]:
        """Every saved profile: ``user_id -> (nickname, avatar)``."""
        rows = await self._read(_rows("SELECT user_id, nickname, avatar FROM profiles"))
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    async def last_alive(self) -> float | None:
        """The latest :class:`~.base.AliveWrite` time, or None on a fresh store."""
        at = await self._read(fetch_value("SELECT at FROM alive WHERE id = 1"))
        return None if at is None else float(at)

    async def get_record(self, call_id: str) -> CallRecord | None:
        """The finished record of ``call_id``, or None."""
        text = await self._read(fetch_value(self._d.text(_SQL_RECORD), call_id))
        return None if text is None else record_from_json(str(text))

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind``, or None if unset."""
        text = await self._read(fetch_value(self._d.text(_SQL_CALLBACK), kind))
        return None if text is None else config_from_json(str(text))

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
        sql, args = user_calls(
            self._d.sql,
            user_id,
            begin=None if begin is None else float(begin),  # asyncpg binds floats to float8
            end=None if end is None else float(end),
            result_type=result_type,
            limit=limit,
        )
        rows = await self._read(_rows(sql, *args))
        return [
            UserCallRow(record=record_from_json(str(r[0])), result_type=CallResultType(int(r[1])))
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
        user_id: str | None = None,
    ) -> tuple[int, list[CallRecord]]:
        """Exact total count and one page (1-based) of records, newest start time first.

        ``results`` None or empty = every result; ``user_id``: only the calls this user
        was a member of. Ties on start time are ordered by call id (descending) so pages
        never overlap. Raises ValueError if ``page`` or ``per_page`` is below 1.
        """
        self._check_open()
        offset = page_offset(page, per_page)
        f = RecordFilter.of(
            start_time=None if start_time is None else float(start_time),
            end_time=None if end_time is None else float(end_time),
            results=results,
            call_type=call_type,
            user_id=user_id,
        )
        total, rows = await self._snapshot(
            _counted(
                self._d.count_records(f), records_page(self._d.sql, f, limit=per_page, offset=offset), offset
            )
        )
        return total, [record_from_json(str(r[0])) for r in rows]


def _rows(sql: str, *args: Any) -> Op[list[Any]]:
    return (yield Fetch(sql, args))  # type: ignore[no-any-return]


def _counted(count: list[Statement], page: Statement, offset: int) -> Op[tuple[int, list[Any]]]:
    """The sum of the ``count`` statements' values, and the ``page`` rows unless
    ``offset`` is past that total."""
    total = 0
    for sql, args in count:
        total += int((yield from fetch_value(sql, *args)))
    rows: list[Any] = []
    if offset < total:
        rows = yield Fetch(*page)
    return total, rows


# --------------------------------------------------------------------------- the outbox


class SqlOutbox:
    """The :class:`~.base.DurableOutbox` of a :class:`SqlStore` (its ``outbox``).

    Usable while the store is open. Claims, marks, releases, redeliveries and purges go
    in rounds of one transaction (see :class:`~.outbox.OpBatcher`); reads run as the
    store's reads. Semantics: those of :class:`~ringline.server.webhooks.MemoryOutbox`;
    see :class:`~.base.DurableOutbox`. ``lease`` (seconds) and ``owner`` (recorded with
    each claim, see :meth:`release_owner`) may be changed at any time; they apply to
    later claims.
    """

    def __init__(self, store: SqlStore[Any], lease: float = DEFAULT_LEASE) -> None:
        self._store = store
        self._d = store._d
        self.lease = check_lease(lease)
        self.owner = new_claim_owner()

    def _recompute(self, groups: Iterable[tuple[str, str]]) -> Op[None]:
        for url, call_id in dict.fromkeys(groups):
            yield Execute(self._d.recompute_head, (url, call_id))

    def _state_of(self, event_id: str) -> Op[tuple[str, str, str]]:
        row = yield from fetch_one(self._d.state_of, event_id)
        if row is None:
            raise OpRefused(no_such_delivery(event_id))
        return str(row[0]), str(row[1]), str(row[2])

    # -- the deliverer's protocol

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        """Claim up to ``limit`` due deliveries (per (url, call) only the head), as
        :attr:`owner`."""
        lease, owner, d = self.lease, self.owner, self._d

        def op() -> Op[list[Delivery]]:
            rows = yield from d.claim(now, limit, now + lease, owner)
            return [claimed_from_row(r) for r in rows]

        if limit <= 0:
            self._store._check_open()
            return []
        return await self._store._op(op)

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        """Record a 2xx (also for a delivery marked gone or given up meanwhile)."""
        await self._end_attempt("delivered", event_id, at, status, "", None)

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        """Record a failed attempt: retry at ``next_at``, or give up (None)."""
        await self._end_attempt(
            "given_up" if next_at is None else "retry", event_id, at, status, error, next_at
        )

    async def _end_attempt(
        self, to: Transition, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        d = self._d

        def op() -> Op[None]:
            if (yield from d.transition(to, event_id, at, status, error, next_at)) is None:
                raise OpRefused(no_such_delivery(event_id))

        await self._store._op(op)

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        """Finish every open delivery to ``url`` as gone, recording the attempt of
        ``event_id`` (in flight to ``url``) that got the 410; later ones are gone at once."""
        d = self._d

        def op() -> Op[int]:
            finished = 0
            if event_id is not None:
                recorded = yield from d.gone_attempt(event_id, url, at, status, error)
                if recorded is None:  # unknown: refused before writing
                    raise OpRefused(no_such_delivery(event_id))
                finished = int(recorded)
            yield Execute(d.text(_SQL_SET_GONE), (url, at))
            dropped: int = yield Execute(d.drop_gone, (at, DROPPED_GONE, url))
            return finished + dropped

        return await self._store._op(op)

    async def release(self, event_ids: Sequence[str]) -> None:
        """Put claimed deliveries back to pending (no attempt counted)."""
        ids = list(dict.fromkeys(event_ids))

        def op() -> Op[None]:
            yield from self._recompute((yield from self._d.release_ids(ids)))

        if ids:
            await self._store._op(op)
        else:
            self._store._check_open()

    async def release_owner(self, owner: str) -> int:
        """Put every in-flight delivery claimed by ``owner`` back to pending (see
        DurableOutbox.release_owner); returns how many. Then wake the deliverers."""

        def op() -> Op[int]:
            groups = yield from self._d.release_owner(owner)
            yield from self._recompute(groups)
            return len(groups)

        return await self._store._op(op)

    async def claim_owners(self) -> dict[str, str]:
        """Event id -> owner of every in-flight delivery."""
        rows = await self._store._read(_rows(self._d.claim_owners))
        return {str(r[0]): str(r[1]) for r in rows}

    # -- operators

    async def get_delivery(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or None."""
        row = await self._store._read(fetch_one(self._d.text(_SQL_ENTRY), event_id))
        return None if row is None else entry_from_row(row)

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
        self._store._check_open()
        offset = page_offset(page, per_page)
        values = state_values(states)
        d = self._d.sql
        count = deliveries_count(d, values, call_id=call_id, url=url)
        rows = deliveries_page(d, values, call_id=call_id, url=url, limit=per_page, offset=offset)
        total, found = await self._store._snapshot(_counted([count], rows, offset))
        return total, [entry_from_row(r) for r in found]

    async def counts(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state (all states present)."""
        rows = await self._store._read(_rows("SELECT state, count(*) FROM outbox GROUP BY state"))
        found = dict.fromkeys(DeliveryState, 0)
        for r in rows:
            found[DeliveryState(r[0])] = int(r[1])
        return found

    async def gone_endpoints(self) -> dict[str, float]:
        """Urls that answered 410 Gone and were not revived, with when."""
        rows = await self._store._read(_rows("SELECT url, gone_at FROM webhook_gone"))
        return {str(r[0]): float(r[1]) for r in rows}

    async def redeliver(self, event_id: str, now: float) -> OutboxEntry:
        """Send ``event_id`` again (see DurableOutbox.redeliver); then wake the deliverer."""
        d = self._d

        def op() -> Op[OutboxEntry]:
            state, url, call_id = yield from self._state_of(event_id)
            if state == DeliveryState.IN_FLIGHT:
                raise OpRefused(in_flight_now(event_id))
            if (yield from fetch_one(d.text(_SQL_GONE_AT), url)) is not None:
                raise OpRefused(url_still_gone(event_id, url))
            if state == DeliveryState.PENDING:
                yield Execute(d.due_now, (now, event_id))
            else:
                yield Execute(d.reopen, (now, event_id))
                yield from self._recompute([(url, call_id)])
            return entry_from_row((yield from fetch_one(d.text(_SQL_ENTRY), event_id)))

        return await self._store._op(op)

    async def purge_finished(self, before: float) -> int:
        """Delete delivered deliveries finished before ``before``; returns how many.
        Deletes in chunks, one transaction each, so call writes go on meanwhile."""
        d = self._d
        chunk = d.purge_chunk

        def op() -> Op[int]:
            return int((yield Execute(d.purge, (before, chunk))))

        total = 0
        while True:
            n = await self._store._op(op)
            total += n
            if n < chunk:
                return total
