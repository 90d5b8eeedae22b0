"""Conformance suite of the durable callback outbox (:class:`~ringline.server.store.DurableOutbox`).

Every test taking ``box`` runs against ``memory`` (:class:`MemoryOutbox`, the reference
semantics, behind a tiny adapter: ``add`` = ``apply(DeliveriesWrite)``, revive =
``apply(EndpointRevive)``) and the ``outbox`` of each store backend of
``test_store_conformance.py`` (``sqlite-file``, ``sqlite-memory``, ``postgres``), with one
body. Tests taking ``sql`` cover what only the stores have (``redeliver``,
``purge_finished``, atomic batches); ``durable`` ones reopen the same storage. No sleeps
for synchronisation and no timing thresholds: tests pass explicit ``now`` values, or
await receiver and outbox conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from ringline.server.store import (
    CallbackConfigWrite,
    DeliveriesWrite,
    DurableOutbox,
    EndpointRevive,
    SqliteStore,
    Store,
    Write,
)
from ringline.server.store import postgres as pg_module
from ringline.server.store import sqlite as sqlite_module
from ringline.server.webhooks import (
    Deliverer,
    Delivery,
    DeliveryState,
    MemoryOutbox,
    OutboxEntry,
    RetrySchedule,
    WebhookCredentials,
    generate_secret,
    new_delivery,
)

PENDING, IN_FLIGHT, DELIVERED, GIVEN_UP, GONE = (
    DeliveryState.PENDING,
    DeliveryState.IN_FLIGHT,
    DeliveryState.DELIVERED,
    DeliveryState.GIVEN_UP,
    DeliveryState.GONE,
)
T0 = 1_700_000_000.0
if TYPE_CHECKING:
    from backends import Backend, OpenBackend

GONE_AT_INSERT = "not sent: the endpoint answered 410 Gone earlier"


def _d(call: str, seq: int, url: str = "http://r/a", at: float = 0.0) -> Delivery:
    return new_delivery(
        url=url, command="normal_end", call_id=call, sequence=seq, payload={"CallId": call}, created_at=at
    )


# --------------------------------------------------------------------------- harness


class MemoryDurable:
    """:class:`MemoryOutbox` seen as a DurableOutbox, for the semantics both share.
    ``redeliver`` and ``purge_finished`` exist only in the stores (tests of them take
    the ``sql`` fixture)."""

    def __init__(self) -> None:
        self.box = MemoryOutbox()

    @property
    def lease(self) -> float:
        return self.box.lease

    @lease.setter
    def lease(self, value: float) -> None:
        self.box.lease = value

    async def apply(self, writes: Sequence[Write]) -> None:
        for w in writes:
            if isinstance(w, DeliveriesWrite):
                for d in w.deliveries:
                    await self.box.add(d)
            elif isinstance(w, EndpointRevive):
                self.box.revive_endpoint(w.url)
            else:
                raise TypeError(f"the memory outbox takes no {type(w).__name__}")

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        return await self.box.claim_due(now, limit)

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        await self.box.mark_delivered(event_id, at, status)

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        await self.box.mark_failed(event_id, at, status, error, next_at)

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        return await self.box.mark_endpoint_gone(url, at, event_id=event_id, status=status, error=error)

    async def release(self, event_ids: Sequence[str]) -> None:
        await self.box.release(event_ids)

    @property
    def owner(self) -> str:
        return self.box.owner

    @owner.setter
    def owner(self, value: str) -> None:
        self.box.owner = value

    async def release_owner(self, owner: str) -> int:
        return await self.box.release_owner(owner)

    async def claim_owners(self) -> dict[str, str]:
        return await self.box.claim_owners()

    async def get_delivery(self, event_id: str) -> OutboxEntry | None:
        try:
            return self.box.get(event_id)
        except KeyError:
            return None

    async def list_deliveries(
        self,
        states: Sequence[DeliveryState],
        *,
        call_id: str | None = None,
        url: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[int, list[OutboxEntry]]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page must be >= 1")
        found = [
            e
            for e in self.box.entries(*states)
            if (call_id is None or e.delivery.call_id == call_id) and (url is None or e.delivery.url == url)
        ]
        return len(found), found[(page - 1) * per_page : page * per_page]

    async def counts(self) -> dict[DeliveryState, int]:
        return self.box.counts()

    async def gone_endpoints(self) -> dict[str, float]:
        return self.box.gone_endpoints()

    async def redeliver(self, event_id: str, now: float) -> OutboxEntry:
        raise NotImplementedError("MemoryOutbox has no redeliver")

    async def purge_finished(self, before: float) -> int:
        raise NotImplementedError("MemoryOutbox has no purge_finished")


@dataclass
class Box:
    """One outbox under test and the way to feed it."""

    name: str
    outbox: DurableOutbox
    apply: Callable[[Sequence[Write]], Awaitable[None]]
    store: Store | None = None
    backend: Backend | None = None

    async def add(self, *deliveries: Delivery) -> None:
        await self.apply([DeliveriesWrite(deliveries)])

    async def revive(self, url: str) -> None:
        await self.apply([EndpointRevive(url)])

    async def get(self, event_id: str) -> OutboxEntry:
        entry = await self.outbox.get_delivery(event_id)
        assert entry is not None, event_id
        return entry

    async def ids(self, *states: DeliveryState, **kw: Any) -> list[str]:
        _, entries = await self.outbox.list_deliveries(states, per_page=100_000, **kw)
        return [e.delivery.event_id for e in entries]


@contextlib.asynccontextmanager
async def _open_box(name: str, open_backend: OpenBackend) -> AsyncIterator[Box]:
    if name == "memory":
        mem = MemoryDurable()
        yield Box(name, mem, mem.apply)
        return
    async with open_backend(name) as backend:
        store = backend.make()
        await store.open()
        try:
            yield Box(name, store.outbox, store.apply, store, backend)
        finally:
            await store.close()


@pytest.fixture(params=["memory", "sqlite-file", "sqlite-memory", "postgres"])
async def box(request: pytest.FixtureRequest, open_backend: OpenBackend) -> AsyncIterator[Box]:
    async with _open_box(request.param, open_backend) as b:
        yield b


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
async def sql(request: pytest.FixtureRequest, open_backend: OpenBackend) -> AsyncIterator[Box]:
    async with _open_box(request.param, open_backend) as b:
        yield b


@pytest.fixture(params=["sqlite-file", "postgres"])
async def durable(request: pytest.FixtureRequest, open_backend: OpenBackend) -> AsyncIterator[Backend]:
    async with open_backend(request.param) as backend:
        yield backend


# --------------------------------------------------------------------------- MemoryOutbox's tests


async def test_a_dead_owners_claims_go_back_at_once_and_the_others_stay(box: Box) -> None:
    a1, a2, b1, c1 = _d("A", 1), _d("A", 2), _d("B", 1, at=1.0), _d("C", 1, at=2.0)
    await box.add(a1, a2, b1, c1)
    box.outbox.owner = "worker-0"
    assert [d.event_id for d in await box.outbox.claim_due(now=1.0, limit=10)] == [a1.event_id, b1.event_id]
    box.outbox.owner = "worker-1"
    assert [d.event_id for d in await box.outbox.claim_due(now=2.0, limit=10)] == [c1.event_id]
    assert await box.outbox.release_owner("worker-0") == 2
    assert await box.outbox.claim_owners() == {c1.event_id: "worker-1"}
    assert [(await box.get(e)).state for e in (a1.event_id, b1.event_id, c1.event_id)] == [
        DeliveryState.PENDING,
        DeliveryState.PENDING,
        DeliveryState.IN_FLIGHT,
    ]
    box.outbox.owner = "worker-0-restarted"
    again = await box.outbox.claim_due(now=2.0, limit=10)
    assert [(d.event_id, d.attempts) for d in again] == [(a1.event_id, 0), (b1.event_id, 0)]
    assert await box.outbox.claim_owners() == {
        a1.event_id: "worker-0-restarted",
        b1.event_id: "worker-0-restarted",
        c1.event_id: "worker-1",
    }


async def test_claims_only_the_lowest_unfinished_sequence_per_url_and_call(box: Box) -> None:
    box.outbox.lease = 30
    a1, a2, a3 = _d("A", 1), _d("A", 2), _d("A", 3)
    b1, other = _d("B", 1), _d("A", 1, url="http://r/other")
    for d in (a1, a2, a3, b1, other):
        await box.add(d)
    first = {d.event_id for d in await box.outbox.claim_due(now=1.0, limit=10)}
    assert first == {a1.event_id, b1.event_id, other.event_id}
    assert await box.outbox.claim_due(now=1.0, limit=10) == []  # a2 waits for a1
    await box.outbox.mark_failed(a1.event_id, 2.0, 500, "HTTP 500", next_at=5.0)
    assert await box.outbox.claim_due(now=4.0, limit=10) == []  # a1 waits for its retry; a2 behind it
    [again] = await box.outbox.claim_due(now=5.0, limit=10)
    assert again.event_id == a1.event_id and again.attempts == 1
    assert again == dataclasses.replace(a1, attempts=1)
    await box.outbox.mark_failed(a1.event_id, 6.0, None, "timed out", next_at=None)  # given up frees a2
    [nxt] = await box.outbox.claim_due(now=6.0, limit=1)
    assert nxt.event_id == a2.event_id
    await box.outbox.mark_delivered(a2.event_id, 7.0, 200)
    assert [d.event_id for d in await box.outbox.claim_due(now=7.0, limit=10)] == [a3.event_id]
    entry = await box.get(a1.event_id)
    assert (entry.state, entry.delivery.attempts) == (GIVEN_UP, 2)
    assert (entry.last_error, entry.last_status, entry.last_attempt_at, entry.finished_at) == (
        "timed out",
        None,
        6.0,
        6.0,
    )
    assert await box.ids(GIVEN_UP) == [a1.event_id]
    delivered = await box.get(a2.event_id)
    assert (delivered.state, delivered.last_status, delivered.finished_at, delivered.last_error) == (
        DELIVERED,
        200,
        7.0,
        "",
    )


async def test_lease_release_and_guards(box: Box) -> None:
    box.outbox.lease = 10
    d1, d2 = _d("C", 1), _d("C", 2)
    await box.add(d1)
    await box.add(d2)
    with pytest.raises(ValueError, match="in the outbox already"):
        await box.add(d1)
    with pytest.raises(ValueError, match="order of their sequence"):
        await box.add(_d("C", 2))
    with pytest.raises(ValueError, match="order of their sequence"):
        await box.add(_d("C", 1))
    assert len(await box.outbox.claim_due(0.0, 5)) == 1
    assert await box.outbox.claim_due(9.0, 5) == []
    [stale] = await box.outbox.claim_due(10.0, 5)  # the claim expired (a crashed deliverer)
    assert stale.event_id == d1.event_id and stale.attempts == 0
    await box.outbox.release([d1.event_id, "unknown", d2.event_id])
    assert (await box.get(d1.event_id)).state is PENDING
    await box.outbox.mark_failed(d1.event_id, 11.0, 500, "x", 12.0)  # not in flight: ignored
    assert (await box.get(d1.event_id)).delivery.attempts == 0
    assert await box.outbox.claim_due(10.0, 0) == []
    assert await box.outbox.get_delivery("nope") is None
    with pytest.raises(KeyError, match="nope"):
        await box.outbox.mark_delivered("nope", 1.0, 200)
    with pytest.raises(KeyError, match="nope"):
        await box.outbox.mark_failed("nope", 1.0, 500, "x", None)
    await box.outbox.release([])
    # released, it is claimable again at once (its next_at has come), attempts unchanged
    [back] = await box.outbox.claim_due(10.0, 5)
    assert (back.event_id, back.attempts) == (d1.event_id, 0)


async def test_endpoint_gone_and_revive(box: Box) -> None:
    gone, kept = "http://r/gone", "http://r/kept"
    for d in (_d("G", 1, gone), _d("G", 2, gone), _d("H", 1, gone), _d("G", 1, kept)):
        await box.add(d)
    claimed = await box.outbox.claim_due(0.0, 10)
    assert len(claimed) == 3
    assert await box.outbox.mark_endpoint_gone(gone, 1.0) == 3
    assert await box.outbox.gone_endpoints() == {gone: 1.0}
    late = _d("G", 3, gone)
    await box.add(late)
    assert (await box.get(late.event_id)).state is GONE
    _, open_entries = await box.outbox.list_deliveries([PENDING, IN_FLIGHT])
    assert [e.delivery.url for e in open_entries] == [kept]
    # A request to the gone url that still succeeds is recorded as delivered.
    to_gone = next(c for c in claimed if c.url == gone)
    await box.outbox.mark_delivered(to_gone.event_id, 1.5, 200)
    assert (await box.get(to_gone.event_id)).state is DELIVERED
    await box.revive(gone)
    assert await box.outbox.gone_endpoints() == {}
    await box.revive(gone)  # reviving a url that is not gone is a no-op
    fresh = _d("G", 4, gone)
    await box.add(fresh)
    assert (await box.get(fresh.event_id)).state is PENDING
    assert [d.event_id for d in await box.outbox.claim_due(2.0, 10)] == [fresh.event_id]
    # marking a url gone that has nothing open still remembers it
    assert await box.outbox.mark_endpoint_gone("http://r/idle", 3.0) == 0
    assert await box.outbox.gone_endpoints() == {"http://r/idle": 3.0}


async def test_a_410_with_its_event_id_counts_the_attempt_and_drops_the_url_in_one_step(box: Box) -> None:
    gone, other, third = "http://r/gone", "http://r/other", "http://r/third"
    g1, g2, h1 = _d("M", 1, gone), _d("M", 2, gone), _d("N", 1, gone)
    o1, o2 = _d("M", 1, other), _d("M", 2, other)
    await box.add(g1, g2, h1, o1, o2)
    claimed = await box.outbox.claim_due(1.0, 10)
    assert {d.event_id for d in claimed} == {g1.event_id, h1.event_id, o1.event_id}
    await box.outbox.mark_failed(g1.event_id, 2.0, 500, "HTTP 500", next_at=3.0)
    [again] = await box.outbox.claim_due(3.0, 10)  # g1's second attempt gets the 410
    assert (again.event_id, again.attempts) == (g1.event_id, 1)
    # an unknown event id: refused, nothing changes (not even the url)
    with pytest.raises(KeyError, match="nope"):
        await box.outbox.mark_endpoint_gone(third, 3.5, event_id="nope", error="HTTP 410 Gone")
    assert await box.outbox.gone_endpoints() == {}
    # g1 (counted, with its status and error), g2 (pending behind it), h1 (in flight)
    n = await box.outbox.mark_endpoint_gone(
        gone, 4.0, event_id=g1.event_id, status=410, error="HTTP 410 Gone"
    )
    assert n == 3
    e1 = await box.get(g1.event_id)
    assert (e1.state, e1.delivery.attempts, e1.last_attempt_at, e1.finished_at) == (GONE, 2, 4.0, 4.0)
    assert (e1.last_status, e1.last_error) == (410, "HTTP 410 Gone")
    for d in (g2, h1):
        e = await box.get(d.event_id)
        assert (e.state, e.finished_at, e.delivery.attempts, e.last_status) == (GONE, 4.0, 0, None)
        assert e.last_error == "dropped: the endpoint answered 410 Gone"
    assert await box.outbox.gone_endpoints() == {gone: 4.0}
    assert (await box.get(o1.event_id)).state is IN_FLIGHT
    assert (await box.get(o2.event_id)).state is PENDING
    # a second 410 for it (a late duplicate), or an event id in flight to another url:
    # the attempt is not recorded, the url is marked gone all the same
    assert await box.outbox.mark_endpoint_gone(gone, 5.0, event_id=g1.event_id, error="late") == 0
    assert await box.outbox.mark_endpoint_gone(third, 5.0, event_id=o1.event_id, error="wrong url") == 0
    assert ((await box.get(g1.event_id)).delivery.attempts, (await box.get(g1.event_id)).last_error) == (
        2,
        "HTTP 410 Gone",
    )
    eo = await box.get(o1.event_id)
    assert (eo.state, eo.delivery.attempts, eo.last_error) == (IN_FLIGHT, 0, "")
    assert await box.outbox.gone_endpoints() == {gone: 5.0, third: 5.0}
    # the other url's deliveries go on in order; nothing more to the gone url
    assert await box.outbox.claim_due(5.0, 10) == []
    await box.outbox.mark_delivered(o1.event_id, 6.0, 200)
    assert [d.event_id for d in await box.outbox.claim_due(6.0, 10)] == [o2.event_id]
    await box.outbox.mark_delivered(o2.event_id, 7.0, 200)
    assert await box.outbox.claim_due(1000.0, 10) == []
    assert await box.outbox.counts() == {PENDING: 0, IN_FLIGHT: 0, DELIVERED: 2, GIVEN_UP: 0, GONE: 3}
    # revived, the calls of the gone url have no open delivery left: a new one goes first
    await box.revive(gone)
    g3, h2 = _d("M", 3, gone), _d("N", 2, gone)
    await box.add(g3, h2)
    assert sorted(d.event_id for d in await box.outbox.claim_due(1000.0, 10)) == sorted(
        [g3.event_id, h2.event_id]
    )


# --------------------------------------------------------------------------- more semantics


async def test_the_gone_url_rule_inside_one_batch(box: Box) -> None:
    gone, ok = "http://r/gone", "http://r/ok"
    first = _d("K", 1, gone, at=1.0)
    await box.add(first)
    await box.outbox.claim_due(1.0, 5)
    assert await box.outbox.mark_endpoint_gone(gone, 2.0) == 1
    # One batch: deliveries to the gone url are gone at once (finished when the url went
    # gone), the others pending; then, in one batch, revive the url between two queues.
    g2, g3, o1, h1 = _d("K", 2, gone, 3.0), _d("K", 3, gone, 3.0), _d("K", 1, ok, 3.0), _d("L", 1, gone, 3.0)
    await box.add(g2, o1, g3, h1)
    for d in (g2, g3, h1):
        e = await box.get(d.event_id)
        assert (e.state, e.finished_at, e.last_error, e.next_at) == (GONE, 2.0, GONE_AT_INSERT, 3.0)
        assert (e.delivery.attempts, e.last_status, e.last_attempt_at) == (0, None, None)
    assert (await box.get(o1.event_id)).state is PENDING
    g4, g5 = _d("K", 4, gone, 4.0), _d("K", 5, gone, 4.0)
    await box.apply([DeliveriesWrite((g4,)), EndpointRevive(gone), DeliveriesWrite((g5,))])
    assert (await box.get(g4.event_id)).state is GONE
    assert (await box.get(g5.event_id)).state is PENDING
    assert sorted(d.event_id for d in await box.outbox.claim_due(4.0, 10)) == sorted(
        [o1.event_id, g5.event_id]
    )
    # ordering still applies across gone rows: K #6 waits for K #5
    g6 = _d("K", 6, gone, 4.0)
    await box.add(g6)
    assert await box.outbox.claim_due(4.0, 10) == []
    await box.outbox.mark_delivered(g5.event_id, 5.0, 204)
    assert [d.event_id for d in await box.outbox.claim_due(5.0, 10)] == [g6.event_id]


async def test_claims_come_in_next_at_then_creation_order_and_respect_limit(box: Box) -> None:
    box.outbox.lease = 60
    ds = [_d(f"c{i}", 1, at=float(10 - i)) for i in range(6)]  # created 10, 9, … 5
    await box.add(*ds)
    got = await box.outbox.claim_due(100.0, 4)
    assert [d.call_id for d in got] == ["c5", "c4", "c3", "c2"]
    await box.outbox.mark_failed(got[0].event_id, 101.0, 503, "busy", 200.0)
    await box.outbox.mark_failed(got[1].event_id, 101.0, 503, "busy", 150.0)
    assert [d.call_id for d in await box.outbox.claim_due(101.0, 10)] == ["c1", "c0"]
    assert await box.outbox.claim_due(149.0, 10) == []
    assert [d.call_id for d in await box.outbox.claim_due(155.0, 10)] == ["c4"]
    # at 200 the claims of 100 and 101 have expired (lease 60): expired claims and due
    # retries are taken together, in next_at order
    assert [d.call_id for d in await box.outbox.claim_due(200.0, 3)] == ["c3", "c2", "c1"]
    assert [d.call_id for d in await box.outbox.claim_due(200.0, 3)] == ["c0", "c5"]


async def test_list_deliveries_paging_filters_and_total(box: Box) -> None:
    urls = ("http://r/1", "http://r/2", "http://r/3")
    everything: list[Delivery] = []
    at = 0.0
    for seq in range(1, 5):
        for c in range(5):
            for url in urls:
                at += 1.0
                everything.append(_d(f"call-{c}", seq, url, at))
    # two deliveries created at one instant: ordered by call id, then sequence
    twins = [_d("z-twin", 1, urls[0], 500.0), _d("a-twin", 1, urls[0], 500.0)]
    everything += twins
    await box.add(*everything)
    claimed = await box.outbox.claim_due(1000.0, 100)
    assert len(claimed) == 17  # every (url, call): 3 x 5 + the twins
    for i, d in enumerate(claimed):
        if i % 3 == 0:
            await box.outbox.mark_delivered(d.event_id, 1001.0, 200)
        elif i % 3 == 1:
            await box.outbox.mark_failed(d.event_id, 1001.0, None, "no", None)
    assert await box.outbox.mark_endpoint_gone(urls[2], 1002.0) > 0
    state_of = {d.event_id: (await box.get(d.event_id)).state for d in everything}
    ordered = sorted(everything, key=lambda d: (d.created_at, d.call_id, d.sequence))
    assert [d.call_id for d in ordered if d.created_at == 500.0] == ["a-twin", "z-twin"]

    async def all_pages(states: Sequence[DeliveryState], per_page: int, **kw: Any) -> list[str]:
        ids: list[str] = []
        page = 1
        while True:
            total, entries = await box.outbox.list_deliveries(states, page=page, per_page=per_page, **kw)
            want = [
                d.event_id
                for d in ordered
                if (not states or state_of[d.event_id] in states)
                and all(getattr(d, k) == v for k, v in kw.items())
            ]
            assert total == len(want), (states, kw)
            if not entries:
                assert (page - 1) * per_page >= total
                return ids
            assert len(entries) == min(per_page, total - (page - 1) * per_page)
            ids += [e.delivery.event_id for e in entries]
            page += 1

    cases: list[tuple[list[DeliveryState], dict[str, Any]]] = [
        ([], {}),
        ([PENDING], {}),
        ([GIVEN_UP, GONE], {}),
        ([DELIVERED], {}),
        ([IN_FLIGHT], {}),
        ([], {"call_id": "call-3"}),
        ([PENDING], {"url": urls[1]}),
        ([GONE, PENDING, GONE], {"url": urls[2], "call_id": "call-0"}),
        ([], {"url": "http://nowhere"}),
    ]
    for states, kw in cases:
        want = [
            d.event_id
            for d in ordered
            if (not states or state_of[d.event_id] in states)
            and all(getattr(d, k) == v for k, v in kw.items())
        ]
        assert await all_pages(states, 7, **kw) == want, (states, kw)
        assert await all_pages(states, 1000, **kw) == want, (states, kw)
    total, page = await box.outbox.list_deliveries([], page=99, per_page=10)
    assert (total, page) == (len(everything), [])
    # entries show the creation time and the stored body byte for byte
    _, [entry] = await box.outbox.list_deliveries([], call_id="a-twin")
    assert dataclasses.replace(entry.delivery, attempts=0) == twins[1]
    with pytest.raises(ValueError):
        await box.outbox.list_deliveries([], page=0)
    with pytest.raises(ValueError):
        await box.outbox.list_deliveries([], per_page=0)


async def test_counts_have_every_state(box: Box) -> None:
    assert await box.outbox.counts() == dict.fromkeys(DeliveryState, 0)
    a, b, c, d, e = (_d(x, 1, at=1.0) for x in "abcde")
    await box.add(a, b, c, d, e, _d("a", 2))
    claimed = {x.call_id: x for x in await box.outbox.claim_due(1.0, 10)}
    await box.outbox.mark_delivered(claimed["a"].event_id, 2.0, 200)
    await box.outbox.mark_failed(claimed["b"].event_id, 2.0, None, "gave up", None)
    await box.outbox.mark_failed(claimed["c"].event_id, 2.0, 500, "again", 9.0)
    await box.outbox.mark_endpoint_gone("http://r/other", 2.0)
    assert await box.outbox.counts() == {PENDING: 2, IN_FLIGHT: 2, DELIVERED: 1, GIVEN_UP: 1, GONE: 0}
    await box.outbox.mark_endpoint_gone(a.url, 3.0)
    assert await box.outbox.counts() == {PENDING: 0, IN_FLIGHT: 0, DELIVERED: 1, GIVEN_UP: 1, GONE: 4}


async def test_a_late_2xx_for_a_given_up_delivery_is_recorded(box: Box) -> None:
    """mark_delivered after the delivery was given up records it as delivered (one more
    attempt) and changes no other delivery of the call."""
    d1, d2 = _d("M", 1), _d("M", 2)
    await box.add(d1, d2)
    await box.outbox.claim_due(0.0, 5)
    await box.outbox.mark_failed(d1.event_id, 1.0, 500, "no", None)
    [second] = await box.outbox.claim_due(1.0, 5)
    assert second.event_id == d2.event_id
    await box.outbox.mark_delivered(d1.event_id, 2.0, 200)  # a late 2xx for the given-up one
    e1 = await box.get(d1.event_id)
    assert (e1.state, e1.delivery.attempts, e1.finished_at) == (DELIVERED, 2, 2.0)
    assert (await box.get(d2.event_id)).state is IN_FLIGHT
    await box.outbox.mark_delivered(d1.event_id, 3.0, 200)  # again: no change
    assert (await box.get(d1.event_id)).delivery.attempts == 2


# --------------------------------------------------------------------------- 10,000 rows


async def test_ten_thousand_pending_in_a_thousand_calls(box: Box) -> None:
    """claim_due(limit=32) hands out exactly the 32 first due heads (a model of the
    head of every call says which), never two of one call, while heads advance; ~10%
    of attempts fail and are due again at once."""
    calls, per_call = 1000, 10
    created = {
        (c, s): T0 + ((s - 1) * calls + c) * 0.001 for c in range(calls) for s in range(1, per_call + 1)
    }
    batches = [
        [_d(f"call-{c:04d}", s, at=created[(c, s)]) for c in range(calls)] for s in range(1, per_call + 1)
    ]
    for batch in batches:
        await box.add(*batch)
    rng = random.Random(3)
    now = T0 + 100.0
    head = dict.fromkeys(range(calls), 1)  # the model: per call, its lowest undelivered sequence
    next_at = {c: created[(c, 1)] for c in range(calls)}
    rounds = failures = 0
    while True:
        claimed = await box.outbox.claim_due(now, 32)
        live = sorted(
            (c for c in range(calls) if head[c] <= per_call),
            key=lambda c: (next_at[c], created[(c, head[c])]),
        )
        expected = [(f"call-{c:04d}", head[c]) for c in live[:32]]
        assert [(d.call_id, d.sequence) for d in claimed] == expected, rounds
        if not claimed:
            break
        marks = []
        for d in claimed:
            c = int(d.call_id.removeprefix("call-"))
            if rng.random() < 0.1:
                failures += 1
                marks.append(box.outbox.mark_failed(d.event_id, now, 500, "HTTP 500", now))
                next_at[c] = now
            else:
                marks.append(box.outbox.mark_delivered(d.event_id, now, 200))
                head[c] += 1
                if head[c] <= per_call:
                    next_at[c] = created[(c, head[c])]
        await asyncio.gather(*marks)
        rounds += 1
    assert failures > 0 and rounds >= calls * per_call // 32
    assert await box.outbox.counts() == {PENDING: 0, IN_FLIGHT: 0, DELIVERED: 10_000, GIVEN_UP: 0, GONE: 0}


# --------------------------------------------------------------------------- SQL only


async def test_redeliver_each_state_and_the_errors(sql: Box) -> None:
    ob = sql.outbox
    url, gone_url = "http://r/x", "http://r/gone"
    d1, d2, d3, d4 = (
        _d("R", 1, url, 10.0),
        _d("R", 2, url, 11.0),
        _d("R", 3, url, 12.0),
        _d("R", 4, url, 13.0),
    )
    g1 = _d("S", 1, gone_url, 10.0)
    await sql.add(d1, d2, d3, d4, g1)
    # d1 delivered, d2 given up, g1 gone, d3 in flight, d4 pending behind it
    assert {d.event_id for d in await ob.claim_due(20.0, 5)} == {d1.event_id, g1.event_id}
    await ob.mark_delivered(d1.event_id, 21.0, 200)
    await ob.mark_endpoint_gone(gone_url, 21.0)
    [c2] = await ob.claim_due(21.0, 5)
    await ob.mark_failed(c2.event_id, 22.0, 503, "HTTP 503", None)
    [c3] = await ob.claim_due(22.0, 5)
    assert c3.event_id == d3.event_id

    with pytest.raises(KeyError, match="evt_unknown"):
        await ob.redeliver("evt_unknown", 30.0)
    with pytest.raises(ValueError, match="being delivered right now; retry in a few seconds"):
        await ob.redeliver(d3.event_id, 30.0)
    with pytest.raises(
        ValueError,
        match=r"the endpoint answered 410 Gone; set the callback url again "
        r"\(v4/call_config/set_callback or v1/callback/set\) first",
    ):
        await ob.redeliver(g1.event_id, 30.0)
    assert (await sql.get(g1.event_id)).state is GONE  # refused: unchanged

    # a pending one behind the in-flight head: due now, still behind it
    e4 = await ob.redeliver(d4.event_id, 30.0)
    assert (e4.state, e4.next_at) == (PENDING, 13.0)  # due already; never later
    # the delivered and the given-up one reopen while d3 is in flight: d3 stays the head
    e1 = await ob.redeliver(d1.event_id, 40.0)
    assert (e1.state, e1.next_at, e1.finished_at, e1.delivery.created_at, e1.delivery.attempts) == (
        PENDING,
        40.0,
        None,
        10.0,
        1,
    )
    e2 = await ob.redeliver(d2.event_id, 41.0)
    assert (e2.state, e2.next_at, e2.delivery.attempts, e2.last_error) == (PENDING, 41.0, 1, "HTTP 503")
    assert await ob.claim_due(50.0, 5) == []
    await ob.mark_delivered(d3.event_id, 51.0, 200)
    # now the lowest open sequence goes first, one at a time, with a fresh window
    [again1] = await ob.claim_due(51.0, 5)
    assert (again1.event_id, again1.created_at, again1.attempts) == (d1.event_id, 40.0, 1)
    assert (await sql.get(d1.event_id)).delivery.created_at == 10.0  # listings keep the creation time
    await ob.mark_delivered(d1.event_id, 52.0, 200)
    [again2] = await ob.claim_due(52.0, 5)
    assert (again2.event_id, again2.created_at) == (d2.event_id, 41.0)
    await ob.mark_delivered(d2.event_id, 53.0, 200)
    [then4] = await ob.claim_due(53.0, 5)
    assert (then4.event_id, then4.created_at) == (d4.event_id, 13.0)
    # a pending one not yet due becomes due now
    await ob.mark_failed(d4.event_id, 54.0, 500, "x", 500.0)
    assert await ob.claim_due(60.0, 5) == []
    e4 = await ob.redeliver(d4.event_id, 60.0)
    assert (e4.state, e4.next_at, e4.delivery.created_at) == (PENDING, 60.0, 13.0)
    assert [d.event_id for d in await ob.claim_due(60.0, 5)] == [d4.event_id]
    # the gone one, once its url is set again
    await sql.apply(
        [CallbackConfigWrite("v1", {"address": gone_url, "actions": []}), EndpointRevive(gone_url)]
    )
    eg = await ob.redeliver(g1.event_id, 70.0)
    assert (eg.state, eg.next_at, eg.finished_at) == (PENDING, 70.0, None)
    [cg] = await ob.claim_due(70.0, 5)
    assert (cg.event_id, cg.created_at, cg.attempts) == (g1.event_id, 70.0, 0)
    assert await ob.counts() == {PENDING: 0, IN_FLIGHT: 2, DELIVERED: 3, GIVEN_UP: 0, GONE: 0}


async def test_purge_finished_keeps_failures(sql: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (sqlite_module, pg_module):
        monkeypatch.setattr(module, "PURGE_CHUNK", 3)  # several chunks
    ob = sql.outbox
    ds = [_d(f"P{i}", 1, at=1.0) for i in range(12)]
    await sql.add(*ds)
    claimed = await ob.claim_due(1.0, 20)
    for i, d in enumerate(claimed):
        if i < 10:
            await ob.mark_delivered(d.event_id, 10.0 + i, 200)  # finished at 10 … 19
        else:
            await ob.mark_failed(d.event_id, 5.0, None, "gave up", None)
    gone = _d("Q", 1, "http://r/gone", 1.0)
    await sql.add(gone)
    await ob.mark_endpoint_gone("http://r/gone", 2.0)
    assert await ob.purge_finished(10.0) == 0
    assert await ob.purge_finished(17.0) == 7
    assert await ob.counts() == {PENDING: 0, IN_FLIGHT: 0, DELIVERED: 3, GIVEN_UP: 2, GONE: 1}
    assert set(await sql.ids(DELIVERED)) == {d.event_id for d in claimed[7:10]}
    for d in claimed[:7]:
        assert await ob.get_delivery(d.event_id) is None
    assert await ob.purge_finished(1e12) == 3
    assert await ob.counts() == {PENDING: 0, IN_FLIGHT: 0, DELIVERED: 0, GIVEN_UP: 2, GONE: 1}


async def test_a_bad_batch_queues_nothing_and_fails_alone(sql: Box) -> None:
    assert sql.store is not None
    first = _d("B", 5)
    await sql.add(first)
    good = [_d("G", 1), _d("G", 2)]
    outcomes = await asyncio.gather(
        sql.add(_d("X", 1), _d("B", 4)),  # B #4 after #5
        sql.add(*good),
        sql.add(_d("Y", 1), first),  # event id reused
        sql.add(_d("Z", 1), _d("Z", 1, url="http://r/z")),  # ok: another url
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ValueError) and "order of their sequence" in str(outcomes[0])
    assert isinstance(outcomes[2], ValueError) and "in the outbox already" in str(outcomes[2])
    assert outcomes[1] is None and outcomes[3] is None
    assert sorted(d.call_id for d in await sql.outbox.claim_due(0.0, 20)) == ["B", "G", "Z", "Z"]
    _, entries = await sql.outbox.list_deliveries([])
    assert {e.delivery.call_id for e in entries} == {"B", "G", "Z"}


async def test_use_outside_open_raises(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "x.db"))
    with pytest.raises(RuntimeError, match="open"):
        await s.outbox.claim_due(0.0, 5)
    await s.open()
    await s.close()
    for call in (
        s.outbox.claim_due(0.0, 5),
        s.outbox.claim_due(0.0, 0),
        s.outbox.mark_delivered("e", 0.0, 200),
        s.outbox.release([]),
        s.outbox.counts(),
        s.outbox.list_deliveries([]),
    ):
        with pytest.raises(RuntimeError):
            await call


async def test_a_claim_survives_a_crash_until_its_lease_ends(durable: Backend) -> None:
    """A server claims, then dies without releasing (its store is left open, never
    closed); another one on the same database claims it again only after the lease."""
    crashed = durable.make()
    await crashed.open()
    survivor = durable.make()
    try:
        crashed.outbox.lease = 60.0
        d1, d2 = _d("crash", 1, at=T0), _d("crash", 2, at=T0)
        await crashed.apply([DeliveriesWrite((d1, d2))])
        [claimed] = await crashed.outbox.claim_due(T0 + 1, 10)
        assert claimed.event_id == d1.event_id

        await survivor.open()
        survivor.outbox.lease = 60.0
        assert await survivor.outbox.claim_due(T0 + 1, 10) == []
        assert await survivor.outbox.claim_due(T0 + 60.999, 10) == []
        assert (await survivor.outbox.counts())[IN_FLIGHT] == 1
        [again] = await survivor.outbox.claim_due(T0 + 61, 10)
        assert (again.event_id, again.attempts, again.created_at, again.body) == (d1.event_id, 0, T0, d1.body)
        assert await survivor.outbox.claim_due(T0 + 61, 10) == []  # d2 still behind it
        await survivor.outbox.mark_failed(d1.event_id, T0 + 62, None, "timed out", T0 + 63)
        [retry] = await survivor.outbox.claim_due(T0 + 63, 10)
        assert (retry.event_id, retry.attempts) == (d1.event_id, 1)
        await survivor.outbox.mark_delivered(d1.event_id, T0 + 64, 200)
        [second] = await survivor.outbox.claim_due(T0 + 64, 10)
        assert second.event_id == d2.event_id
        # the crashed server's late outcome for d1 changes nothing: it is delivered
        await crashed.outbox.mark_failed(d1.event_id, T0 + 65, 500, "late", T0 + 70)
        assert (await survivor.outbox.get_delivery(d1.event_id)) == (
            await crashed.outbox.get_delivery(d1.event_id)
        )
        assert (await survivor.outbox.get_delivery(d1.event_id)).state is DELIVERED  # type: ignore[union-attr]
    finally:
        await survivor.close()
        await crashed.close()
    reopened = durable.make()
    await reopened.open()
    try:
        entry = await reopened.outbox.get_delivery(d2.event_id)
        assert entry is not None and entry.state is IN_FLIGHT
        assert await reopened.outbox.claim_due(T0 + 64 + 59, 10) == []
        assert [d.event_id for d in await reopened.outbox.claim_due(T0 + 64 + 60, 10)] == [d2.event_id]
    finally:
        await reopened.close()


async def test_two_servers_never_claim_one_delivery_twice(durable: Backend) -> None:
    a, b = durable.make(), durable.make()
    await a.open()
    await b.open()
    try:
        ds = [_d(f"two-{i}", s, at=T0 + i) for s in (1, 2) for i in range(200)]
        await a.apply([DeliveriesWrite(tuple(ds))])
        claims = await asyncio.gather(*(s.outbox.claim_due(T0 + 500, 16) for s in (a, b) * 20))
        ids = [d.event_id for batch in claims for d in batch]
        assert len(ids) == len(set(ids)) == 200
        assert {d.sequence for batch in claims for d in batch} == {1}
    finally:
        await a.close()
        await b.close()


async def test_a_callback_queued_while_another_process_finishes_the_head_is_claimed(
    open_backend: OpenBackend,
) -> None:
    """A server queues the next callback of a call while a callback worker (another
    connection) records the call's in-flight one as delivered. Whatever the interleaving,
    the new one must become the call's head and be claimed; before, the server decided
    "not the head: one is open" from a snapshot taken before the worker's commit, the
    worker's statement could not see the uncommitted row, and the callback waited
    forever. Forced here: the server's write is held (a lock on ``webhook_gone``, which it
    reads after deciding) until the worker's mark has run or is waiting."""
    import asyncpg

    async with open_backend("postgres") as backend:
        server, worker = backend.make(), backend.make()
        await server.open()
        await worker.open()
        assert isinstance(server, pg_module.PostgresStore)
        holder = await asyncpg.connect(server.dsn)
        try:
            first, second = _d("race", 1, at=T0), _d("race", 2, at=T0)
            await server.apply([DeliveriesWrite((first,))])
            [claimed] = await worker.outbox.claim_due(T0 + 1, 10)
            assert claimed.event_id == first.event_id

            async def waiting(n: int) -> bool:
                """At least ``n`` backends wait for a lock."""
                return int(await holder.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")) >= n

            async def until(condition: Callable[[], Awaitable[bool]]) -> None:
                # Another process's lock wait has no event to await: ask PostgreSQL.
                async with asyncio.timeout(30):
                    while not await condition():  # noqa: ASYNC110 (no event for a lock wait)
                        await asyncio.sleep(0.01)

            tx = holder.transaction()
            await tx.start()
            await holder.execute(f"LOCK TABLE {server.schema}.webhook_gone IN ACCESS EXCLUSIVE MODE")
            queued = asyncio.create_task(server.apply([DeliveriesWrite((second,))]))
            await until(lambda: waiting(1))
            marked = asyncio.create_task(worker.outbox.mark_delivered(first.event_id, T0 + 2, 200))

            async def marked_or_waiting() -> bool:
                return marked.done() or await waiting(2)

            await until(marked_or_waiting)
            await tx.rollback()
            await asyncio.gather(queued, marked)

            assert [d.event_id for d in await worker.outbox.claim_due(T0 + 3, 10)] == [second.event_id]
        finally:
            await holder.close()
            await worker.close()
            await server.close()


def _plan(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> str:
    return " | ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))


async def test_sqlite_outbox_statements_read_only_what_they_need(tmp_path: Path) -> None:
    """A claim reads head rows only, through the partial indexes (never the pending rows
    behind them); dropping a url reads its open rows; a purge its delivered rows; with
    or without statistics."""
    path = str(tmp_path / "plan.db")
    s = SqliteStore(path)
    await s.open()
    await s.apply([DeliveriesWrite(tuple(_d(f"p{i}", q) for q in (1, 2, 3) for i in range(50)))])
    await s.close()
    conn = sqlite3.connect(path)
    try:
        for analyzed in (False, True):
            if analyzed:
                conn.execute("ANALYZE")
            claim = _plan(conn, sqlite_module._SQL_CLAIM, (0.0, 32))
            assert "SEARCH outbox USING INDEX outbox_due" in claim, claim
            assert "SEARCH outbox USING INDEX outbox_expired" in claim, claim
            assert "SCAN outbox" not in claim, claim
            gone = _plan(conn, sqlite_module._SQL_DROP_GONE, (0.0, "", "u"))
            assert "SEARCH outbox USING INDEX outbox_open (url=?)" in gone, gone
            purge = _plan(conn, sqlite_module._SQL_PURGE, (0.0, 10))
            assert "SEARCH outbox USING INDEX outbox_delivered (finished_at<?)" in purge, purge
    finally:
        conn.close()


# --------------------------------------------------------------------------- a real deliverer


@dataclass
class Receiver:
    """An aiohttp receiver on 127.0.0.1 that answers 500 to ~20% of requests and records,
    per call, the sequences it acknowledged (and what was acknowledged before each)."""

    rng: random.Random = field(default_factory=lambda: random.Random(17))
    acked: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    out_of_order: list[tuple[str, int, list[int]]] = field(default_factory=list)
    requests: int = 0
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        event = await request.json()
        call, seq = str(event["CallId"]), int(event["Sequence"])
        self.requests += 1
        before = list(self.acked[call])
        if before != list(range(1, seq)) and seq not in before:
            self.out_of_order.append((call, seq, before))
        if self.rng.random() < 0.2:
            return web.Response(status=500, text="flaky")
        if seq not in before:
            self.acked[call].append(seq)
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})


