"""What the browser engine does when things break: a member whose media vanishes is
graded DOWN, a muted member's volume is 0, and a server restart mid-call leaves the
media running and the call usable, and a request whose answer is lost in a drop is
answered after the resume."""

from __future__ import annotations

from typing import Any

from browserkit import NetnsServer, User

AUDIO = 1
VIDEO = 2
DOWN = 6


async def connected(users: Any) -> tuple[User, User, str]:
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], VIDEO))["callId"]
    await b.event("onCallReceived", callID=cid)
    await b.ok("accept")
    for me, other in ((a, b), (b, a)):
        await me.event("onUserEnter", callID=cid, userID=other.user_id)
        await me.wait("(rl, u) => rl.stats[u] && rl.stats[u].framesDecoded > 3", other.user_id)
    return a, b, cid


def latest_quality(user_id: str) -> tuple[str, str]:
    return (
        "(rl, u) => { const e = rl.events.filter((e) => e.name === 'onUserNetworkQualityChanged').pop();"
        " const x = e && e.p.networkQualityList.find((q) => q.userId === u); return x ? x.quality : -1; }",
        user_id,
    )


async def test_a_member_whose_media_vanishes_is_graded_down(users: Any) -> None:
    a, b, cid = await connected(users)
    expr, arg = latest_quality(b.user_id)
    await a.wait(f"(rl, u) => [1, 2].includes(({expr})(rl, u))", arg)
    # b's side of the connection disappears without a word (a crashed tab, a dead network).
    await b.js("(rl, u) => rl.engine.getPeerConnection(u).close()", a.user_id)
    await a.wait(f"(rl, u) => ({expr})(rl, u) === {DOWN}", arg, timeout=20)


async def test_a_muted_member_has_volume_zero(users: Any) -> None:
    a, b, cid = await connected(users)
    heard = (
        "(rl, u) => rl.events.filter((e) => e.name === 'onUserVoiceVolume').slice(-8)"
        ".map((e) => e.p.volumeMap.find((v) => v.userId === u)).filter(Boolean).map((v) => v.audioVolume)"
    )
    await b.wait(f"(rl, u) => ({heard})(rl, u).some((v) => v > 0)", a.user_id)
    await a.ok("closeMicrophone")
    await b.event("onUserAudioAvailable", userID=a.user_id, isAudioAvailable=False)
    # The last eight readings (~2.4 s) on both sides: all 0 (a sends silence).
    await a.wait(
        f"(rl, u) => {{ const v = ({heard})(rl, u); return v.length === 8 && v.every((x) => x === 0); }}",
        a.user_id,
    )
    await b.wait(
        f"(rl, u) => {{ const v = ({heard})(rl, u); return v.length === 8 && v.every((x) => x === 0); }}",
        a.user_id,
    )
    await a.ok("openMicrophone")
    await b.event("onUserAudioAvailable", userID=a.user_id, isAudioAvailable=True)


async def test_a_server_restart_mid_call_keeps_media_and_the_call_usable(
    users: Any, web_server: NetnsServer
) -> None:
    a, b, cid = await connected(users)
    assert web_server.stop() == 0  # SIGTERM: the server drains and closes connections with 1001
    for me in (a, b):
        await me.event("onConnectionChanged", state="reconnecting")
    n = await a.js("(rl, u) => rl.stats[u].framesDecoded", b.user_id)
    await a.wait(
        "(rl, x) => rl.stats[x.u].framesDecoded > x.n + 10", {"u": b.user_id, "n": n}
    )  # peer to peer
    web_server.start()
    for me in (a, b):
        await me.event("onConnectionChanged", state="online", resumed=True, timeout=30)
    await a.ok("switchCallMediaType", 1)
    await b.event("onCallTypeChanged", callID=cid, newCallType=1)
    await a.ok("hangup")
    end = await b.event("onCallEnd", callID=cid)
    assert end["p"]["userID"] == a.user_id


async def test_a_request_whose_answer_is_lost_in_a_drop_is_answered_after_the_resume(users: Any) -> None:
    a, b = await users(2)
    # The socket is closed right after `calls` is sent: a closing WebSocket delivers no
    # more messages, so its answer is lost; the engine resumes and sends it again.
    await a.js(
        "(rl) => { const ws = rl.engine._ws; const send = ws.send.bind(ws);"
        " ws.send = (t) => { send(t); if (JSON.parse(t).op === 'calls') { rl.cut = t; ws.close(); } }; }"
    )
    cid = (await a.ok("calls", [b.user_id], AUDIO))["callId"]
    assert await a.js("(rl) => JSON.parse(rl.cut).op") == "calls"
    await a.event("onConnectionChanged", state="online", resumed=True)
    await b.event("onCallReceived", callID=cid)
    await b.ok("accept")
    await a.event("onCallBegin", callID=cid)
    assert (await b.names()).count("onCallReceived") == 1  # placed once
    await a.ok("hangup")
    await b.event("onCallEnd", callID=cid)


async def test_a_request_made_while_reconnecting_survives_a_second_drop(users: Any) -> None:
    a, b = await users(2)
    # The first `set_self_info` frame any socket sends closes that socket at once: its
    # answer is lost.
    await a.js(
        "(rl) => { const send = WebSocket.prototype.send; rl.cuts = 0;"
        " WebSocket.prototype.send = function (t) { send.call(this, t);"
        " if (JSON.parse(t).op === 'set_self_info' && rl.cuts++ === 0) this.close(); }; }"
    )
    # The socket is closing when the request is made, so it waits, unsent, for the
    # resume; it goes out on the resumed session, whose socket then drops too; after the
    # second resume it is sent once more and answered.
    state = await a.js(
        "(rl) => { rl.engine._ws.close(4000, 'test drop');"
        " rl.answer = rl.engine._request('set_self_info', {nickname: 'Alice', avatar: ''})"
        ".then(() => 'answered', (e) => e.message); return rl.engine._ws.readyState; }"
    )
    assert state == 2  # CLOSING: the request could not be sent on it
    assert await a.js("(rl) => rl.answer") == "answered"
    assert await a.js("(rl) => rl.cuts") == 2  # sent on the resumed socket, then again
    resumes = [e for e in await a.js("(rl) => rl.events") if e["name"] == "onConnectionChanged"]
    assert [e["p"].get("resumed") for e in resumes if e["p"].get("state") == "online"][-2:] == [True, True]
