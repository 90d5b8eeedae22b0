"""Conformance suite of the :class:`~ringline.server.store.Store` protocol.

Every test that takes the ``store`` or ``backend`` fixture runs against each backend:
``sqlite-file`` (a file under ``tmp_path``), ``sqlite-memory`` and ``postgres`` (the
server at ``RINGLINE_TEST_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/postgres``;
each test gets its own schema, dropped afterwards). If PostgreSQL is unreachable the
suite tries to start the local cluster once, and otherwise skips the ``postgres`` param
with a message saying how to start it. The fixtures live in ``conftest.py`` (shared with
``test_outbox_conformance.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from ringline.core.enums import CallEndReason, CallResultType, CallRole, CallScene, MediaType
from ringline.core.records import (
    CallRecord,
    CallResult,
    MemberRecord,
    call_result_for,
    result_type_for,
)
from ringline.core.types import RoomId
from ringline.server.store import (
    AliveWrite,
    DeliveriesWrite,
    EndpointRevive,
    FinishedCallWrite,
    GroupMembersWrite,
    LiveCallWrite,
    PostgresStore,
    ProfileWrite,
    SessionDelete,
    SessionRow,
    SessionWrite,
    SqliteStore,
    Store,
    UserCallsHide,
    Write,
    open_store,
)
from ringline.server.store import postgres as postgres_store
from ringline.server.store import sqlite as sqlite_store
from ringline.server.store.base import CallbackConfigWrite
from ringline.server.store.sqlite import SCHEMA_VERSION
from ringline.server.webhooks import Delivery, DeliveryState, new_delivery

if TYPE_CHECKING:
    from backends import Backend

T0 = 1_700_000_000.0


# --------------------------------------------------------------------------- records


def make_record(
    call_id: str,
    *,
    start: float,
    caller: str = "alice",
    callees: Sequence[str] = ("bob",),
    outcome: str = "answered",
    group: str = "",
    media: MediaType = MediaType.AUDIO,
) -> CallRecord:
    """A realistic finished call.

    ``outcome``: ``answered`` (every callee connects, caller hangs up), ``rejected``
    (every callee rejects), ``no_answer``, ``canceled`` (caller gives up) or ``busy``.
    """
    accept = start + 4.0 if outcome == "answered" else 0.0
    end = start + (64.0 if outcome == "answered" else 12.0)
    callee_reason = {
        "answered": CallEndReason.HANGUP,
        "rejected": CallEndReason.REJECT,
        "no_answer": CallEndReason.NO_RESPONSE,
        "canceled": CallEndReason.CANCELED,
        "busy": CallEndReason.LINE_BUSY,
    }[outcome]
    call_reason = CallEndReason.HANGUP if outcome == "answered" else callee_reason
    members = [
        MemberRecord(
            user_id=caller,
            role=CallRole.CALLER,
            invite_time=start,
            accept_time=accept,
            leave_time=end,
            end_reason=call_reason,
        )
    ]
    members += [
        MemberRecord(
            user_id=callee,
            role=CallRole.CALLED,
            invite_time=start,
            accept_time=accept,
            leave_time=end,
            end_reason=callee_reason,
            invited_by=caller,
        )
        for callee in callees
    ]
    if group:
        scene = CallScene.GROUP_CALL
    elif len(callees) > 1:
        scene = CallScene.MULTI_CALL
    else:
        scene = CallScene.SINGLE_CALL
    return CallRecord(
        call_id=call_id,
        sdk_app_id=1400000001,
        caller=caller,
        media_type=media,
        scene=scene,
        chat_group_id=group,
        room_id=RoomId(str_room_id=f"room-{call_id}"),
        start_time=start,
        accept_time=accept,
        end_time=end,
        result=call_result_for(ever_connected=bool(accept), end_reason=call_reason),
        end_reason=call_reason,
        ended_by=caller,
        callees=tuple(callees),
        members=tuple(members),
        user_data=f'{{"note":"call {call_id}","emoji":"☎"}}',
    )


def finish(record: CallRecord) -> FinishedCallWrite:
    """The FinishedCallWrite the server sends for ``record``."""
    return FinishedCallWrite(
        record=record,
        user_results=tuple((u, result_type_for(record, u)) for u in record.users()),
    )


def delivery(call_id: str, seq: int, *, url: str = "http://hooks.example/cb", at: float = T0) -> Delivery:
    """A callback delivery as the server would queue it."""
    return new_delivery(
        url=url,
        command="Call.CallbackAfterMemberChanged",
        call_id=call_id,
        sequence=seq,
        payload={"CallId": call_id, "Note": "ünïcødé ☎"},
        created_at=at,
    )


def session(token: str, *, user: str = "alice", last_seen: float = T0) -> SessionRow:
    return SessionRow(
        token=token,
        device_id=f"dev-{token}",
        user_id=user,
        multi_device=token.endswith("m"),
        sig_expires_at=T0 + 86_400.0,
        created_at=T0 - 10.0,
        last_seen=last_seen,
    )


def _groups_of_commits(s: Store) -> int | None:
    stats = getattr(s, "commit_stats", None)
    return None if stats is None else int(stats.groups)


async def _all_user_calls(s: Store, user: str, **kw: Any) -> list[str]:
    args: dict[str, Any] = {
        "begin": None,
        "end": None,
        "result_type": CallResultType.UNKNOWN,
        "limit": 100_000,
    }
    args.update(kw)
    return [row.record.call_id for row in await s.query_user_calls(user, **args)]


# --------------------------------------------------------------------------- round trips


async def test_fresh_store_is_empty(store: Store) -> None:
    assert await store.load_live_calls() == []
    assert await store.load_sessions() == []
    assert await store.load_groups() == {}
    assert await store.load_profiles() == {}
    assert await store.last_alive() is None
    assert await store.get_record("nope") is None
    assert await _all_user_calls(store, "alice") == []
    assert await store.query_records(
        start_time=None, end_time=None, results=None, call_type=None, page=1, per_page=10
    ) == (0, [])


async def test_round_trip_of_every_write_type(store: Store) -> None:
    rec = make_record("c-1", start=T0, callees=("bob", "carol"), group="g-1", outcome="answered")
    snapshot = '{"call_id":"c-2","state":"ringing","callees":["bob"],"note":"ünïcødé"}'
    s1, s2 = session("tok-1"), session("tok-2m", user="bob")
    d1, d2 = delivery("c-1", 1), delivery("c-1", 2, at=T0 + 1)
    await store.apply(
        [
            LiveCallWrite("c-2", snapshot, T0 + 1.25),
            finish(rec),
            SessionWrite(s1),
            SessionWrite(s2),
            GroupMembersWrite("g-1", ("alice", "bob", "carol")),
            ProfileWrite("alice", "Alice ✨", "https://a.example/alice.png", T0 + 2),
            AliveWrite(T0 + 2.5),
            DeliveriesWrite((d1, d2)),
            EndpointRevive("http://never-gone.example"),
        ]
    )
    assert await store.load_live_calls() == [("c-2", snapshot, T0 + 1.25)]
    for d in (d1, d2):
        entry = await store.outbox.get_delivery(d.event_id)
        assert entry is not None and entry.delivery == d
        assert (entry.state, entry.next_at) == (DeliveryState.PENDING, d.created_at)
    assert await store.get_record("c-1") == rec
    assert sorted(await store.load_sessions(), key=lambda s: s.token) == [s1, s2]
    assert await store.load_groups() == {"g-1": ("alice", "bob", "carol")}
    assert await store.load_profiles() == {"alice": ("Alice ✨", "https://a.example/alice.png")}
    assert await store.last_alive() == T0 + 2.5
    for user, expected in (
        ("alice", CallResultType.OUTGOING),
        ("bob", CallResultType.INCOMING),
        ("carol", CallResultType.INCOMING),
    ):
        rows = await store.query_user_calls(
            user, begin=None, end=None, result_type=CallResultType.UNKNOWN, limit=10
        )
        assert [(r.record, r.result_type) for r in rows] == [(rec, expected)]

    await store.apply([SessionDelete("tok-1"), UserCallsHide("bob", ("c-1",))])
    assert await store.load_sessions() == [s2]
    assert await _all_user_calls(store, "bob") == []
    assert await _all_user_calls(store, "alice") == ["c-1"]
    assert await store.get_record("c-1") == rec  # hiding keeps the record


async def test_empty_apply_is_a_no_op(store: Store) -> None:
    await store.apply([])
    assert await store.load_live_calls() == []


async def test_live_snapshot_upsert_keeps_the_latest(store: Store) -> None:
    await store.apply([LiveCallWrite("c-1", '{"v":1}', T0)])
    await store.apply([LiveCallWrite("c-1", '{"v":2}', T0 + 1), LiveCallWrite("c-0", "{}", T0 - 1)])
    await store.apply([LiveCallWrite("c-1", '{"v":3}', T0 + 2)])
    assert await store.load_live_calls() == [("c-0", "{}", T0 - 1), ("c-1", '{"v":3}', T0 + 2)]


# --------------------------------------------------------------------------- atomicity


def _null_token_session() -> SessionWrite:
    """A write the database must refuse: a session whose primary key is NULL."""
    return SessionWrite(replace(session("x"), token=None))  # type: ignore[arg-type]


def _duplicate_user_finish(call_id: str) -> FinishedCallWrite:
    """A well-typed FinishedCallWrite that violates the (user_id, call_id) key of user_calls."""
    good = finish(make_record(call_id, start=T0 + 50))
    return replace(good, user_results=(*good.user_results, good.user_results[0]))


async def test_a_failing_batch_applies_nothing(store: Store) -> None:
    for bad in (_null_token_session(), _duplicate_user_finish("c-bad")):
        with pytest.raises(Exception):  # noqa: B017 - each driver raises its own type
            await store.apply(
                [
                    LiveCallWrite("c-live", "{}", T0),
                    finish(make_record("c-ok", start=T0)),
                    SessionWrite(session("tok-1")),
                    GroupMembersWrite("g-1", ("alice",)),
                    UserCallsHide("alice", ("c-old",)),
                    DeliveriesWrite((delivery("c-ok", 1),)),
                    bad,
                    AliveWrite(T0),
                ]
            )
        assert await store.load_live_calls() == []
        assert (await store.outbox.counts())[DeliveryState.PENDING] == 0
        assert await store.get_record("c-ok") is None
        assert await store.get_record("c-bad") is None
        assert await _all_user_calls(store, "alice") == []
        assert await store.load_sessions() == []
        assert await store.load_groups() == {}
        assert await store.last_alive() is None
    # the store still works after a failed batch
    await store.apply([LiveCallWrite("c-after", "{}", T0)])
    assert [c for c, _, _ in await store.load_live_calls()] == ["c-after"]


async def test_a_failing_batch_does_not_fail_concurrent_batches(store: Store) -> None:
    before = _groups_of_commits(store)
    rec_a, rec_bad, rec_c = (
        make_record("c-a", start=T0),
        make_record("c-bad", start=T0 + 1),
        make_record("c-c", start=T0 + 2, caller="carol", callees=("dave",)),
    )
    outcomes = await asyncio.gather(
        store.apply([LiveCallWrite("live-a", "{}", T0), finish(rec_a), SessionWrite(session("a"))]),
        store.apply([LiveCallWrite("live-bad", "{}", T0), finish(rec_bad), _null_token_session()]),
        store.apply([finish(rec_c), GroupMembersWrite("g", ("carol", "dave"))]),
        store.apply([_duplicate_user_finish("c-bad-2"), AliveWrite(T0 + 99)]),
        store.apply([AliveWrite(T0 + 5)]),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None and outcomes[4] is None
    assert isinstance(outcomes[1], Exception) and isinstance(outcomes[3], Exception)
    after = _groups_of_commits(store)
    if before is not None and after is not None:
        # all five were merged into one commit round, which had to fall back
        assert after - before == 1
    assert await store.get_record("c-a") == rec_a
    assert await store.get_record("c-c") == rec_c
    assert await store.get_record("c-bad") is None
    assert await store.get_record("c-bad-2") is None
    assert [c for c, _, _ in await store.load_live_calls()] == ["live-a"]
    assert [s.token for s in await store.load_sessions()] == ["a"]
    assert await store.load_groups() == {"g": ("carol", "dave")}
    assert await store.last_alive() == T0 + 5
    assert await _all_user_calls(store, "bob") == ["c-a"]


async def test_values_the_database_cannot_hold_fail_only_their_own_batch(store: Store) -> None:
    """The writes a server may still be handed despite its checks: a lone surrogate
    (not encodable as UTF-8) in a snapshot or a profile, an integer past 64 bits in a
    record. Each fails its own batch; the batches merged with it are kept."""
    surrogate = "\ud800"
    huge = replace(make_record("c-huge", start=T0 + 3), sdk_app_id=10**20)
    rec_ok = make_record("c-ok", start=T0 + 4)
    outcomes = await asyncio.gather(
        store.apply([LiveCallWrite("live-1", '{"n":1}', T0)]),
        store.apply([LiveCallWrite("live-bad", '{"user_data":"' + surrogate + '"}', T0)]),
        store.apply([ProfileWrite("alice", "Alice", "", T0)]),
        store.apply([ProfileWrite("bob", "B" + surrogate, "", T0), AliveWrite(T0 + 50)]),
        store.apply([finish(huge)]),
        store.apply([finish(rec_ok), AliveWrite(T0 + 5)]),
        return_exceptions=True,
    )
    assert [o is None for o in outcomes] == [True, False, True, False, False, True]
    assert all(isinstance(o, Exception) for o in outcomes if o is not None)
    assert [c for c, _, _ in await store.load_live_calls()] == ["live-1"]
    assert await store.load_profiles() == {"alice": ("Alice", "")}
    assert await store.get_record("c-huge") is None
    assert await store.get_record("c-ok") == rec_ok
    assert await store.last_alive() == T0 + 5
    # and each of them, alone, fails without harming the next write
    for bad in (LiveCallWrite("x", surrogate, T0), finish(huge)):
        with pytest.raises(Exception):  # noqa: B017 - each driver raises its own type
            await store.apply([bad])
    await store.apply([LiveCallWrite("live-2", "{}", T0)])
    assert [c for c, _, _ in await store.load_live_calls()] == ["live-1", "live-2"]


# --------------------------------------------------------------------------- finishing


async def test_finish_call_is_idempotent_and_deletes_the_live_snapshot(store: Store) -> None:
    rec = make_record("c-1", start=T0, callees=("bob",), outcome="no_answer")
    await store.apply([LiveCallWrite("c-1", '{"state":"ringing"}', T0), LiveCallWrite("c-2", "{}", T0)])
    await store.apply([finish(rec)])
    assert [c for c, _, _ in await store.load_live_calls()] == ["c-2"]
    assert await store.get_record("c-1") == rec

    await store.apply([UserCallsHide("bob", ("c-1",))])
    # finishing again, even with different content and a resurrected snapshot in the
    # same batch, changes nothing but the snapshot, which it deletes again
    changed = replace(rec, end_time=rec.end_time + 100, result=CallResult.END_BY_SERVER)
    await store.apply([LiveCallWrite("c-1", "{}", T0 + 5), finish(changed), finish(changed)])
    assert await store.get_record("c-1") == rec
    assert [c for c, _, _ in await store.load_live_calls()] == ["c-2"]
    assert await _all_user_calls(store, "bob") == []  # still hidden
    rows = await store.query_user_calls(
        "alice", begin=None, end=None, result_type=CallResultType.UNKNOWN, limit=10
    )
    assert [(r.record, r.result_type) for r in rows] == [(rec, CallResultType.OUTGOING)]

    # a late snapshot of a finished call does not bring it back to life
    await store.apply([LiveCallWrite("c-1", '{"state":"late"}', T0 + 9)])
    assert [c for c, _, _ in await store.load_live_calls()] == ["c-2"]

    # finishing twice within one batch, without a snapshot, is fine too
    rec3 = make_record("c-3", start=T0 + 3)
    await store.apply([finish(rec3), finish(rec3)])
    assert await store.get_record("c-3") == rec3
    assert await _all_user_calls(store, "bob") == ["c-3"]


# --------------------------------------------------------------------------- group commit


async def test_500_concurrent_applies_all_land(store: Store) -> None:
    before = _groups_of_commits(store)

    def batch(i: int) -> list[Write]:
        writes: list[Write] = [LiveCallWrite(f"live-{i:03d}", f'{{"i":{i}}}', T0 + i)]
        if i % 2 == 0:
            writes.append(finish(make_record(f"call-{i:03d}", start=T0 + i, caller=f"u{i % 7}")))
        if i % 5 == 0:
            writes.append(SessionWrite(session(f"tok-{i:03d}", last_seen=T0 + i)))
        writes.append(AliveWrite(T0 + i))
        return writes

    await asyncio.gather(*(store.apply(batch(i)) for i in range(500)))

    live = await store.load_live_calls()
    assert len(live) == 500
    assert [c for c, _, _ in live] == [f"live-{i:03d}" for i in range(500)]
    total, records = await store.query_records(
        start_time=None, end_time=None, results=None, call_type=None, page=1, per_page=1000
    )
    assert total == 250
    assert [r.call_id for r in records] == [f"call-{i:03d}" for i in range(498, -1, -2)]
    assert len(await _all_user_calls(store, "bob")) == 250
    assert len(await store.load_sessions()) == 100
    assert await store.last_alive() == T0 + 499
    after = _groups_of_commits(store)
    if before is not None and after is not None:
        assert after - before < 500, "concurrent batches were not merged"


async def test_close_commits_batches_already_handed_over(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    applies = [s.apply([LiveCallWrite(f"c-{i}", "{}", T0 + i)]) for i in range(50)]
    await asyncio.gather(*applies, s.close())
    if not backend.persistent:
        return
    again = backend.make()
    await again.open()
    try:
        assert len(await again.load_live_calls()) == 50
    finally:
        await again.close()


# --------------------------------------------------------------------------- queries


async def test_query_user_calls_filters(store: Store) -> None:
    outcomes = ["answered", "rejected", "no_answer", "canceled", "busy"]
    records = []
    for i in range(20):
        if i % 4 == 3:  # bob calls alice
            rec = make_record(f"c-{i:02d}", start=T0 + 10 * i, caller="bob", callees=("alice",))
        else:
            rec = make_record(
                f"c-{i:02d}",
                start=T0 + 10 * i,
                callees=("bob", "carol") if i % 3 == 0 else ("bob",),
                outcome=outcomes[i % 5],
            )
        records.append(rec)
    await store.apply([finish(r) for r in reversed(records)])

    def expected(
        user: str,
        *,
        begin: float | None = None,
        end: float | None = None,
        rt: CallResultType = CallResultType.UNKNOWN,
        hidden: Sequence[str] = (),
    ) -> list[str]:
        ids = [
            r.call_id
            for r in records
            if user in r.users()
            and r.call_id not in hidden
            and (begin is None or r.start_time >= begin)
            and (end is None or r.start_time <= end)
            and (rt is CallResultType.UNKNOWN or result_type_for(r, user) is rt)
        ]
        return ids[::-1]

    assert await _all_user_calls(store, "bob") == expected("bob")
    assert len(expected("bob")) == 20
    assert await _all_user_calls(store, "carol") == expected("carol")
    assert await _all_user_calls(store, "nobody") == []
    # inclusive bounds on the start time
    assert await _all_user_calls(store, "bob", begin=T0 + 50, end=T0 + 120) == expected(
        "bob", begin=T0 + 50, end=T0 + 120
    )
    assert await _all_user_calls(store, "bob", begin=T0 + 50, end=T0 + 120) == [
        f"c-{i:02d}" for i in range(12, 4, -1)
    ]
    assert await _all_user_calls(store, "bob", begin=T0 + 190) == ["c-19"]
    assert await _all_user_calls(store, "bob", end=T0) == ["c-00"]
    for rt in (CallResultType.MISSED, CallResultType.INCOMING, CallResultType.OUTGOING):
        got = await store.query_user_calls("bob", begin=None, end=None, result_type=rt, limit=100)
        assert [r.record.call_id for r in got] == expected("bob", rt=rt)
        assert got and all(r.result_type is rt for r in got)
    # limit keeps the newest
    assert await _all_user_calls(store, "bob", limit=3) == expected("bob")[:3]
    assert await _all_user_calls(store, "bob", limit=0) == []
    # hidden rows disappear for that user only
    await store.apply([UserCallsHide("bob", ("c-19", "c-10", "c-unknown"))])
    assert await _all_user_calls(store, "bob") == expected("bob", hidden=("c-19", "c-10"))
    assert await _all_user_calls(store, "bob", limit=1) == ["c-18"]
    assert await _all_user_calls(store, "alice") == expected("alice")
    assert await _all_user_calls(store, "carol") == expected("carol")
    rows = await store.query_user_calls(
        "bob", begin=None, end=None, result_type=CallResultType.UNKNOWN, limit=100
    )
    by_id = {r.call_id: r for r in records}
    assert all(row.record == by_id[row.record.call_id] for row in rows)
    assert all(row.result_type is result_type_for(row.record, "bob") for row in rows)


async def test_query_records_paging_and_filters_over_10000_records(store: Store) -> None:
    outcomes = ["answered", "answered", "rejected", "no_answer", "canceled", "busy"]
    records: list[CallRecord] = []
    for i in range(10_000):
        n_callees = 1 + (i % 7 == 0) * 2
        records.append(
            make_record(
                f"call-{i:05d}",
                start=T0 + (i // 3) * 1.5,  # three records share each start time
                caller=f"user-{i % 50}",
                callees=tuple(f"user-{(i + k) % 50 + 50}" for k in range(n_callees)),
                outcome=outcomes[i % len(outcomes)],
                group="grp-1" if i % 11 == 0 else "",
                media=MediaType.VIDEO if i % 2 else MediaType.AUDIO,
            )
        )
    chunks = [records[k : k + 500] for k in range(0, len(records), 500)]
    await asyncio.gather(*(store.apply([finish(r) for r in chunk]) for chunk in chunks))

    def newest_first(rs: list[CallRecord]) -> list[CallRecord]:
        return sorted(rs, key=lambda r: (r.start_time, r.call_id), reverse=True)

    async def all_pages(per_page: int, **filters: Any) -> tuple[set[int], list[CallRecord]]:
        args: dict[str, Any] = {
            "start_time": None,
            "end_time": None,
            "results": None,
            "call_type": None,
        }
        args.update(filters)
        totals: set[int] = set()
        got: list[CallRecord] = []
        page = 1
        while True:
            total, rows = await store.query_records(**args, page=page, per_page=per_page)
            totals.add(total)
            if not rows:
                break
            assert len(rows) <= per_page
            got.extend(rows)
            page += 1
        assert page == -(-total // per_page) + 1  # the first empty page is right after
        return totals, got

    # everything, 10 pages of 1000: exact total, disjoint, ordered, exact content
    totals, got = await all_pages(1000)
    assert totals == {10_000}
    assert [r.call_id for r in got] == [r.call_id for r in newest_first(records)]
    assert len({r.call_id for r in got}) == 10_000
    assert got[:50] == newest_first(records)[:50]

    # an odd page size, checked against the slice
    total, page5 = await store.query_records(
        start_time=None, end_time=None, results=None, call_type=None, page=5, per_page=37
    )
    assert total == 10_000
    assert page5 == newest_first(records)[4 * 37 : 5 * 37]

    # filters, alone and combined
    lo, hi = T0 + 1500.0, T0 + 3000.0  # both are shared start times: bounds are inclusive
    cases: list[tuple[dict[str, Any], Callable[[CallRecord], bool]]] = [
        ({"start_time": lo}, lambda r: r.start_time >= lo),
        ({"end_time": hi}, lambda r: r.start_time <= hi),
        ({"start_time": lo, "end_time": hi}, lambda r: lo <= r.start_time <= hi),
        ({"start_time": lo, "end_time": lo}, lambda r: r.start_time == lo),
        ({"results": ["Reject"]}, lambda r: r.result is CallResult.REJECT),
        (
            {"results": ["NotAnswer", "CallBusy", "Cancel"]},
            lambda r: r.result in (CallResult.NOT_ANSWER, CallResult.CALL_BUSY, CallResult.CANCEL),
        ),
        ({"results": []}, lambda r: True),
        ({"call_type": "MultiCall"}, lambda r: r.call_type == "MultiCall"),
        ({"call_type": "SingleCall"}, lambda r: r.call_type == "SingleCall"),
        (
            {"call_type": "MultiCall", "results": ["NormalEnd"], "start_time": lo, "end_time": hi},
            lambda r: (
                r.call_type == "MultiCall" and r.result is CallResult.NORMAL_END and lo <= r.start_time <= hi
            ),
        ),
        ({"results": ["EndByServer"]}, lambda r: False),
        # a member: the caller, or any callee
        ({"user_id": "user-7"}, lambda r: "user-7" in r.users()),
        ({"user_id": "user-57"}, lambda r: "user-57" in r.users()),
        (
            {"user_id": "user-57", "results": ["Reject"], "start_time": lo, "end_time": hi},
            lambda r: "user-57" in r.users() and r.result is CallResult.REJECT and lo <= r.start_time <= hi,
        ),
        ({"user_id": "nobody"}, lambda r: False),
    ]
    for filters, keep in cases:
        want = newest_first([r for r in records if keep(r)])
        totals, got = await all_pages(333, **filters)
        assert totals == {len(want)}, filters
        assert [r.call_id for r in got] == [r.call_id for r in want], filters
    assert len([r for r in records if r.start_time == lo]) == 3

    with pytest.raises(ValueError):
        await store.query_records(
            start_time=None, end_time=None, results=None, call_type=None, page=0, per_page=10
        )


# --------------------------------------------------------------------------- sessions, groups


async def test_sessions_save_replace_and_delete(store: Store) -> None:
    a, b, c = session("a"), session("b-m", user="bob"), session("c", user="carol")
    await store.apply([SessionWrite(a), SessionWrite(b), SessionWrite(c)])
    b2 = replace(b, last_seen=T0 + 60, sig_expires_at=T0 + 999.5, multi_device=False)
    await store.apply([SessionWrite(b2), SessionDelete("c"), SessionDelete("never-existed")])
    assert sorted(await store.load_sessions(), key=lambda s: s.token) == [a, b2]
    # delete then re-save within one batch: the order of writes is kept
    await store.apply([SessionDelete("a"), SessionWrite(replace(a, user_id="zed"))])
    await store.apply([SessionWrite(c), SessionDelete("c")])
    assert sorted(await store.load_sessions(), key=lambda s: s.token) == [
        replace(a, user_id="zed"),
        b2,
    ]


async def test_groups_replace_and_delete(store: Store) -> None:
    await store.apply([GroupMembersWrite("g-1", ("carol", "alice", "bob")), GroupMembersWrite("g-2", ("x",))])
    assert await store.load_groups() == {"g-1": ("carol", "alice", "bob"), "g-2": ("x",)}
    await store.apply([GroupMembersWrite("g-1", ("bob", "dave", "bob")), GroupMembersWrite("g-2", ())])
    assert await store.load_groups() == {"g-1": ("bob", "dave")}
    # several replaces of one group in one batch: the last one wins
    await store.apply(
        [
            GroupMembersWrite("g-3", ("a",)),
            GroupMembersWrite("g-3", ("b", "c")),
            GroupMembersWrite("g-1", ()),
            GroupMembersWrite("g-1", ("e",)),
        ]
    )
    assert await store.load_groups() == {"g-1": ("e",), "g-3": ("b", "c")}
    await store.apply([GroupMembersWrite("g-1", ()), GroupMembersWrite("g-3", ())])
    assert await store.load_groups() == {}


# --------------------------------------------------------------------------- profiles


async def test_profiles_save_overwrite_and_load_all(store: Store) -> None:
    longest = "é" * 250  # 500 bytes, the limit
    avatar = "https://a.example/" + "x" * 2030  # 2048 bytes, the limit
    await store.apply(
        [
            ProfileWrite("alice", "Alice", "https://a.example/a.png", T0),
            ProfileWrite("bob", longest, avatar, T0),
            ProfileWrite("carol", "", "https://a.example/c.png", T0),
        ]
    )
    assert await store.load_profiles() == {
        "alice": ("Alice", "https://a.example/a.png"),
        "bob": (longest, avatar),
        "carol": ("", "https://a.example/c.png"),
    }
    # Overwrite in a later batch; the last save of a user in one batch wins.
    await store.apply(
        [
            ProfileWrite("alice", "Alice ✨", "", T0 + 1),
            ProfileWrite("dave", "D1", "", T0 + 1),
            ProfileWrite("dave", "D2", "https://a.example/d.png", T0 + 2),
        ]
    )
    assert await store.load_profiles() == {
        "alice": ("Alice ✨", ""),
        "bob": (longest, avatar),
        "carol": ("", "https://a.example/c.png"),
        "dave": ("D2", "https://a.example/d.png"),
    }


async def test_an_empty_profile_deletes_it(store: Store) -> None:
    await store.apply([ProfileWrite("alice", "Alice", "", T0), ProfileWrite("bob", "Bob", "", T0)])
    await store.apply([ProfileWrite("alice", "", "", T0 + 1), ProfileWrite("nobody", "", "", T0 + 1)])
    assert await store.load_profiles() == {"bob": ("Bob", "")}
    # deleted, then set again within one batch: the last one wins
    await store.apply([ProfileWrite("bob", "", "", T0 + 2), ProfileWrite("bob", "Bobby", "", T0 + 3)])
    assert await store.load_profiles() == {"bob": ("Bobby", "")}


async def test_a_nul_in_a_profile_is_stored_as_a_replacement_character(store: Store) -> None:
    await store.apply([ProfileWrite("alice", "A\x00lice", "x\x00", T0), AliveWrite(T0)])
    assert await store.load_profiles() == {"alice": ("A\ufffdlice", "x\ufffd")}
    assert await store.last_alive() == T0  # the rest of the batch applied


async def test_last_alive_keeps_the_max(store: Store) -> None:
    assert await store.last_alive() is None
    await store.apply([AliveWrite(T0 + 10), AliveWrite(T0 + 30.5), AliveWrite(T0 + 20)])
    assert await store.last_alive() == T0 + 30.5
    await store.apply([AliveWrite(T0 + 5)])
    assert await store.last_alive() == T0 + 30.5
    await asyncio.gather(*(store.apply([AliveWrite(T0 + i)]) for i in (40, 90, 60, 0)))
    assert await store.last_alive() == T0 + 90


# --------------------------------------------------------------------------- lifecycle


async def test_reopen_keeps_everything(backend: Backend) -> None:
    if not backend.persistent:
        # An in-memory SQLite store is gone with its connection: reopening starts empty.
        s = backend.make()
        await s.open()
        await s.apply([SessionWrite(session("tok"))])
        await s.close()
        s = backend.make()
        await s.open()
        try:
            assert await s.load_sessions() == []
        finally:
            await s.close()
        return
    rec = make_record("c-1", start=T0, callees=("bob", "carol"), outcome="rejected")
    d1, d2, d3 = delivery("c-1", 1), delivery("c-1", 2), delivery("c-1", 1, url="http://gone.example")
    s = backend.make()
    await s.open()
    await s.apply(
        [
            LiveCallWrite("c-2", '{"state":"ringing"}', T0 + 1),
            finish(rec),
            UserCallsHide("carol", ("c-1",)),
            SessionWrite(session("tok")),
            GroupMembersWrite("g", ("alice", "bob")),
            ProfileWrite("alice", "Alice", "https://a.example/a.png", T0 + 6),
            AliveWrite(T0 + 7),
            DeliveriesWrite((d1, d2, d3)),
        ]
    )
    claimed = await s.outbox.claim_due(T0, 10)
    assert sorted(d.event_id for d in claimed) == sorted([d1.event_id, d3.event_id])
    await s.outbox.mark_failed(d1.event_id, T0 + 1, 500, "HTTP 500", T0 + 5)
    await s.outbox.mark_endpoint_gone(d3.url, T0 + 2)
    await s.close()
    await s.close()  # idempotent

    again = backend.make()
    await again.open()
    try:
        assert await again.load_live_calls() == [("c-2", '{"state":"ringing"}', T0 + 1)]
        assert await again.get_record("c-1") == rec
        assert await _all_user_calls(again, "bob") == ["c-1"]
        assert await _all_user_calls(again, "carol") == []
        assert await again.load_sessions() == [session("tok")]
        assert await again.load_groups() == {"g": ("alice", "bob")}
        assert await again.load_profiles() == {"alice": ("Alice", "https://a.example/a.png")}
        assert await again.last_alive() == T0 + 7
        total, _ = await again.query_records(
            start_time=None, end_time=None, results=None, call_type=None, page=1, per_page=5
        )
        assert total == 1
        e1, e2, e3 = [await again.outbox.get_delivery(d.event_id) for d in (d1, d2, d3)]
        assert e1 is not None and e2 is not None and e3 is not None
        assert (e1.state, e1.next_at, e1.delivery.attempts, e1.last_error) == (
            DeliveryState.PENDING,
            T0 + 5,
            1,
            "HTTP 500",
        )
        assert (e2.state, e2.delivery) == (DeliveryState.PENDING, d2)
        assert (e3.state, e3.finished_at) == (DeliveryState.GONE, T0 + 2)
        assert await again.outbox.gone_endpoints() == {d3.url: T0 + 2}
        assert [d.event_id for d in await again.outbox.claim_due(T0 + 5, 10)] == [d1.event_id]
        await again.apply([finish(rec), SessionDelete("tok")])  # still writable
        assert await again.load_sessions() == []
    finally:
        await again.close()


async def test_schema_migration_is_idempotent(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    await first.apply([finish(make_record("c-1", start=T0))])
    await first.close()
    # open the same database twice more, concurrently
    second, third = backend.make(), backend.make()
    await asyncio.gather(second.open(), third.open())
    try:
        for s in (second, third):
            version = getattr(s, "schema_version", None)
            if version is not None:
                assert await version() == SCHEMA_VERSION
            expected = make_record("c-1", start=T0) if backend.persistent else None
            assert await s.get_record("c-1") == expected
        await second.apply([AliveWrite(T0)])
        assert await third.last_alive() == (T0 if backend.persistent else None)
    finally:
        await second.close()
        await third.close()


async def test_use_outside_open_raises(backend: Backend) -> None:
    s = backend.make()
    with pytest.raises(RuntimeError, match="open"):
        await s.apply([AliveWrite(T0)])
    with pytest.raises(RuntimeError, match="open"):
        await s.load_sessions()
    await s.open()
    with pytest.raises(RuntimeError):
        await s.open()
    await s.close()
    with pytest.raises(RuntimeError):
        await s.apply([AliveWrite(T0)])
    with pytest.raises(RuntimeError):
        await s.last_alive()
    await s.close()


# --------------------------------------------------------------------------- not parametrised


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///ringline.db", "ringline.db"),
        ("sqlite:///data/rl.db", "data/rl.db"),
        ("sqlite:////var/lib/ringline/rl.db", "/var/lib/ringline/rl.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
        ("SQLite:///x.db", "x.db"),
    ],
)
def test_open_store_sqlite_urls(url: str, path: str) -> None:
    s = open_store(url)
    assert isinstance(s, SqliteStore)
    assert s.path == path


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql://u:p@db:5433/rl", "postgresql://u:p@db:5433/rl"),
        ("postgres://u@db/rl", "postgresql://u@db/rl"),
        ("postgresql+asyncpg://u@db/rl?sslmode=require", "postgresql://u@db/rl?sslmode=require"),
    ],
)
def test_open_store_postgres_urls(url: str, dsn: str) -> None:
    s = open_store(url)
    assert isinstance(s, PostgresStore)
    assert s.dsn == dsn


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "ringline.db", "sqlite://host/x.db", "sqlite:///", "http://x"]
)
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


async def test_postgres_without_asyncpg_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` fail
    with pytest.raises(RuntimeError, match=r"pip install 'ringline\[postgres\]'"):
        await PostgresStore("postgresql://postgres@127.0.0.1:5432/test").open()


async def test_postgres_unreachable_is_a_clear_error() -> None:
    s = PostgresStore("postgresql://postgres:secret@127.0.0.1:1/test")
    with pytest.raises(RuntimeError, match="cannot connect to PostgreSQL") as info:
        await s.open()
    assert "secret" not in str(info.value)
    await s.close()


async def test_sqlite_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "missing-dir" / "x.db"))
    with pytest.raises(RuntimeError, match="cannot open SQLite database"):
        await s.open()
    await s.close()


async def test_sqlite_locked_database_fails_the_round_then_recovers(tmp_path: Path) -> None:
    """Another process holding the write lock past the busy timeout fails every batch of
    the round with OperationalError (not one retry per batch); once the lock is released
    the store writes again."""
    import sqlite3

    path = str(tmp_path / "locked.db")
    s = SqliteStore(path, busy_timeout=0.2)
    await s.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        outcomes = await asyncio.gather(
            *(s.apply([LiveCallWrite(f"c-{i}", "{}", T0)]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes), outcomes
        other.execute("ROLLBACK")
        await s.apply([LiveCallWrite("c-ok", "{}", T0)])
        assert [c for c, _, _ in await s.load_live_calls()] == ["c-ok"]
    finally:
        other.close()
        await s.close()


@pytest.mark.parametrize("lock_spin", [0.0, 0.002, 0.5])
async def test_sqlite_write_waits_for_a_lock_released_before_the_busy_timeout(
    tmp_path: Path, lock_spin: float
) -> None:
    """A write transaction that finds another process's write lock tries again at every
    turn of the event loop for ``lock_spin`` seconds, then in short steps (not SQLite's
    busy handler): it lands once the lock is released within the busy timeout, and
    reads between writes still work."""
    import sqlite3
    import threading

    path = str(tmp_path / "busy.db")
    s = SqliteStore(path, busy_timeout=10.0, lock_spin=lock_spin)
    await s.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for round_ in range(3):
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO alive (id, at) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET at = 1")
            held = threading.Event()
            released = threading.Event()

            def release(held: threading.Event, released: threading.Event) -> None:
                held.wait(10)
                other.execute("COMMIT")
                released.set()

            t = threading.Thread(target=release, args=(held, released))
            t.start()
            write = asyncio.ensure_future(s.apply([LiveCallWrite(f"c-{round_}", "{}", T0)]))
            await asyncio.sleep(0.05)  # the write is waiting for the lock meanwhile
            assert not write.done()
            held.set()
            await write
            t.join(10)
            assert released.is_set()  # the write landed once the other's lock was gone
            assert f"c-{round_}" in [c for c, _, _ in await s.load_live_calls()]
    finally:
        other.close()
        await s.close()


@pytest.mark.parametrize("lock_spin", [0.0, 0.5])
async def test_sqlite_write_waiting_for_a_lock_leaves_the_event_loop_running(
    tmp_path: Path, lock_spin: float
) -> None:
    """Writes run on the event loop's thread, but a write that finds another process's
    write lock waits without blocking the loop, also while it tries again at every turn
    (``lock_spin``): other tasks keep running meanwhile, and the write lands once the
    lock is released."""
    import sqlite3

    path = str(tmp_path / "waiting.db")
    s = SqliteStore(path, busy_timeout=10.0, lock_spin=lock_spin)
    await s.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(s.apply([LiveCallWrite("c-wait", "{}", T0)]))
        for _ in range(20):  # the loop turns while the write waits (a blocking wait
            await asyncio.sleep(0.001)  # would hold it for the whole busy timeout, then fail)
        assert not write.done()
        assert await s.load_live_calls() == []  # reads go on too (another connection)
        other.execute("COMMIT")
        await write
        assert [c for c, _, _ in await s.load_live_calls()] == ["c-wait"]
    finally:
        other.close()
        await s.close()


def test_sqlite_lock_spin_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="lock_spin must be >= 0 seconds, not -1"):
        SqliteStore(":memory:", lock_spin=-1)


async def test_sqlite_reads_run_off_the_event_loop_thread(tmp_path: Path) -> None:
    """A file store reads on a thread of its own (a long query never stalls the loop)
    and writes on the loop's thread; a read issued after a write returned sees it."""
    import threading

    from ringline.server.store.ops import Fetch

    s = SqliteStore(str(tmp_path / "threads.db"))
    await s.open()
    try:
        seen: list[str] = []

        def op() -> Any:
            seen.append(threading.current_thread().name)
            rows = yield Fetch("SELECT count(*) FROM live_calls", ())
            return rows[0][0]

        await s.apply([LiveCallWrite("c-1", "{}", T0)])
        assert await s._read(op()) == 1
        assert seen and seen[0] != threading.current_thread().name
    finally:
        await s.close()


