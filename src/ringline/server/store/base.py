"""The store boundary: what the server persists, behind one ``Store`` protocol.

The core never imports this package. The server turns the core's persistence actions
into :class:`Write` values and hands a batch of them to :meth:`Store.apply`, which must
apply the whole batch in ONE transaction (all or nothing) and return only once it is
durable. The server sends the events that depend on a batch only after ``apply``
returns: that is how records are written before terminal events go out (docs/spec.md §6.8).

Naming: a store write is named after what it changes, then how: ``…Write`` inserts,
upserts or replaces (:class:`LiveCallWrite`, :class:`FinishedCallWrite`,
:class:`SessionWrite`, :class:`GroupMembersWrite`, :class:`ProfileWrite`,
:class:`AliveWrite`, :class:`CallbackConfigWrite`, :class:`DeliveriesWrite`),
``…Delete`` deletes (:class:`SessionDelete`), and the two others say what they do
(:class:`UserCallsHide`, :class:`EndpointRevive`). The core's persistence *intents*
(``core.machine.SaveCall``, ``FinishCall``, ``SaveProfile``, ``SetGroup``, in a
``Persist`` action) are verbs and never share a name with these: the hub turns each
intent into its write.

Callbacks: the store is also the durable *outbox* of server callbacks. The producer
queues deliveries with the :class:`DeliveriesWrite` *in the same batch* as the
state change that caused them (so a callback exists exactly when its event was
committed), then wakes the :class:`~ringline.server.webhooks.Deliverer`, which drains
:attr:`Store.outbox` (a :class:`DurableOutbox`). After the callback url is set again,
apply :class:`EndpointRevive` for it (in the batch with :class:`CallbackConfigWrite`) so
a url that answered ``410 Gone`` receives callbacks again.

Implementations: :mod:`.sqlite` (default) and :mod:`.postgres`, two dialects of one
engine (:mod:`.engine`: every operation written once; :mod:`.schema`: one schema version
and one list of migrations). Both pass ``tests/server/test_store_conformance.py`` and
``tests/server/test_outbox_conformance.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...core.enums import CallResultType
from ...core.records import CallRecord
from ..webhooks.delivery import Delivery, DeliveryState, Outbox, OutboxEntry

__all__ = [
    "AliveWrite",
    "CallbackConfigWrite",
    "DeliveriesWrite",
    "DurableOutbox",
    "EndpointRevive",
    "FinishedCallWrite",
    "GroupMembersWrite",
    "LiveCallWrite",
    "ProfileWrite",
    "SessionDelete",
    "SessionRow",
    "SessionWrite",
    "Store",
    "UserCallRow",
    "UserCallsHide",
    "Write",
    "refuses_values",
]


#: SQLSTATE classes of PostgreSQL errors about what was written, not about the
#: database: data exception, integrity constraint violation, syntax or access rule,
#: and a trigger's RAISE (P0001).
_PG_VALUE_CLASSES = ("22", "23", "42", "P0")


def refuses_values(error: BaseException) -> bool:
    """True if ``error``, raised by :meth:`Store.apply`, says the database (or its
    driver) refused the values of the batch: writing the same batch again fails again,
    while other batches go through. False for the database's own trouble (locked, disk
    full, connection lost, a serialization failure, a closed store): worth retrying.
    """
    if isinstance(error, sqlite3.OperationalError):
        return False
    if isinstance(error, sqlite3.Error):  # IntegrityError, DataError, ProgrammingError, ...
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):  # asyncpg's PostgresError
        return sqlstate.startswith(_PG_VALUE_CLASSES)
    # The driver refused a value before sending it (a lone surrogate, an integer past
    # 64 bits, a type it cannot bind).
    return isinstance(error, ValueError | TypeError | OverflowError)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A logged-in device, kept so a device can resume across a server restart."""

    token: str
    device_id: str
    user_id: str
    multi_device: bool
    sig_expires_at: float
    created_at: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class LiveCallWrite:
    """Upsert the snapshot (opaque JSON text from the core) of a call that is still live."""

    call_id: str
    snapshot: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class FinishedCallWrite:
    """Insert the final record, index it for each of its users, delete the live snapshot.

    Idempotent: finishing a call whose record exists already changes nothing.
    ``user_results`` gives, per user of the call, how that user sees it.
    """

    record: CallRecord
    user_results: tuple[tuple[str, CallResultType], ...]


