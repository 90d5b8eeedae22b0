"""Every scenario row of docs/spec.md §5, with real SDK engines against a real server process,
and again against a 3-node cluster (docs/cluster.md) with the users spread over its nodes.

Availability events (``on_user_*_available``) follow each join; the rows of §5 do not
list them, so :func:`seq` leaves them out when comparing with a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clusterproc import ClusterProcess
from ringline import CallEndReason, CallEngine, CallParams, CallStatus, MediaType, RemoteCallError
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess, unique

R = CallEndReason
Make = Callable[..., Awaitable[tuple[CallEngine, RecordingObserver, str]]]


@pytest.fixture(scope="module", params=["single", "cluster"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real server process per module, then a 3-node cluster (every row runs on both)."""
    srv: Any
    if request.param == "single":
        srv = ServerProcess(tmp_path_factory.mktemp("srv")).start()
    else:
        srv = ClusterProcess(tmp_path_factory.mktemp("cluster"), 3, heartbeat_grace=2.0).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


def _url(server: Any, i: int) -> str:
    """The node of the ``i``-th engine of a test: in a cluster, users sit on different nodes."""
    return str(server.url_for(i)) if isinstance(server, ClusterProcess) else str(server.url)


async def _raw_record(server: Any, call_id: str) -> str:
    """The stored record (JSON text) of a finished call, from SQLite or the cluster's PostgreSQL."""
    if isinstance(server, ClusterProcess):
        import asyncpg

        conn = await asyncpg.connect(server.db)
        try:
            return str(await conn.fetchval("SELECT record FROM ringline.calls WHERE call_id = $1", call_id))
        finally:
            await conn.close()
    db = sqlite3.connect(f"file:{Path(server.data_dir) / 'ringline.db'}?mode=ro", uri=True)
    try:
        (raw,) = db.execute("SELECT record FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    finally:
        db.close()
    return str(raw)


@pytest.fixture
async def make(server: ServerProcess) -> AsyncIterator[Make]:
    engines: list[CallEngine] = []

    async def _make(
        user: str | None = None, *, multi: bool = False, device: str | None = None
    ) -> tuple[CallEngine, RecordingObserver, str]:
        u = user or unique("u")
        e = CallEngine(_url(server, len(engines)), device_id=device or f"{u}-{len(engines)}")
        rec = RecordingObserver()
        e.add_observer(rec)
        if multi:
            await e.enable_multi_device_ability(True)
        await e.init(SDK_APP_ID, u, server.sig(u))
        engines.append(e)
        return e, rec, u

    yield _make
    for e in engines:
        await e.uninit()


def seq(rec: RecordingObserver, call_id: str) -> list[tuple[Any, ...]]:
    """The events of one call as (name, key arg...) tuples, availability left out."""
    out: list[tuple[Any, ...]] = []
    for ev in rec.events_for(call_id):
        k = ev.kwargs
        if ev.name.endswith("_available"):
            continue
        if ev.name in ("on_call_end", "on_call_not_connected"):
            out.append((ev.name, k["reason"], k["user_id"]))
        elif ev.name == "on_call_media_type_changed":
            out.append((ev.name, k["old_call_media_type"], k["new_call_media_type"]))
        elif "user_id" in k:
            out.append((ev.name, k["user_id"]))
        else:
            out.append((ev.name,))
    return out


async def ring(caller: CallEngine, callee_rec: RecordingObserver, users: list[str], **kw: Any) -> str:
    cid = await caller.calls(users, MediaType.VIDEO, CallParams(**kw) if kw else None)
    await callee_rec.wait_for("on_call_received", call_id=cid)
    return cid


async def test_rows_1_2_3_call_accept_hangup(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await a.calls([ub], MediaType.VIDEO)
    assert a.call_status is CallStatus.WAITING
    got = await rb.wait_for("on_call_received", call_id=cid)
    assert got["caller_id"] == ua and got["callee_id_list"] == [ub]
    assert got["media_type"] is MediaType.VIDEO and int(got["info"].role) == 2
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    assert a.call_status is CallStatus.ACCEPT
    await ra.wait_for("on_user_video_available", user_id=ub)
    await a.hangup()
    end = await rb.wait_for("on_call_end", call_id=cid)
    assert end["total_time"] >= 0
    # The caller's end is a push like the callee's, on its own connection: it may come
    # after the callee's.
    await ra.wait_for("on_call_end", call_id=cid)
    assert seq(ra, cid) == [
        ("on_user_inviting", ub),
        ("on_call_begin",),
        ("on_user_join", ub),
        ("on_call_end", R.HANGUP, ua),
    ]
    assert seq(rb, cid) == [
        ("on_call_received",),
        ("on_call_begin",),
        ("on_user_join", ua),
        ("on_user_leave", ua),
        ("on_call_end", R.HANGUP, ua),
    ]
    assert a.call_status is CallStatus.NONE and b.call_status is CallStatus.NONE


async def test_row_1_offline_callee_logging_in_gets_the_invite_with_time_left(make: Make) -> None:
    a, ra, ua = await make()
    ub = unique("b")
    cid = await a.calls([ub], MediaType.AUDIO, CallParams(timeout=20))
    b, rb, _ = await make(ub)
    got = await rb.wait_for("on_call_received", call_id=cid)
    assert 0 < got["info"].ring_time_left <= 20
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)


async def test_row_4_caller_cancels_before_answer(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub])
    await a.hangup()
    await rb.wait_for("on_call_cancelled", call_id=cid)
    await ra.wait_for("on_call_cancelled")
    assert seq(ra, cid) == [
        ("on_user_inviting", ub),
        ("on_call_not_connected", R.CANCELED, ua),
        ("on_call_cancelled", ua),
    ]
    assert seq(rb, cid) == [
        ("on_call_received",),
        ("on_call_not_connected", R.CANCELED, ua),
        ("on_call_cancelled", ua),
    ]