# --------------------------------------------------------------------------- callback config


async def test_callback_config_set_overwrite_delete_per_kind(store: Store) -> None:
    assert await store.get_callback_config("v4") is None
    assert await store.get_callback_config("v1") is None
    v4 = {
        "Url": "https://hooks.example.com/ringline?x=1",
        "CallbackCommandList": ["Call.CallbackAfterEndCall"],
    }
    v1 = {"address": "http://example.com/cb", "actions": ["normal_end", "caller_start_call"]}
    await store.apply([CallbackConfigWrite("v4", v4), CallbackConfigWrite("v1", v1)])
    assert await store.get_callback_config("v4") == v4
    assert await store.get_callback_config("v1") == v1
    # overwrite one kind: the other is untouched
    v4b = {"Url": "http://ünïcødé.example/☎", "CallbackCommandList": []}
    await store.apply([CallbackConfigWrite("v4", v4b)])
    assert await store.get_callback_config("v4") == v4b
    assert await store.get_callback_config("v1") == v1
    # delete one kind; deleting what is not there is a no-op
    await store.apply([CallbackConfigWrite("v1", None), CallbackConfigWrite("nope", None)])
    assert await store.get_callback_config("v1") is None
    assert await store.get_callback_config("v4") == v4b
    # several writes of one kind in one batch, mixed with other writes: the last wins
    await store.apply(
        [
            CallbackConfigWrite("v1", v1),
            AliveWrite(T0),
            CallbackConfigWrite("v1", None),
            CallbackConfigWrite("v4", v4),
            CallbackConfigWrite("v1", {"address": "http://last", "actions": ["reject"]}),
        ]
    )
    assert await store.get_callback_config("v1") == {"address": "http://last", "actions": ["reject"]}
    assert await store.get_callback_config("v4") == v4
    # concurrent batches all land
    await asyncio.gather(
        *(store.apply([CallbackConfigWrite(f"k{i}", {"n": i})]) for i in range(20)),
    )
    assert [await store.get_callback_config(f"k{i}") for i in range(20)] == [{"n": i} for i in range(20)]


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_callback_config_survives_reopen(backend: Backend) -> None:
    cfg = {"Url": "https://a.example/hook", "CallbackCommandList": ["Call.CallbackAfterStartCall"]}
    s = backend.make()
    await s.open()
    await s.apply([CallbackConfigWrite("v4", cfg)])
    await s.close()
    again = backend.make()
    await again.open()
    try:
        assert await again.get_callback_config("v4") == cfg
        assert await again.get_callback_config("v1") is None
    finally:
        await again.close()


