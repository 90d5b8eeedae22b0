"""A three-party full mesh (one member answering late), and calls that do not connect:
declined, unanswered."""

from __future__ import annotations

from typing import Any

from browserkit import User

VIDEO, AUDIO = 2, 1
REJECT, NO_RESPONSE = 2, 3


async def media_flows(me: User, other: User) -> None:
    """Video frames and audio packets from ``other`` keep arriving at ``me``."""
    n = await me.wait(
        "(rl, u) => rl.stats[u] && rl.stats[u].framesDecoded > 3 && rl.stats[u].framesDecoded", other.user_id
    )
    await me.wait("(rl, a) => rl.stats[a.u].framesDecoded > a.n + 5", {"u": other.user_id, "n": n})
    await me.wait("(rl, u) => rl.stats[u].audioPackets > 20 && rl.stats[u].audioEnergy > 0", other.user_id)


async def test_three_browsers_form_a_full_mesh_and_a_late_answer_joins_it(users: Any) -> None:
    a, b, c = await users(3)
    cid = (await a.ok("calls", [b.user_id, c.user_id], VIDEO))["callId"]
    for x in (b, c):
        got = await x.event("onCallReceived", callID=cid)
        assert sorted(got["p"]["calleeIdList"]) == sorted([b.user_id, c.user_id])
    await b.ok("accept")
    await media_flows(a, b)
    await media_flows(b, a)
    # c answers later and connects to both (c's id is the highest: a and b offer to it).
    await c.ok("accept")
    for me in (a, b, c):
        others = [x for x in (a, b, c) if x is not me]
        for other in others:
            await me.event("onUserEnter", callID=cid, userID=other.user_id)
            await media_flows(me, other)
        assert sorted(await me.js("(rl) => rl.engine.remoteUsers")) == sorted(o.user_id for o in others)
        # One volume event covers every member, this one included.
        await me.wait(
            "(rl, ids) => rl.events.some((e) => e.name === 'onUserVoiceVolume' && "
            "ids.every((id) => e.p.volumeMap.some((v) => v.userId === id)))",
            [x.user_id for x in (a, b, c)],
        )
        await me.wait(
            "(rl, ids) => rl.events.some((e) => e.name === 'onUserNetworkQualityChanged' && "
            "ids.every((id) => e.p.networkQualityList.some((q) => q.userId === id && q.quality >= 1 && "
            "q.quality <= 2)))",
            [o.user_id for o in others],
        )
    # a leaves: b and c go on, with their connection to each other intact.
    await a.ok("hangup")
    for me, other in ((b, c), (c, b)):
        await me.event("onUserLeave", callID=cid, userID=a.user_id)
        await me.wait("(rl, u) => !rl.engine.getPeerConnection(u)", a.user_id)
        await media_flows(me, other)
    await b.ok("hangup")
    end = await c.event("onCallEnd", callID=cid)
    assert end["p"]["userID"] == b.user_id


async def test_a_declined_call_ends_on_both_sides_and_releases_the_devices(users: Any) -> None:
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], VIDEO))["callId"]
    await b.event("onCallReceived", callID=cid)
    await a.wait("(rl) => rl.engine.localStream.getVideoTracks().length === 1")  # preview while ringing
    await b.ok("reject")
    assert (await a.event("onReject", callID=cid))["p"]["userID"] == b.user_id
    for me in (a, b):
        ended = await me.event("onCallNotConnected", callID=cid)
        assert ended["p"]["reason"] == REJECT and ended["p"]["userID"] == b.user_id
        await me.event("onCallCanceled", callID=cid, reason="reject")
        await me.wait("(rl) => rl.engine.callStatus === 0 && rl.engine.localStream.getTracks().length === 0")
    assert "onCallBegin" not in await a.names()


async def test_an_unanswered_call_times_out_with_no_response(users: Any) -> None:
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], AUDIO, {"timeout": 2}))["callId"]
    got = await b.event("onCallReceived", callID=cid)
    assert 0 < got["p"]["ringTimeLeft"] <= 2
    resp = await a.event("onNoResp", callID=cid, timeout=10)
    assert resp["p"]["userIDList"] == [b.user_id]
    for me in (a, b):
        ended = await me.event("onCallNotConnected", callID=cid, timeout=10)
        assert ended["p"]["reason"] == NO_RESPONSE and ended["p"]["userID"] == b.user_id
        await me.wait("(rl) => rl.engine.callStatus === 0")
    assert "onCallBegin" not in await b.names()
    # Bob's history shows a missed call.
    records = await b.ok("queryRecentCalls", {"resultType": 1})
    assert [r["callId"] for r in records] == [cid]


async def test_an_ignored_call_stops_ringing_here_only_and_times_out_for_the_caller(users: Any) -> None:
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], AUDIO, {"timeout": 3}))["callId"]
    await b.event("onCallReceived", callID=cid)
    await b.wait("(rl) => rl.engine.callStatus === 1")  # waiting (ringing)
    await b.ok("ignore")
    # This device is done at once: idle, microphone released, no reject sent.
    await b.wait("(rl) => rl.engine.callStatus === 0 && rl.engine.localStream.getTracks().length === 0")
    # The server keeps the invitation: the caller still waits, and gets no response at the timeout.
    assert await a.js("(rl) => rl.engine.callStatus") == 1
    resp = await a.event("onNoResp", callID=cid, timeout=10)
    assert resp["p"]["userIDList"] == [b.user_id]
    for me in (a, b):
        ended = await me.event("onCallNotConnected", callID=cid, timeout=10)
        assert ended["p"]["reason"] == NO_RESPONSE and ended["p"]["userID"] == b.user_id
    assert "onReject" not in await a.names()
    # Ignoring again (nothing rings now) is refused with the hint.
    again = await b.call("ignore")
    assert "error" in again and "onCallReceived" in again["error"]["message"], again


async def test_engine_checks_its_arguments_before_sending(users: Any) -> None:
    (a,) = await users(1)
    for method, args, needle in (
        ("calls", [[], VIDEO], "empty"),
        ("calls", [["bad id!"], VIDEO], "invalid user id"),
        ("calls", [[f"u{i}" for i in range(9)], VIDEO], "at most 8"),
        ("calls", [["bob"], 7], "mediaType"),
        ("calls", [["bob"], VIDEO, {"timeout": 601}], "timeout"),
        ("accept", [], "no current call"),
        ("openCamera", [], "no current call"),
    ):
        r = await a.call(method, *args)
        assert "error" in r and needle in r["error"]["message"], (method, args, r)
        assert r["error"]["code"] in (-1202, -1203)
    quality = await a.js(
        "(rl) => [rl.m.gradeQuality({rtt: 50, loss: 0.5, jitter: 5}), rl.m.gradeQuality({rtt: 150}),"
        " rl.m.gradeQuality({loss: 4}), rl.m.gradeQuality({jitter: 80}), rl.m.gradeQuality({rtt: 900}),"
        " rl.m.gradeQuality({})]"
    )
    assert quality == [1, 2, 3, 4, 5, 1]
    assert await a.js("(rl) => [rl.m.volumeOf(0), rl.m.volumeOf(0.5), rl.m.volumeOf(2)]") == [0, 50, 100]