async def test_row_5_no_answer_in_time(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub], timeout=1)
    await ra.wait_for("on_call_cancelled", call_id=cid, timeout=5)
    await rb.wait_for("on_call_cancelled", call_id=cid)
    assert seq(ra, cid) == [
        ("on_user_inviting", ub),
        ("on_user_no_response", ub),
        ("on_call_not_connected", R.NO_RESPONSE, ub),
        ("on_call_cancelled", ua),
    ]
    assert seq(rb, cid) == [
        ("on_call_received",),
        ("on_call_not_connected", R.NO_RESPONSE, ub),
        ("on_call_cancelled", ub),
    ]


async def test_row_6_callee_rejects(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub])
    await b.reject()
    await ra.wait_for("on_call_cancelled", call_id=cid)
    assert seq(ra, cid) == [
        ("on_user_inviting", ub),
        ("on_user_reject", ub),
        ("on_call_not_connected", R.REJECT, ub),
        ("on_call_cancelled", ua),
    ]
    await rb.wait_for("on_call_cancelled", call_id=cid)
    assert seq(rb, cid) == [
        ("on_call_received",),
        ("on_call_not_connected", R.REJECT, ub),
        ("on_call_cancelled", ub),
    ]


@pytest.mark.parametrize("busy_state", ["ringing", "connected"])
async def test_row_7_busy_callee_is_untouched_and_sees_a_missed_call(make: Make, busy_state: str) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    c, rc, uc = await make()
    other = await ring(c, rb, [ub])
    if busy_state == "connected":
        await b.accept()
        await rc.wait_for("on_call_begin", call_id=other)
    cid = await a.calls([ub], MediaType.AUDIO)
    await ra.wait_for("on_call_cancelled", call_id=cid)
    assert seq(ra, cid) == [
        ("on_user_inviting", ub),
        ("on_user_line_busy", ub),
        ("on_call_not_connected", R.LINE_BUSY, ub),
        ("on_call_cancelled", ua),
    ]
    assert rb.events_for(cid) == []
    assert b.call_id == other
    missed = await b.query_recent_calls()
    assert [(r.call_id, int(r.result)) for r in missed if r.call_id == cid] == [(cid, 1)]


async def test_row_8_glare_turns_the_crossing_call_into_an_accept(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub])
    assert await b.calls([ua], MediaType.VIDEO) == cid
    await ra.wait_for("on_call_begin", call_id=cid)
    await rb.wait_for("on_call_begin", call_id=cid)
    assert "on_user_line_busy" not in ra.names()
    assert a.call_status is CallStatus.ACCEPT and b.call_status is CallStatus.ACCEPT