@dataclass(frozen=True, slots=True)
class SessionWrite:
    session: SessionRow


@dataclass(frozen=True, slots=True)
class SessionDelete:
    token: str


@dataclass(frozen=True, slots=True)
class GroupMembersWrite:
    """Replace the member list of a chat group (empty list deletes the group)."""

    group_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """Upsert a user's profile (``set_self_info``: the nickname and avatar shown to the
    users they invite). Both empty deletes it. In one batch, the last one of a user wins.
    NUL characters are stored as U+FFFD (PostgreSQL text cannot hold them).
    """

    user_id: str
    nickname: str
    avatar: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class UserCallsHide:
    """Hide calls from one user's own history (``delete_record_calls``); records stay."""

    user_id: str
    call_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AliveWrite:
    """The server was alive at ``at``: the 'last known time' used after a crash."""

    at: float


@dataclass(frozen=True, slots=True)
class CallbackConfigWrite:
    """Replace the app's callback configuration of one ``kind``; ``None`` deletes it.

    ``kind`` is ``"v4"`` (``{"Url", "CallbackCommandList"}``, set through
    ``v4/call_config/set_callback``) or ``"v1"`` (``{"address", "actions"}``, set through
    ``v1/callback/set``); the two are kept apart. ``config`` must be JSON-serialisable
    and is returned as is by :meth:`Store.get_callback_config`.
    """

    kind: str
    config: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DeliveriesWrite:
    """Put callback deliveries in the outbox, in the transaction of their event.

    Each delivery is stored *pending*, due at its ``created_at`` (which also starts its
    24 h give-up window). A delivery to a url that answered ``410 Gone`` (and was not
    revived since, see :class:`EndpointRevive`) is stored as *gone* at once, finished
    at the time the url went gone; it is listed for operators and never sent.

    The producer must queue the deliveries of one (url, call_id) in increasing
    ``sequence`` order, across batches too, and never reuse an event id: the batch fails
    with ValueError otherwise. After ``apply`` returns, call ``Deliverer.wake()``.
    """

    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True, slots=True)
class EndpointRevive:
    """Forget that ``url`` answered ``410 Gone``: deliveries queued from now on are sent
    again. Apply it with the :class:`CallbackConfigWrite` that sets the url anew.
    Deliveries dropped meanwhile stay *gone* (an operator may
    :meth:`DurableOutbox.redeliver` them). Reviving a url that is not gone is a no-op."""

    url: str


Write = (
    LiveCallWrite
    | FinishedCallWrite
    | SessionWrite
    | SessionDelete
    | GroupMembersWrite
    | ProfileWrite
    | UserCallsHide
    | AliveWrite
    | CallbackConfigWrite
    | DeliveriesWrite
    | EndpointRevive
)


