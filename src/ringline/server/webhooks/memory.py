"""An in-memory :class:`~.delivery.Outbox`: for tests, and the reference semantics a
durable (SQL) outbox must match. It loses everything when the process ends, so a
server must not use it for real callbacks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .delivery import Delivery, DeliveryState, OutboxEntry, new_claim_owner

__all__ = ["MemoryOutbox"]

_OPEN = (DeliveryState.PENDING, DeliveryState.IN_FLIGHT)


@dataclass(slots=True, eq=False)
class _Row:
    delivery: Delivery
    state: DeliveryState
    next_at: float
    attempts: int = 0
    leased_until: float = 0.0
    claimed_by: str = ""
    last_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str = ""
    finished_at: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.delivery.url, self.delivery.call_id)

    def view(self) -> OutboxEntry:
        return OutboxEntry(
            delivery=dataclasses.replace(self.delivery, attempts=self.attempts),
            state=self.state,
            next_at=self.next_at,
            last_attempt_at=self.last_attempt_at,
            last_status=self.last_status,
            last_error=self.last_error,
            finished_at=self.finished_at,
        )


class MemoryOutbox:
    """The outbox protocol in memory, plus what the producer and operators need:
    :meth:`add`, :meth:`revive_endpoint`, :meth:`entries`, :meth:`get` and, for tests,
    :meth:`wait_until`.

    ``lease`` (seconds) is how long a claim lasts before an unfinished delivery becomes
    claimable again; keep it above the deliverer's total timeout. ``owner`` is recorded
    with each claim (see :meth:`release_owner`); it may be changed at any time and
    applies to later claims.
    """

    def __init__(self, *, lease: float = 60.0, owner: str | None = None) -> None:
        if lease <= 0:
            raise ValueError("lease must be > 0 seconds")
        self.lease = lease
        self.owner = owner if owner is not None else new_claim_owner()
        self._rows: dict[str, _Row] = {}
        self._open: dict[tuple[str, str], list[_Row]] = {}  # per (url, call): unfinished, by sequence
        self._last_sequence: dict[tuple[str, str], int] = {}
        self._gone: dict[str, float] = {}
        self._changed = asyncio.Event()

    # -- producer side

    async def add(self, delivery: Delivery, *, next_at: float | None = None) -> OutboxEntry:
        """Queue ``delivery`` (first attempt at ``next_at``, default its ``created_at``).

        Sequences of one (url, call_id) must be added in increasing order (ValueError
        otherwise), as must event ids be unique. A delivery to a url that answered
        ``410 Gone`` is stored as *gone* at once (see :meth:`revive_endpoint`).
        """
        d = delivery
        if d.event_id in self._rows:
            raise ValueError(f"event id {d.event_id} is in the outbox already")
        key = (d.url, d.call_id)
        last = self._last_sequence.get(key)
        if last is not None and d.sequence <= last:
            raise ValueError(
                f"call {d.call_id} to {d.url}: sequence {d.sequence} after {last}; add each call's "
                "deliveries in the order of their sequence numbers"
            )
        self._last_sequence[key] = d.sequence
        first_at = d.created_at if next_at is None else next_at
        row = _Row(dataclasses.replace(d, attempts=0), DeliveryState.PENDING, first_at)
        self._rows[d.event_id] = row
        gone_at = self._gone.get(d.url)
        if gone_at is not None:
            row.state = DeliveryState.GONE
            row.finished_at = gone_at
            row.last_error = "not sent: the endpoint answered 410 Gone earlier"
        else:
            self._open.setdefault(key, []).append(row)
        self._notify()
        return row.view()

    def revive_endpoint(self, url: str) -> bool:
        """Accept deliveries to ``url`` again (after the callback is set anew); True if it
        was gone. Deliveries dropped meanwhile stay dropped."""
        found = self._gone.pop(url, None) is not None
        self._notify()
        return found

    # -- the Outbox protocol

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        heads: list[_Row] = []
        for group in self._open.values():
            head = group[0]
            if (head.state is DeliveryState.PENDING and head.next_at <= now) or (
                head.state is DeliveryState.IN_FLIGHT and head.leased_until <= now
            ):
                heads.append(head)
        heads.sort(key=lambda r: (r.next_at, r.delivery.created_at, r.delivery.sequence))
        claimed = heads[: max(limit, 0)]
        for row in claimed:
            row.state = DeliveryState.IN_FLIGHT
            row.leased_until = now + self.lease
            row.claimed_by = self.owner
        if claimed:
            self._notify()
        return [dataclasses.replace(row.delivery, attempts=row.attempts) for row in claimed]

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        row = self._row(event_id)
        if row.state is DeliveryState.DELIVERED:
            return
        row.attempts += 1
        row.last_attempt_at = at
        row.last_status = status
        row.last_error = ""
        self._finish(row, DeliveryState.DELIVERED, at)

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        row = self._row(event_id)
        if row.state is not DeliveryState.IN_FLIGHT:
            return
        row.attempts += 1
        row.last_attempt_at = at
        row.last_status = status
        row.last_error = error
        if next_at is None:
            self._finish(row, DeliveryState.GIVEN_UP, at)
        else:
            row.state = DeliveryState.PENDING
            row.next_at = next_at
            row.leased_until = 0.0
            self._notify()

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        hit = None if event_id is None else self._row(event_id)  # KeyError before any change
        self._gone[url] = at
        finished = 0
        if hit is not None and hit.state is DeliveryState.IN_FLIGHT and hit.delivery.url == url:
            hit.attempts += 1
            hit.last_attempt_at = at
            hit.last_status = status
            hit.last_error = error
            self._finish(hit, DeliveryState.GONE, at)
            finished = 1
        dropped = [row for group in self._open.values() for row in group if row.delivery.url == url]
        for row in dropped:
            row.last_error = "dropped: the endpoint answered 410 Gone"
            self._finish(row, DeliveryState.GONE, at)
        self._notify()
        return finished + len(dropped)

    async def release(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            row = self._rows.get(event_id)
            if row is not None and row.state is DeliveryState.IN_FLIGHT:
                row.state = DeliveryState.PENDING
                row.leased_until = 0.0
        self._notify()

    async def release_owner(self, owner: str) -> int:
        """Put every in-flight delivery claimed by ``owner`` back to pending, as
        :meth:`release` does; returns how many. Only for an owner known to be dead."""
        rows = [
            r for r in self._rows.values() if r.state is DeliveryState.IN_FLIGHT and r.claimed_by == owner
        ]
        for row in rows:
            row.state = DeliveryState.PENDING
            row.leased_until = 0.0
        if rows:
            self._notify()
        return len(rows)

    async def claim_owners(self) -> dict[str, str]:
        """Event id -> owner of every in-flight delivery."""
        return {
            r.delivery.event_id: r.claimed_by
            for r in self._rows.values()
            if r.state is DeliveryState.IN_FLIGHT
        }

    # -- inspection

    def get(self, event_id: str) -> OutboxEntry:
        """The entry of ``event_id`` (KeyError if unknown)."""
        return self._row(event_id).view()

    def entries(self, *states: DeliveryState) -> list[OutboxEntry]:
        """Every entry in ``states`` (all when none given), oldest first. Operators list
        failed deliveries with ``entries(GIVEN_UP, GONE)``."""
        rows = [r for r in self._rows.values() if not states or r.state in states]
        rows.sort(key=lambda r: (r.delivery.created_at, r.delivery.call_id, r.delivery.sequence))
        return [r.view() for r in rows]

    def counts(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state."""
        found = dict.fromkeys(DeliveryState, 0)
        for row in self._rows.values():
            found[row.state] += 1
        return found

    def gone_endpoints(self) -> dict[str, float]:
        """Urls that answered ``410 Gone``, with when."""
        return dict(self._gone)

    @property
    def settled(self) -> bool:
        """True when nothing is pending or in flight."""
        return not self._open

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds, re-checking after every outbox change;
        TimeoutError (with the state counts) after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            counts = {s.value: n for s, n in self.counts().items() if n}
            raise TimeoutError(f"outbox condition not met within {timeout} s; states: {counts}") from None

    # -- internals

    def _row(self, event_id: str) -> _Row:
        try:
            return self._rows[event_id]
        except KeyError:
            raise KeyError(f"no delivery {event_id!r} in the outbox") from None

    def _finish(self, row: _Row, state: DeliveryState, at: float) -> None:
        was_open = row.state in _OPEN
        row.state = state
        row.finished_at = at
        row.leased_until = 0.0
        if was_open:
            group = self._open[row.key]
            group.remove(row)
            if not group:
                del self._open[row.key]
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