class Watched:
    """Forwards to an outbox and wakes waiters after every recorded outcome."""

    def __init__(self, inner: DurableOutbox) -> None:
        self.inner = inner
        self.lease = inner.lease
        self.changed = asyncio.Event()

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        return await self.inner.claim_due(now, limit)

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        await self.inner.mark_delivered(event_id, at, status)
        self.changed.set()

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        await self.inner.mark_failed(event_id, at, status, error, next_at)
        self.changed.set()

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        return await self.inner.mark_endpoint_gone(url, at, event_id=event_id, status=status, error=error)

    async def release(self, event_ids: Sequence[str]) -> None:
        await self.inner.release(event_ids)

    async def wait_until_delivered(self, n: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.inner.counts())[DELIVERED] < n:
                self.changed.clear()
                await self.changed.wait()


async def test_a_deliverer_drains_the_outbox_in_per_call_order(box: Box) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        calls, per_call = 30, 10
        now = time.time()
        for seq in range(1, per_call + 1):  # queued as events happen: interleaved across calls
            await box.add(
                *(
                    new_delivery(
                        url=receiver.url,
                        command="Call.CallbackAfterMemberChanged",
                        call_id=f"call-{c}",
                        sequence=seq,
                        payload={"CallbackCommand": "Call.CallbackAfterMemberChanged", "CallId": f"call-{c}"},
                        created_at=now,
                    )
                    for c in range(calls)
                )
            )
        watched = Watched(box.outbox)
        creds = WebhookCredentials(1400000001, "token", (generate_secret(),))
        fast = RetrySchedule(delays=(0.01, 0.02, 0.05), then_every=0.05, give_up_after=600.0)
        async with Deliverer(
            watched, creds, schedule=fast, poll_interval=0.05, max_in_flight=16, rng=random.Random(5)
        ) as deliverer:
            deliverer.wake()
            await watched.wait_until_delivered(calls * per_call)
            assert deliverer.stats.failed_attempts > 0 and deliverer.stats.given_up == 0
        assert await box.outbox.counts() == {
            PENDING: 0,
            IN_FLIGHT: 0,
            DELIVERED: calls * per_call,
            GIVEN_UP: 0,
            GONE: 0,
        }
        assert receiver.out_of_order == []
        assert dict(receiver.acked) == {f"call-{c}": list(range(1, per_call + 1)) for c in range(calls)}
        assert receiver.requests >= calls * per_call
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