async def test_rows_10_11_multi_device_first_action_wins(make: Make) -> None:
    a, ra, ua = await make()
    ub = unique("b")
    b1, rb1, _ = await make(ub, multi=True, device=ub + "-phone")
    b2, rb2, _ = await make(ub, multi=True, device=ub + "-laptop")
    cid = await ring(a, rb1, [ub])
    await rb2.wait_for("on_call_received", call_id=cid)
    await b1.accept()
    nc = await rb2.wait_for("on_call_not_connected", call_id=cid)
    assert nc["reason"] is R.OTHER_DEVICE_ACCEPTED and nc["user_id"] == ub
    await ra.wait_for("on_user_join", call_id=cid, user_id=ub)
    await a.hangup()
    await rb1.wait_for("on_call_end", call_id=cid)
    # Row 11: reject on one device.
    cid2 = await ring(a, rb1, [ub])
    await rb2.wait_for("on_call_received", call_id=cid2)
    await b2.reject()
    nc = await rb1.wait_for("on_call_not_connected", call_id=cid2)
    assert nc["reason"] is R.OTHER_DEVICE_REJECT
    got = await rb2.wait_for("on_call_not_connected", call_id=cid2)
    assert got["reason"] is R.REJECT
    await ra.wait_for("on_user_reject", call_id=cid2, user_id=ub)


async def test_row_12_media_type_switch_both_ways(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub])
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await a.switch_call_media_type(MediaType.AUDIO)
    for r in (ra, rb):
        got = await r.wait_for("on_call_media_type_changed", call_id=cid)
        assert (got["old_call_media_type"], got["new_call_media_type"]) == (MediaType.VIDEO, MediaType.AUDIO)
    await rb.wait_for("on_user_video_available", user_id=ua, is_video_available=False)
    await b.switch_call_media_type(MediaType.VIDEO)
    got = await ra.wait_for("on_call_media_type_changed", call_id=cid, old_call_media_type=MediaType.AUDIO)
    assert got["new_call_media_type"] is MediaType.VIDEO
    assert a.media_type is MediaType.VIDEO
    with pytest.raises(RemoteCallError) as err:
        await a.switch_call_media_type(MediaType.VIDEO)
    assert err.value.code == -1204


