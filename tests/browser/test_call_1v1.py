"""Two browsers call each other through Ringline with real WebRTC media; a page the browser
gives no microphone (not a secure context) says why, and its call goes on."""

from __future__ import annotations

from typing import Any

from browserkit import User

VIDEO, AUDIO = 2, 1


async def connected_pair(users: Any, media: int = VIDEO) -> tuple[User, User, str]:
    a, b = await users(2)
    r = await a.ok("calls", [b.user_id], media)
    cid = r["callId"]
    got = await b.event("onCallReceived", callID=cid)
    assert got["p"]["callerId"] == a.user_id and got["p"]["callMediaType"] == media
    await b.ok("accept")
    for me, other in ((a, b), (b, a)):
        await me.event("onCallBegin", callID=cid)
        await me.event("onUserEnter", callID=cid, userID=other.user_id)
    return a, b, cid


async def test_two_browsers_ring_accept_see_and_hear_each_other_then_hang_up(users: Any) -> None:
    a, b, cid = await connected_pair(users)
    for me, other in ((a, b), (b, a)):
        # Video: frames keep being decoded on both sides.
        first = await me.wait(
            "(rl, u) => rl.stats[u] && rl.stats[u].framesDecoded > 5 && rl.stats[u].framesDecoded",
            other.user_id,
        )
        await me.wait("(rl, a) => rl.stats[a.u].framesDecoded > a.n + 10", {"u": other.user_id, "n": first})
        # Audio: the fake microphone's beep arrives with a level.
        await me.wait(
            "(rl, u) => rl.stats[u].audioPackets > 20 && rl.stats[u].audioEnergy > 0", other.user_id
        )
        # Exactly one audio and one video transceiver, in that order (docs/media.md §3).
        assert await me.js("(rl, u) => rl.stats[u].transceivers", other.user_id) == ["audio", "video"]
        # Volume events from real audio: the other's beep is heard at some point.
        await me.wait(
            "(rl, u) => rl.events.some((e) => e.name === 'onUserVoiceVolume' && "
            "e.p.volumeMap.some((v) => v.userId === u && v.audioVolume > 0))",
            other.user_id,
        )
        # Quality from getStats: loopback is EXCELLENT (1) or at worst GOOD (2).
        q = await me.wait(
            "(rl, u) => { const e = rl.events.filter((e) => e.name === 'onUserNetworkQualityChanged').pop();"
            " const x = e && e.p.networkQualityList.find((q) => q.userId === u); return x && x.quality; }",
            other.user_id,
        )
        assert q in (1, 2), q
        # The server's availability events for the other member.
        await me.event("onUserAudioAvailable", userID=other.user_id, isAudioAvailable=True)
        await me.event("onUserVideoAvailable", userID=other.user_id, isVideoAvailable=True)

    # Switch to audio: video stops on both sides, audio goes on.
    await a.ok("switchCallMediaType", AUDIO)
    for me, other in ((a, b), (b, a)):
        ev = await me.event("onCallTypeChanged", callID=cid)
        assert (ev["p"]["oldCallType"], ev["p"]["newCallType"]) == (VIDEO, AUDIO)
        await me.wait("(rl, u) => rl.stats[u] && rl.stats[u].videoDirection === 'inactive'", other.user_id)
        assert await me.js("(rl) => rl.engine.localStream.getVideoTracks().length") == 0
        n = await me.js("(rl, u) => rl.stats[u].audioPackets", other.user_id)
        await me.wait("(rl, a) => rl.stats[a.u].audioPackets > a.n + 10", {"u": other.user_id, "n": n})

    await a.ok("hangup")
    end_b = await b.event("onCallEnd", callID=cid)
    assert end_b["p"]["userID"] == a.user_id and end_b["p"]["reason"] == 1  # HANGUP
    end_a = await a.event("onCallEnd", callID=cid)
    assert end_a["p"]["totalTime"] >= 0
    for me in (a, b):
        await me.wait("(rl) => rl.engine.callStatus === 0 && rl.engine.localStream.getTracks().length === 0")
        assert await me.js("(rl) => rl.engine.remoteUsers.length") == 0


async def test_a_page_without_a_microphone_says_why_and_the_call_goes_on(users: Any) -> None:
    a, b = await users(2)
    # As on an http:// page of another host than localhost: not a secure context, so
    # the browser has no navigator.mediaDevices.
    await a.js(
        "() => { for (const [o, k, v] of [[Navigator.prototype, 'mediaDevices', undefined],"
        " [window, 'isSecureContext', false]])"
        " Object.defineProperty(o, k, { get: () => v, configurable: true }); }"
    )
    assert await a.js("() => [navigator.mediaDevices === undefined, isSecureContext]") == [True, False]
    cid = (await a.ok("calls", [b.user_id], AUDIO))["callId"]
    err = await a.event("onError", code=-1101)  # DEVICE_ERROR
    assert "the microphone could not be opened: this page (http://127.0.0.1:" in err["p"]["msg"], err
    assert "is not a secure context" in err["p"]["msg"] and "https://" in err["p"]["msg"], err
    await b.event("onCallReceived", callID=cid)
    await b.ok("accept")
    for me in (a, b):
        await me.event("onCallBegin", callID=cid)
    await a.ok("hangup")
    await b.event("onCallEnd", callID=cid)
