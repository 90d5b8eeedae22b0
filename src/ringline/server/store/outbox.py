"""What the SQLite and PostgreSQL outboxes share: the row layout, insert planning, the
operator-facing messages, and :class:`OpBatcher`, which merges concurrent outbox
operations into one transaction.

The tables (schema migration 3 of both stores):

``outbox``, one row per delivery, keyed by ``event_id``: the :class:`Delivery` fields,
``created_at`` (creation, shown to operators), ``window_start`` (start of the give-up
window: ``created_at``, or the last :meth:`~.base.DurableOutbox.redeliver`; claims return
it as ``Delivery.created_at``), ``state`` (a :class:`DeliveryState` value), ``next_at``,
``attempts``, ``leased_until`` and ``claimed_by`` (claims: the lease's end and the
claim owner of the last claim, added by migration 6), ``last_attempt_at`` /
``last_status`` / ``last_error``, ``finished_at``, ``head``, and ``extra_query`` (the
delivery's extra query parameters, added by migration 7).

``webhook_gone``: the urls that answered ``410 Gone``, with when.

**The head invariant.** Per (url, call_id) at most one *open* (pending or in-flight) row
has ``head`` set: the in-flight one if there is one, else the lowest-sequence pending
one; finished rows never have it. Every statement that adds, finishes, releases or
reopens a row restores it for that row's group in the same transaction (see
``recompute head`` in each store). A claim then only looks at head rows, through
partial indexes (``head AND state = 'pending'`` ordered by ``next_at``, and ``head AND
state = 'in_flight'`` by ``leased_until``), so it costs O(claimed), however many
deliveries wait behind a receiver that is down.

This module is internal to the store package; use :attr:`.base.Store.outbox`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..webhooks.delivery import Delivery, DeliveryState, OutboxEntry
from .batching import Ok, RoundBatcher, RunRound

__all__ = [
    "DEFAULT_LEASE",
    "OUTBOX_COLUMNS",
    "GroupInfo",
    "NewRow",
    "Ok",
    "OpBatcher",
    "OpRefused",
    "check_lease",
    "check_page",
    "claimed_from_row",
    "entry_from_row",
    "plan_inserts",
    "state_values",
]

#: Default claim lease (seconds); must exceed the deliverer's total timeout (10 s).
DEFAULT_LEASE = 60.0

#: Rows are read in this column order by :func:`entry_from_row` / :func:`claimed_from_row`.
OUTBOX_COLUMNS = (
    "event_id, url, call_id, sequence, command, body, created_at, window_start, state,"
    " next_at, attempts, last_attempt_at, last_status, last_error, finished_at, extra_query"
)

OPEN_STATES = (DeliveryState.PENDING.value, DeliveryState.IN_FLIGHT.value)

GONE_AT_INSERT = "not sent: the endpoint answered 410 Gone earlier"
DROPPED_GONE = "dropped: the endpoint answered 410 Gone"

#: Rows deleted per transaction by ``purge_finished`` (so call writes interleave).
PURGE_CHUNK = 5000


def check_lease(lease: float) -> float:
    """``lease`` as a float; ValueError unless it is > 0."""
    if not lease > 0:
        raise ValueError(f"the outbox lease must be > 0 seconds, not {lease}")
    return float(lease)


def check_page(page: int, per_page: int) -> None:
    """ValueError unless both are >= 1."""
    if page < 1 or per_page < 1:
        raise ValueError(f"page and per_page must be >= 1 (got {page}, {per_page})")


def state_values(states: Sequence[DeliveryState]) -> list[str]:
    """The distinct state strings of ``states`` (ValueError for an unknown one)."""
    return list(dict.fromkeys(DeliveryState(s).value for s in states))


def no_such_delivery(event_id: str) -> KeyError:
    return KeyError(f"no delivery {event_id!r} in the outbox")


# The two refusals of redeliver; callers prefix them with the event id.
def in_flight_now(event_id: str) -> ValueError:
    return ValueError("it is being delivered right now; retry in a few seconds")


def url_still_gone(event_id: str, url: str) -> ValueError:
    return ValueError(
        f"its url {url}: the endpoint answered 410 Gone; set the callback url again"
        " (v4/call_config/set_callback or v1/callback/set) first"
    )


def entry_from_row(r: Sequence[Any]) -> OutboxEntry:
    """An :class:`OutboxEntry` from a row in :data:`OUTBOX_COLUMNS` order (the
    delivery's ``created_at`` is the original creation time)."""
    return OutboxEntry(
        delivery=Delivery(
            event_id=str(r[0]),
            call_id=str(r[2]),
            sequence=int(r[3]),
            url=str(r[1]),
            command=str(r[4]),
            body=bytes(r[5]),
            created_at=float(r[6]),
            attempts=int(r[10]),
            query=str(r[15]),
        ),
        state=DeliveryState(r[8]),
        next_at=float(r[9]),
        last_attempt_at=None if r[11] is None else float(r[11]),
        last_status=None if r[12] is None else int(r[12]),
        last_error=str(r[13]),
        finished_at=None if r[14] is None else float(r[14]),
    )


def claimed_from_row(r: Sequence[Any]) -> Delivery:
    """The :class:`Delivery` a claim hands out: ``created_at`` is the start of the
    give-up window (``window_start``), ``attempts`` the attempts recorded so far."""
    return Delivery(
        event_id=str(r[0]),
        call_id=str(r[2]),
        sequence=int(r[3]),
        url=str(r[1]),
        command=str(r[4]),
        body=bytes(r[5]),
        created_at=float(r[7]),
        attempts=int(r[10]),
        query=str(r[15]),
    )


# --------------------------------------------------------------------------- inserts


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """What the outbox holds for one (url, call_id) before an insert."""

    last_sequence: int | None
    has_open: bool


class NewRow(NamedTuple):
    """One row to insert, in the column order of both stores' insert statements."""

    event_id: str
    url: str
    call_id: str
    sequence: int
    command: str
    body: bytes
    created_at: float
    window_start: float
    state: str
    head: bool
    next_at: float
    last_error: str
    finished_at: float | None
    query: str


def plan_inserts(
    deliveries: Sequence[Delivery],
    *,
    existing_ids: Collection[str],
    groups: Mapping[tuple[str, str], GroupInfo],
    gone: Mapping[str, float],
) -> list[NewRow]:
    """The rows for ``deliveries`` (in order), given what the outbox holds already.

    ``existing_ids``: those of the deliveries' event ids already stored; ``groups``: per
    (url, call_id) of the deliveries, its highest stored sequence and whether it has an
    open row; ``gone``: those of the deliveries' urls marked gone. Raises ValueError
    for a reused event id or a sequence not above the last one of its (url, call_id),
    with MemoryOutbox's messages.
    """
    last = {key: g.last_sequence for key, g in groups.items()}
    has_open = {key: g.has_open for key, g in groups.items()}
    seen: set[str] = set()
    rows: list[NewRow] = []
    for d in deliveries:
        if d.event_id in seen or d.event_id in existing_ids:
            raise ValueError(f"event id {d.event_id} is in the outbox already")
        seen.add(d.event_id)
        key = (d.url, d.call_id)
        prev = last.get(key)
        if prev is not None and d.sequence <= prev:
            raise ValueError(
                f"call {d.call_id} to {d.url}: sequence {d.sequence} after {prev}; add each call's "
                "deliveries in the order of their sequence numbers"
            )
        last[key] = d.sequence
        gone_at = gone.get(d.url)
        if gone_at is not None:
            state, head, error, finished = DeliveryState.GONE.value, False, GONE_AT_INSERT, gone_at
        else:
            state, head, error, finished = DeliveryState.PENDING.value, not has_open.get(key, False), "", None
            has_open[key] = True
        rows.append(
            NewRow(
                d.event_id,
                d.url,
                d.call_id,
                d.sequence,
                d.command,
                d.body,
                d.created_at,
                d.created_at,
                state,
                head,
                d.created_at,
                error,
                finished,
                d.query,
            )
        )
    return rows


# --------------------------------------------------------------------------- batching


class OpRefused(Exception):
    """Raised by an outbox operation that refuses *before its first write* (an unknown
    id, a delivery in flight): the round's transaction stays usable, and the caller of
    that operation gets ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class OpBatcher(RoundBatcher[Any]):
    """Group commit for outbox operations (claims, marks, releases): one round at a time,
    and every operation submitted while a round runs goes into the next round, all in
    ONE transaction. So 2,000 marks per second cost tens of commits, not thousands.

    An *operation* is opaque here (the store's ``run_round`` knows how to run one: a
    function of the connection); ``run_round`` returns an :class:`Ok` or the exception
    per op, in order. An op that raises :class:`OpRefused` fails alone; if anything
    else fails, the store reruns each op in a transaction of its own, so a bad op fails
    only its own caller.

    Like :class:`.batching.GroupCommitter`, cancelling a waiting caller does not withdraw
    its operation.
    """

    __slots__ = ()

    def __init__(self, run_round: RunRound[Any]) -> None:
        super().__init__(
            run_round,
            name="ringline-outbox-ops",
            closed_error="the store is closed; open a new one to use its outbox",
        )


def outcome_of(exc: BaseException) -> BaseException:
    """The exception a caller gets for ``exc`` raised by its op (unwraps OpRefused)."""
    return exc.error if isinstance(exc, OpRefused) else exc