class DurableOutbox(Outbox, Protocol):
    """The outbox a :class:`Store` keeps: the deliverer's
    :class:`~ringline.server.webhooks.Outbox` protocol, with the semantics of
    :class:`~ringline.server.webhooks.MemoryOutbox`, plus what operators need.

    Deliveries enter through the :class:`DeliveriesWrite` write (``Store.apply``), not
    through this object. Times are unix seconds. Every method raises RuntimeError while
    the store is not open.

    Give-up window: :meth:`claim_due` returns each :class:`Delivery` with ``created_at``
    = the start of its 24 h give-up window, which is the creation time, or the time of
    the last :meth:`redeliver` of a finished delivery. :class:`OutboxEntry` values (from
    :meth:`get_delivery`, :meth:`list_deliveries`, :meth:`redeliver`) always show the
    original creation time.
    """

    lease: float
    """Seconds a claim lasts; an unfinished claimed delivery becomes claimable again
    after it (a crashed deliverer). Must exceed the deliverer's total timeout."""

    owner: str
    """Who claims through this object: recorded with every claim (a fresh
    :func:`~ringline.server.webhooks.new_claim_owner` by default; a callback worker sets
    the one its server gave it). May be changed at any time; applies to later claims."""

    async def release_owner(self, owner: str) -> int:
        """Put every in-flight delivery claimed by ``owner`` back to *pending*, as
        :meth:`release` does (no attempt counted; due at once, since it was due when
        claimed); returns how many. Call it only once the deliverer of ``owner`` is dead
        (its process exited), then wake the deliverers; its claims go out again with the
        same event ids instead of waiting for their lease."""
        ...

    async def claim_owners(self) -> dict[str, str]:
        """Event id -> owner of every in-flight delivery (few: at most what the
        deliverers have under way)."""
        ...

    async def get_delivery(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or None if the outbox has none (never queued, or
        purged)."""
        ...

    async def list_deliveries(
        self,
        states: Sequence[DeliveryState],
        *,
        call_id: str | None = None,
        url: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[int, list[OutboxEntry]]:
        """Exact total and one page (1-based) of the entries in ``states`` (empty = every
        state), optionally of one call and/or one url; oldest created first, ties by
        call id, then sequence. Operators list failures with ``[GIVEN_UP, GONE]``.
        Raises ValueError if ``page`` or ``per_page`` is below 1."""
        ...

    async def counts(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state (every state is a key, 0 if none)."""
        ...

    async def gone_endpoints(self) -> dict[str, float]:
        """Urls that answered ``410 Gone`` and were not revived, with when."""
        ...

    async def redeliver(self, event_id: str, now: float) -> OutboxEntry:
        """Send ``event_id`` again; returns its entry afterwards. Call
        ``Deliverer.wake()`` next.

        A *delivered*, *given up* or *gone* delivery goes back to *pending*, due at
        ``now``, with a fresh give-up window starting at ``now``; its attempt count is
        kept (so retries after a failure continue the schedule where it was), and its
        ``last_*`` fields still describe the last attempt. A *pending* one becomes due
        now (its window is unchanged). Per-call order still holds: it goes out when no
        earlier unfinished delivery of its (url, call) is ahead of it.

        Raises KeyError (naming the id) if unknown; ValueError if it is *in flight*
        (retry in a few seconds) or its url is still marked gone (set the callback url
        again, which applies :class:`EndpointRevive`, first). The ValueError messages
        say why and what to do, without the id: prefix it when showing them.
        """
        ...

    async def purge_finished(self, before: float) -> int:
        """Delete *delivered* deliveries that finished before ``before``; returns how
        many. *Given up* and *gone* ones are kept for operators. Run it periodically
        (e.g. hourly, with ``before`` = now - 7 days) to bound the outbox."""
        ...


@dataclass(frozen=True, slots=True)
class UserCallRow:
    record: CallRecord
    result_type: CallResultType


class Store(Protocol):
    """Durable state of one Ringline app. All methods are coroutine-safe.

    Call :meth:`open` once before anything else and :meth:`close` at shutdown.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema. Raise a clear error if unreachable."""
        ...

    async def close(self) -> None:
        """Flush and release connections. Idempotent."""
        ...

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction; return when durable."""
        ...

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every call saved live and not finished."""
        ...

    async def load_sessions(self) -> list[SessionRow]: ...

    async def load_groups(self) -> dict[str, tuple[str, ...]]: ...

    async def load_profiles(self) -> dict[str, tuple[str, str]]:
        """Every saved profile: ``user_id -> (nickname, avatar)``."""
        ...

    async def last_alive(self) -> float | None:
        """The latest :class:`AliveWrite` time, or None on a fresh store."""
        ...

    async def get_record(self, call_id: str) -> CallRecord | None: ...

    @property
    def outbox(self) -> DurableOutbox:
        """The durable callback outbox kept in this store (usable while it is open): hand
        it to a :class:`~ringline.server.webhooks.Deliverer`."""
        ...

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind`` (``"v4"`` or ``"v1"``), or None if unset.

        Reflects every :class:`CallbackConfigWrite` whose ``apply`` has returned.
        """
        ...

    async def query_user_calls(
        self,
        user_id: str,
        *,
        begin: float | None,
        end: float | None,
        result_type: CallResultType,
        limit: int,
    ) -> list[UserCallRow]:
        """The user's own, non-hidden calls, newest first (by start time).

        ``begin``/``end`` bound the start time (inclusive); ``result_type`` UNKNOWN = all.
        """
        ...

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

        ``start_time``/``end_time`` bound the start time (inclusive); ``results`` are
        v4 ``CallResult`` strings; ``call_type`` is ``SingleCall`` or ``MultiCall``;
        ``user_id``: only calls this user was a member of (caller or callee).
        """
        ...