async def test_camera_and_microphone_drive_availability_events(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    cid = await ring(a, rb, [ub])
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await b.close_camera()
    await ra.wait_for("on_user_video_available", user_id=ub, is_video_available=False)
    await b.close_microphone()
    await ra.wait_for("on_user_audio_available", user_id=ub, is_audio_available=False)
    await b.open_microphone()
    await ra.wait_for("on_user_audio_available", user_id=ub, is_audio_available=True)


async def test_group_rows_g1_to_g6(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    c, rc, uc = await make()
    d, rd, ud = await make()
    cid = await a.calls([ub, uc, ud], MediaType.AUDIO)
    for r in (rb, rc, rd):  # G1
        got = await r.wait_for("on_call_received", call_id=cid)
        assert sorted(got["callee_id_list"]) == sorted([ub, uc, ud])
    await b.accept()  # G2
    await ra.wait_for("on_user_join", call_id=cid, user_id=ub)
    await rb.wait_for("on_user_join", call_id=cid, user_id=ua)
    await d.reject()  # G3
    for r in (ra, rb, rc):
        await r.wait_for("on_user_reject", call_id=cid, user_id=ud)
    await rd.wait_for("on_call_not_connected", call_id=cid, reason=R.REJECT)
    await c.accept()  # G4
    await rc.wait_for("on_call_begin", call_id=cid)
    assert {(await rc.wait_for("on_user_join", call_id=cid))["user_id"] for _ in range(2)} == {ua, ub}
    await ra.wait_for("on_user_join", call_id=cid, user_id=uc)
    await rb.wait_for("on_user_join", call_id=cid, user_id=uc)
    await a.hangup()  # G5: the call goes on
    await ra.wait_for("on_call_end", call_id=cid, reason=R.HANGUP, user_id=ua)
    await rb.wait_for("on_user_leave", call_id=cid, user_id=ua)
    await rc.wait_for("on_user_leave", call_id=cid, user_id=ua)
    assert b.call_status is CallStatus.ACCEPT
    await b.hangup()  # G6: down to one member
    await rc.wait_for("on_user_leave", call_id=cid, user_id=ub)
    await rc.wait_for("on_call_end", call_id=cid, reason=R.HANGUP, user_id=ub)
    assert seq(rc, cid)[-2:] == [("on_user_leave", ub), ("on_call_end", R.HANGUP, ub)]


async def test_group_rows_g7_invite_and_g8_join(make: Make, server: ServerProcess) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    e, re_, ue = await make()
    f, rf, uf = await make()
    gid = unique("g")
    await _admin(
        server,
        "group_open_http_svc/create_group",
        {"GroupId": gid, "MemberList": [{"Member_Account": u} for u in (ua, ub, uf)]},
    )
    cid = await a.calls([ub], MediaType.AUDIO, CallParams(chat_group_id=gid))
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_user_join", call_id=cid, user_id=ub)
    assert await b.invite_user([ue, ub]) == [ue]  # G7
    await ra.wait_for("on_user_inviting", call_id=cid, user_id=ue)
    await rb.wait_for("on_user_inviting", call_id=cid, user_id=ue)
    got = await re_.wait_for("on_call_received", call_id=cid)
    assert got["caller_id"] == ua and sorted(got["callee_id_list"]) == sorted([ub, ue])
    await f.join(cid)  # G8: a chat-group member
    await rf.wait_for("on_call_begin", call_id=cid)
    assert {(await rf.wait_for("on_user_join", call_id=cid))["user_id"] for _ in range(2)} == {ua, ub}
    for r in (ra, rb):
        await r.wait_for("on_user_join", call_id=cid, user_id=uf)
    assert "on_user_join" not in [n for n, *_ in seq(re_, cid)]  # ringing: no joins


async def test_group_row_g9_cancel_before_anyone_answered(make: Make) -> None:
    a, ra, ua = await make()
    b, rb, ub = await make()
    c, rc, uc = await make()
    cid = await a.calls([ub, uc], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await rc.wait_for("on_call_received", call_id=cid)
    await a.hangup()
    for r in (ra, rb, rc):
        got = await r.wait_for("on_call_not_connected", call_id=cid)
        assert got["reason"] is R.CANCELED and got["user_id"] == ua


async def test_record_agrees_with_the_events_the_clients_saw(make: Make, server: ServerProcess) -> None:
    """I4: same members, same outcomes, same times (to the second)."""
    a, ra, ua = await make()
    b, rb, ub = await make()
    c, rc, uc = await make()
    cid = await a.calls([ub, uc], MediaType.AUDIO, CallParams(timeout=1))
    await rb.wait_for("on_call_received", call_id=cid)
    t_accept = time.time()
    await b.accept()
    await rb.wait_for("on_call_begin", call_id=cid)
    begin_b = next(e.time for e in rb.events_for(cid) if e.name == "on_call_begin")
    await ra.wait_for("on_user_no_response", call_id=cid, user_id=uc, timeout=5)
    await b.hangup()
    end_a = await ra.wait_for("on_call_end", call_id=cid)
    rec = json.loads(await _raw_record(server, cid))
    members = {m["user_id"]: m for m in rec["members"]}
    assert set(members) == {ua, ub, uc}
    assert members[uc]["end_reason"] == R.NO_RESPONSE and members[uc]["accept_time"] == 0
    assert members[ub]["end_reason"] == R.HANGUP and members[ua]["end_reason"] == R.HANGUP
    assert t_accept <= members[ub]["accept_time"] <= begin_b  # after B accepted, before B heard of it
    assert round(members[ua]["leave_time"] - members[ua]["accept_time"]) == end_a["total_time"]
    assert rec["result"] == "NormalEnd" and rec["ended_by"] == ub


async def _admin(server: ServerProcess, command: str, body: dict[str, Any]) -> None:
    q = f"sdkappid={SDK_APP_ID}&identifier=administrator&usersig={server.sig('administrator')}&random=7"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{_url(server, 2)}/v4/{command}?{q}", json=body) as r,
    ):
        res = await r.json()
        assert res["ActionStatus"] == "OK", res