_ADDED_IN = {2: ("callback_config",), 3: ("outbox", "webhook_gone"), 5: ("profiles",)}


async def _downgrade_to(s: Store, version: int) -> None:
    """Make the (closed) database of ``s`` look as schema ``version`` left it."""
    drops = []
    if version < 4:
        if isinstance(s, SqliteStore):
            drops += [
                "DROP TRIGGER IF EXISTS calls_counted",
                "DROP TRIGGER IF EXISTS calls_uncounted",
                "DROP TABLE IF EXISTS call_counts",
            ]
        drops.append("DROP INDEX IF EXISTS calls_by_type_result")
    if 3 <= version < 6:  # the outbox stays, without its claim owners
        drops.append("ALTER TABLE outbox DROP COLUMN claimed_by")
    if 3 <= version < 7:  # the outbox stays, without its extra query parameters
        drops.append("ALTER TABLE outbox DROP COLUMN extra_query")
    drops += [
        f"DROP TABLE {table}" for v, tables in sorted(_ADDED_IN.items()) if v > version for table in tables
    ]
    await _run_sql(s, [*drops, f"DELETE FROM schema_version WHERE version > {version}"])


async def _run_sql(s: Store, statements: Sequence[str]) -> None:
    """Run ``statements`` on the (closed) database of ``s``, outside any store."""
    if isinstance(s, SqliteStore):
        import sqlite3

        conn = sqlite3.connect(s.path, isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
    else:
        import asyncpg

        assert isinstance(s, PostgresStore)
        conn = await asyncpg.connect(s.dsn, server_settings={"search_path": s.schema})
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()


@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_database_with_a_newer_schema_refuses_to_open_and_is_left_as_it_is(backend: Backend) -> None:
    """A database a newer Ringline migrated (schema version above SCHEMA_VERSION) is not
    opened: a clear error says which versions and what to do, and nothing in it changes
    (no downgrade, no half migration)."""
    rec = make_record("c-1", start=T0)
    s = backend.make()
    await s.open()
    await s.apply([finish(rec)])
    await s.close()
    newer = SCHEMA_VERSION + 1
    await _run_sql(s, [f"INSERT INTO schema_version (version, applied_at) VALUES ({newer}, 0)"])

    refused = backend.make()
    with pytest.raises(RuntimeError) as info:
        await refused.open()
    await refused.close()
    message = str(info.value)
    assert f"schema is version {newer}, newer than this Ringline understands ({SCHEMA_VERSION})" in message
    assert "upgrade Ringline" in message
    with pytest.raises(RuntimeError, match="open"):
        await refused.get_record("c-1")  # the refused store is not usable

    # Left as it was: once the newer mark is gone, the same data opens.
    await _run_sql(s, [f"DELETE FROM schema_version WHERE version = {newer}"])
    again = backend.make()
    await again.open()
    try:
        assert await again.get_record("c-1") == rec
        version = getattr(again, "schema_version", None)
        assert version is not None and await version() == SCHEMA_VERSION
    finally:
        await again.close()


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_1_database_upgrades_and_keeps_its_data(backend: Backend) -> None:
    rec = make_record("c-1", start=T0, callees=("bob",))
    old = backend.make()
    await old.open()
    await old.apply([finish(rec), GroupMembersWrite("g", ("alice",)), AliveWrite(T0 + 1)])
    await old.close()
    await _downgrade_to(old, 1)

    new = backend.make()
    await new.open()
    try:
        version = getattr(new, "schema_version", None)
        assert version is not None and await version() == SCHEMA_VERSION
        assert await new.get_record("c-1") == rec
        assert await new.load_groups() == {"g": ("alice",)}
        assert await new.last_alive() == T0 + 1
        assert await new.get_callback_config("v4") is None
        await new.apply([CallbackConfigWrite("v4", {"Url": "http://x", "CallbackCommandList": []})])
        assert await new.get_callback_config("v4") == {"Url": "http://x", "CallbackCommandList": []}
    finally:
        await new.close()


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_2_database_upgrades_to_the_outbox(backend: Backend) -> None:
    cfg = {"Url": "http://x", "CallbackCommandList": []}
    old = backend.make()
    await old.open()
    await old.apply([finish(make_record("c-1", start=T0)), CallbackConfigWrite("v4", cfg)])
    await old.close()
    await _downgrade_to(old, 2)

    new = backend.make()
    await new.open()
    try:
        version = getattr(new, "schema_version", None)
        assert version is not None and await version() == SCHEMA_VERSION
        assert await new.get_callback_config("v4") == cfg
        assert await new.outbox.counts() == dict.fromkeys(DeliveryState, 0)
        d = delivery("c-1", 1)
        await new.apply([DeliveriesWrite((d,))])
        assert [c.event_id for c in await new.outbox.claim_due(T0, 5)] == [d.event_id]
    finally:
        await new.close()


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_3_database_upgrades_and_counts_its_records(backend: Backend) -> None:
    old = backend.make()
    await old.open()
    recs = [make_record(f"v3-{i}", start=T0 + i * 40_000.0) for i in range(12)]
    await old.apply([finish(r) for r in recs])
    await old.close()
    await _downgrade_to(old, 3)
    new = backend.make()
    await new.open()
    try:
        version = getattr(new, "schema_version", None)
        assert version is not None and await version() == SCHEMA_VERSION
        total, _ = await new.query_records(
            start_time=T0 + 1.0, end_time=None, results=None, call_type=None, page=1, per_page=1
        )
        assert total == 11
        await new.apply([finish(make_record("v3-new", start=T0 + 500_000.0))])
        total, _ = await new.query_records(
            start_time=None, end_time=None, results=None, call_type=None, page=1, per_page=1
        )
        assert total == 13
    finally:
        await new.close()


class _OldRow(NamedTuple):
    """An outbox row to insert as the code before schema version 7 had it."""

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


@contextlib.asynccontextmanager
async def old_version(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, version: int
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """The backend's store opened by its own code as it was at schema ``version`` (its
    migrations up to that one), not by dropping tables afterwards; closed on exit."""
    module: Any = sqlite_store if backend.name == "sqlite-file" else postgres_store
    with monkeypatch.context() as old_code:
        old_code.setattr(module, "SCHEMA_VERSION", version)
        old_code.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:version])
        if version < 7:
            # Before version 7 the outbox had no extra_query column: insert as that code did.
            new_plan = module.plan_inserts
            old_code.setattr(
                module, "plan_inserts", lambda *a, **kw: [_OldRow(*r[:13]) for r in new_plan(*a, **kw)]
            )
            old_code.setattr(
                module,
                "_SQL_OUTBOX_INSERT",
                module._SQL_OUTBOX_INSERT.replace(", extra_query)", ")")
                .replace(", ?)", ")")
                .replace(", $14::text[])", ")"),
            )
        old = backend.make()
        await old.open()
        try:
            assert isinstance(old, SqliteStore | PostgresStore)
            assert await old.schema_version() == version
            yield old
        finally:
            await old.close()


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_4_database_made_by_the_old_code_upgrades_to_profiles(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version 4 database is created by the store's own code as it was before
    version 5 (its migrations up to 4), not by dropping tables afterwards."""
    rec = make_record("c-1", start=T0)
    async with old_version(backend, monkeypatch, 4) as old:
        await old.apply([finish(rec), GroupMembersWrite("g", ("alice",)), SessionWrite(session("tok"))])
        with pytest.raises(Exception, match="profiles"):  # no such table yet
            await old.apply([ProfileWrite("alice", "Alice", "", T0)])

    new = backend.make()
    await new.open()
    try:
        assert isinstance(new, SqliteStore | PostgresStore)
        assert await new.schema_version() == SCHEMA_VERSION
        assert await new.get_record("c-1") == rec
        assert await new.load_groups() == {"g": ("alice",)}
        assert await new.load_sessions() == [session("tok")]
        assert await new.load_profiles() == {}
        await new.apply([ProfileWrite("alice", "Alice", "https://a.example/a.png", T0 + 1)])
    finally:
        await new.close()
    again = backend.make()
    await again.open()
    try:
        assert await again.load_profiles() == {"alice": ("Alice", "https://a.example/a.png")}
    finally:
        await again.close()


async def test_record_totals_are_exact_across_days_and_bounds(store: Store) -> None:
    """TotalNum over windows that cover whole UTC days, parts of days, and bounds that
    fall exactly on midnight or on a record's start time."""
    rng = random.Random(7)
    day0 = (int(T0) // 86400 + 1) * 86400.0  # a midnight
    outcomes = ["answered", "rejected", "no_answer", "canceled", "busy"]
    records = []
    for i in range(600):
        start = day0 + rng.choice([0.0, 86400.0 * rng.randrange(10)]) + rng.uniform(-3 * 86400, 9 * 86400)
        if i % 50 == 0:
            start = day0 + 86400.0 * (i // 50 - 2)  # exactly at a midnight
        records.append(
            make_record(
                f"d-{i:03d}",
                start=start,
                callees=("b",) if i % 3 else ("b", "c"),
                outcome=outcomes[i % len(outcomes)],
            )
        )
    await store.apply([finish(r) for r in records])
    starts = sorted(r.start_time for r in records)
    bounds = [
        None,
        day0,
        day0 + 86400.0,
        day0 - 1.0,
        *rng.sample(starts, 20),
        *(day0 + rng.uniform(-4, 10) * 86400 for _ in range(20)),
    ]
    result_sets: list[list[str] | None] = [None, ["NormalEnd"], ["Reject", "Cancel"]]
    checked = 0
    for _ in range(150):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        results = rng.choice(result_sets)
        call_type = rng.choice([None, "SingleCall", "MultiCall"])
        want = sum(
            1
            for r in records
            if (lo is None or r.start_time >= lo)
            and (hi is None or r.start_time <= hi)
            and (results is None or r.result.value in results)
            and (call_type is None or r.call_type == call_type)
        )
        total, page = await store.query_records(
            start_time=lo, end_time=hi, results=results, call_type=call_type, page=1, per_page=1
        )
        assert total == want, (lo, hi, results, call_type)
        assert len(page) == min(1, want)
        checked += 1
    assert checked == 150


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_5_database_made_by_the_old_code_upgrades_to_claim_owners(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version 5 database is created by the store's own code as it was before
    version 6 (its migrations up to 5); its queued deliveries are claimed with owners
    after the upgrade."""
    queued = [delivery("c-1", 1), delivery("c-1", 2), delivery("c-2", 1)]
    async with old_version(backend, monkeypatch, 5) as old:
        await old.apply([finish(make_record("c-1", start=T0)), DeliveriesWrite(tuple(queued))])
        with pytest.raises(Exception, match="claimed_by"):  # no such column yet
            await old.outbox.claim_owners()

    new = backend.make()
    await new.open()
    try:
        assert isinstance(new, SqliteStore | PostgresStore)
        assert await new.schema_version() == SCHEMA_VERSION
        assert (await new.outbox.counts())[DeliveryState.PENDING] == 3
        assert await new.outbox.claim_owners() == {}
        new.outbox.owner = "after-upgrade"
        claimed = await new.outbox.claim_due(T0, 10)
        assert sorted(d.event_id for d in claimed) == sorted([queued[0].event_id, queued[2].event_id])
        assert await new.outbox.claim_owners() == {d.event_id: "after-upgrade" for d in claimed}
        assert await new.outbox.release_owner("after-upgrade") == 2
        assert await new.outbox.claim_owners() == {}
    finally:
        await new.close()


# Only stores that outlive their connection (an in-memory one cannot be reopened).
@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"], indirect=True)
async def test_a_version_6_database_upgrades_to_extra_query_parameters(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries queued by the code of version 6 come out with no extra query; new
    ones keep theirs."""
    queued = [delivery("c-1", 1), delivery("c-2", 1)]
    async with old_version(backend, monkeypatch, 6) as old:
        await old.apply([DeliveriesWrite(tuple(queued))])

    new = backend.make()
    await new.open()
    try:
        assert isinstance(new, SqliteStore | PostgresStore)
        assert await new.schema_version() == SCHEMA_VERSION
        fresh = replace(delivery("c-3", 1), query="ClientIP=10.0.0.7&OptPlatform=Web")
        await new.apply([DeliveriesWrite((fresh,))])
        claimed = {d.event_id: d.query for d in await new.outbox.claim_due(T0, 10)}
        assert claimed == {queued[0].event_id: "", queued[1].event_id: "", fresh.event_id: fresh.query}
    finally:
        await new.close()


async def test_a_delivery_keeps_its_extra_query_parameters(store: Store) -> None:
    d = replace(delivery("c-1", 1), query="ClientIP=2001%3Adb8%3A%3A1&OptPlatform=RESTAPI")
    plain = delivery("c-2", 1)
    await store.apply([DeliveriesWrite((d, plain))])
    claimed = {x.event_id: x for x in await store.outbox.claim_due(T0, 10)}
    assert claimed[d.event_id].query == d.query and claimed[plain.event_id].query == ""
    _, entries = await store.outbox.list_deliveries([DeliveryState.IN_FLIGHT])
    listed = {e.delivery.event_id: e.delivery.query for e in entries}
    assert listed == {d.event_id: d.query, plain.event_id: ""}


async def test_claims_record_their_owner(store: Store) -> None:
    box = store.outbox
    assert box.owner  # a fresh one by default
    ds = [delivery("c-1", 1), delivery("c-1", 2), delivery("c-2", 1), delivery("c-3", 1)]
    await store.apply([DeliveriesWrite(tuple(ds))])
    box.owner = "worker-a"
    a = await box.claim_due(T0, 2)
    box.owner = "worker-b"
    b = await box.claim_due(T0, 10)
    assert len(a) == 2 and len(b) == 1  # c-1's second waits behind its first
    assert await box.claim_owners() == {
        **{d.event_id: "worker-a" for d in a},
        **{d.event_id: "worker-b" for d in b},
    }
    # A retried claim records its new claimer.
    await box.mark_failed(b[0].event_id, T0 + 1, 500, "HTTP 500", next_at=T0 + 1)
    box.owner = "worker-c"
    assert [d.event_id for d in await box.claim_due(T0 + 1, 10)] == [b[0].event_id]
    assert (await box.claim_owners())[b[0].event_id] == "worker-c"


async def test_releasing_an_owner_frees_only_its_claims(store: Store) -> None:
    box = store.outbox
    first, second = delivery("c-1", 1), delivery("c-1", 2)
    other, third = delivery("c-2", 1, at=T0 + 0.5), delivery("c-3", 1, at=T0 + 5)
    await store.apply([DeliveriesWrite((first, second, other, third))])
    box.owner = "dead"
    # One of the dead owner's claims had a failed attempt: its count and due time stay.
    assert [d.event_id for d in await box.claim_due(T0, 10)] == [first.event_id]
    await box.mark_failed(first.event_id, T0 + 1, 503, "HTTP 503", next_at=T0 + 2)
    dead = await box.claim_due(T0 + 2, 10)
    assert sorted(d.event_id for d in dead) == sorted([first.event_id, other.event_id])
    box.owner = "alive"
    assert [d.event_id for d in await box.claim_due(T0 + 5, 10)] == [third.event_id]

    assert await box.release_owner("nobody") == 0
    assert await box.release_owner("dead") == 2
    assert await box.claim_owners() == {third.event_id: "alive"}  # the others stay in flight
    entry = await box.get_delivery(first.event_id)
    assert entry is not None
    assert (entry.state, entry.delivery.attempts, entry.next_at) == (DeliveryState.PENDING, 1, T0 + 2)
    entry = await box.get_delivery(other.event_id)
    assert entry is not None and (entry.state, entry.delivery.attempts) == (DeliveryState.PENDING, 0)
    assert await box.release_owner("dead") == 0  # idempotent

    # Due at once for any claimer, with the same event ids; per-call order kept (the
    # second of c-1 still waits for its first).
    box.owner = "restarted"
    again = await box.claim_due(T0 + 5, 10)
    assert {d.event_id: d.attempts for d in again} == {first.event_id: 1, other.event_id: 0}
    assert await box.claim_owners() == {
        first.event_id: "restarted",
        other.event_id: "restarted",
        third.event_id: "alive",
    }
    # The live owner's claim was never touched: it finishes as usual.
    await box.mark_delivered(third.event_id, T0 + 6, 200)
    entry = await box.get_delivery(third.event_id)
    assert entry is not None and entry.state is DeliveryState.DELIVERED
    await box.mark_delivered(first.event_id, T0 + 6, 200)
    assert [d.event_id for d in await box.claim_due(T0 + 6, 10)] == [second.event_id]
