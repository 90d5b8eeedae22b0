"""Media that changes during a call: audio to video, camera off and on, an invited
member joining the mesh; and the session: a dropped connection, a second login."""

from __future__ import annotations

from typing import Any

from browserkit import User

VIDEO, AUDIO = 2, 1


async def call(users: Any, n: int, media: int) -> tuple[list[User], str]:
    """users[0] calls the others; all accept."""
    us = await users(n)
    cid = (await us[0].ok("calls", [u.user_id for u in us[1:]], media))["callId"]
    for u in us[1:]:
        await u.event("onCallReceived", callID=cid)
        await u.ok("accept")
    for me in us:
        for other in us:
            if other is not me:
                await me.event("onUserEnter", callID=cid, userID=other.user_id)
    return us, cid


async def frames_grow(me: User, other: User, by: int = 5) -> None:
    n = await me.wait("(rl, u) => rl.stats[u] ? rl.stats[u].framesDecoded + 1 : 0", other.user_id) - 1
    await me.wait(
        "(rl, a) => rl.stats[a.u].framesDecoded > a.n + a.by", {"u": other.user_id, "n": n, "by": by}
    )


async def audio_flows(me: User, other: User) -> None:
    n = await me.wait("(rl, u) => rl.stats[u] ? rl.stats[u].audioPackets + 1 : 0", other.user_id) - 1
    await me.wait("(rl, a) => rl.stats[a.u].audioPackets > a.n + 10", {"u": other.user_id, "n": n})


async def test_an_audio_call_switched_to_video_starts_video_both_ways(users: Any) -> None:
    (a, b), cid = await call(users, 2, AUDIO)
    for me, other in ((a, b), (b, a)):
        await audio_flows(me, other)
        # Audio call: the video transceiver exists but is inactive, no camera is open.
        assert await me.js("(rl, u) => rl.stats[u].transceivers", other.user_id) == ["audio", "video"]
        await me.wait("(rl, u) => rl.stats[u].videoDirection === 'inactive'", other.user_id)
        assert await me.js("(rl) => rl.engine.localStream.getVideoTracks().length") == 0
    await b.ok("switchCallMediaType", VIDEO)  # b answers a: the answerer asks for the change
    for me, other in ((a, b), (b, a)):
        await me.event("onCallTypeChanged", callID=cid, newCallType=VIDEO)
        await me.wait("(rl, u) => rl.stats[u].videoDirection === 'sendrecv'", other.user_id)
        await frames_grow(me, other)
        await me.event("onUserVideoAvailable", userID=other.user_id, isVideoAvailable=True)


async def test_camera_off_stops_video_and_tells_the_others_camera_on_resumes_it(users: Any) -> None:
    (a, b), cid = await call(users, 2, VIDEO)
    await frames_grow(b, a)
    await a.ok("closeCamera")
    await b.event("onUserVideoAvailable", userID=a.user_id, isVideoAvailable=False)
    assert await a.js("(rl) => rl.engine.localStream.getVideoTracks().length") == 0  # camera released
    # No new frames from a once the camera is off (give the pipeline a moment to drain).
    await b.wait(
        "(rl, u) => { const s = rl.stats[u]; const now = Date.now();"
        " if (!rl.camWatch || rl.camWatch.n !== s.framesDecoded) rl.camWatch = {n: s.framesDecoded, t: now};"
        " return now - rl.camWatch.t > 1500; }",
        a.user_id,
    )
    await audio_flows(b, a)  # audio goes on
    await a.ok("openCamera")
    await b.event("onUserVideoAvailable", userID=a.user_id, isVideoAvailable=True)
    await frames_grow(b, a)
    r = await a.call("switchCallMediaType", AUDIO)
    assert "error" not in r
    await a.event("onCallTypeChanged", callID=cid, newCallType=AUDIO)
    r = await a.call("openCamera")  # an audio call has no camera
    assert r["error"]["code"] == -1205


async def test_an_invited_user_joins_the_mesh(users: Any) -> None:
    (a, b), cid = await call(users, 2, VIDEO)
    (c,) = await users(1, prefix="w")  # "w…" sorts after "u…": a and b offer to c
    assert await b.ok("inviteUser", [c.user_id]) == [c.user_id]
    for me in (a, b):
        await me.event("onUserInviting", callID=cid, userID=c.user_id)
    got = await c.event("onCallReceived", callID=cid)
    assert got["p"]["inviterId"] == b.user_id
    await c.ok("accept")
    for me in (a, b, c):
        for other in (a, b, c):
            if other is not me:
                await me.event("onUserEnter", callID=cid, userID=other.user_id)
                await frames_grow(me, other)


async def test_a_dropped_connection_resumes_and_the_call_goes_on(users: Any) -> None:
    (a, b), cid = await call(users, 2, VIDEO)
    await frames_grow(a, b)
    # Drop a's WebSocket (not a logout): the engine resumes its session.
    await a.js("(rl) => rl.engine._ws.close(4000, 'test drop')")
    await a.event("onConnectionChanged", state="reconnecting")
    await a.event("onConnectionChanged", state="online", resumed=True)
    await frames_grow(a, b)  # media never needed the server
    await a.ok("switchCallMediaType", AUDIO)  # and signalling works again
    await b.event("onCallTypeChanged", callID=cid, newCallType=AUDIO)
    await b.ok("hangup")
    end = await a.event("onCallEnd", callID=cid)
    assert end["p"]["userID"] == b.user_id
    assert [n for n in await a.names() if n == "onCallBegin"] == ["onCallBegin"]  # nothing replayed twice


async def test_signing_in_elsewhere_kicks_this_tab_out(users: Any, browser: Any, web_server: Any) -> None:
    (a,) = await users(1)
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        await page.goto(web_server.url + "/sdk/ringline.js")
        await page.evaluate(
            "async (a) => { const m = await import('/sdk/ringline.js');"
            " window.e2 = new m.CallEngine({}); await window.e2.init(a); }",
            {"sdkAppId": 1400000001, "userId": a.user_id, "userSig": web_server.sig(a.user_id)},
        )
        await a.event("onKickedOut")
        await a.event("onConnectionChanged", state="offline")
        assert await a.js("(rl) => rl.engine.isInitialized") is False
        r = await a.call("calls", ["someone"], AUDIO)
        assert r["error"]["code"] == -1201
    finally:
        await ctx.close()


async def test_a_user_who_declined_can_join_later_with_the_camera_off(users: Any) -> None:
    a, b, c = await users(3)
    cid = (await a.ok("calls", [b.user_id, c.user_id], VIDEO))["callId"]
    for x in (b, c):
        await x.event("onCallReceived", callID=cid)
    await b.ok("accept")
    await c.ok("reject")
    await c.event("onCallNotConnected", callID=cid, reason=2)
    await frames_grow(a, b)
    await c.ok("join", cid)
    await c.event("onCallBegin", callID=cid)
    for other in (a, b):
        await c.event("onUserEnter", callID=cid, userID=other.user_id)
        await frames_grow(c, other)  # c sees both
        await audio_flows(other, c)  # both hear c
        await other.event("onUserVideoAvailable", userID=c.user_id, isVideoAvailable=False)
    assert await c.js("(rl) => rl.engine.localStream.getVideoTracks().length") == 0
