"""Five members through Janus, video: two Chromium pages (the browser engine served at
/sdk/ringline.js, fake camera and microphone, 160x120) and three Python SDK engines with
``media=`` (test tone and pattern, 160x120), with a real Janus (loopback shim preloaded)
and ``ringline serve --sfu``, all inside a loopback-only network namespace.

- every member decodes audio and video from every other one;
- every member uploads once: over all of a page's connections, one outbound stream per
  kind; a Python engine sends on its publishing connection only;
- a member leaves and another joins mid-call: everyone receives the newcomer (who
  receives everyone), nobody keeps a connection for the leaver;
- a page turns its camera off and on again: the other page gets its video again;
- a participant with a bad token, or none, cannot join the call's room (Janus's API);
- the call switches to audio: no device sends video any more, nobody receives video
  frames any more (the pages' remote streams have no video track), audio goes on.

The test runs this file again as a script inside the namespace, which prints one JSON
object of what each side saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from netns import loopback_netns, run_in
from test_sfu_browser import _missing_browser

from needs import missing

pytestmark = pytest.mark.timeout(240)

PAGES = ("wa", "wb")
#: the Python members at the start (user -> tone, Hz); "pc" leaves, "pd" joins
BOTS = {"pa": 300.0, "pb": 500.0, "pc": 700.0}
NEWCOMER = ("pd", 900.0)
LEAVER = "pc"

# Runs in each page, besides the interop harness: every 250 ms, per remote user, what
# its current connection receives (audio packets and energy, decoded video frames, the
# video tracks of its remote stream), and over every live RTCPeerConnection of the page,
# its outbound streams per kind (this device's uploads).
FIVE_STATS = """
window.rlPcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  window.rlPcs.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
window.rlFive = null;
setInterval(async () => {
  const rl = window.rl;
  if (!rl) return;
  const users = {};
  for (const u of rl.engine.remoteUsers) {
    const pc = rl.engine.getPeerConnection(u);
    if (!pc || pc.connectionState === "closed") continue;
    const peer = rl.engine._mesh.peers.get(u);
    const stream = rl.engine.getRemoteStream(u);
    const s = { feed: !!peer && peer.constructor.name === "SfuFeed", audio: 0, energy: 0, frames: 0,
                videoTracks: stream ? stream.getVideoTracks().length : 0 };
    for (const r of (await pc.getStats()).values()) {
      if (r.type !== "inbound-rtp") continue;
      if (r.kind === "audio") {
        s.audio += r.packetsReceived || 0;
        s.energy += r.totalAudioEnergy || 0;
      } else {
        s.frames += r.framesDecoded || 0;
      }
    }
    users[u] = s;
  }
  const outbound = { audio: [], video: [] };
  let live = 0;
  for (const pc of window.rlPcs) {
    if (pc.connectionState === "closed" || pc.signalingState === "closed") continue;
    live += 1;
    for (const r of (await pc.getStats()).values()) {
      if (r.type !== "outbound-rtp") continue;
      outbound[r.kind].push({ packets: r.packetsSent || 0, frames: r.framesEncoded || 0,
                              width: r.frameWidth || 0, limit: r.qualityLimitationReason || "",
                              active: r.active });
    }
  }
  window.rlFive = { users, outbound, live,
    sfu: rl.engine._mesh.sfu, publisher: !!rl.engine._mesh.publisher,
    kinds: [...rl.engine._mesh.peers.values()].map((p) => p.constructor.name) };
}, 250);
"""


def test_five_members_two_browsers_three_python_engines_video_through_janus() -> None:
    reason = _missing_browser()
    if reason:
        missing(reason)
    with loopback_netns() as ns:
        r = run_in(ns, [str(Path(__file__).resolve())], timeout=220)
    first = sorted([*PAGES, *BOTS])
    # Everyone receives audio and video from every other member, and uploads once.
    for page in PAGES:
        got = r[f"{page}_start"]
        assert got["kinds"] == ["SfuFeed"] * 4 and got["publisher"], got
        assert sorted(got["users"]) == sorted(set(first) - {page}), got
        for u, s in got["users"].items():
            assert s["feed"] and s["audio"] > 25 and s["energy"] > 0 and s["frames"] > 10, (page, u, s)
        assert len(got["outbound"]["audio"]) == 1 and len(got["outbound"]["video"]) == 1, got
        assert got["outbound"]["video"][0]["frames"] > 0, got
    for bot in BOTS:
        got = r[f"{bot}_start"]
        assert got["publisher"] and got["feeds"] == sorted(set(first) - {bot}) and got["mesh"] == [], got
        assert got["sending"] == {"audio": 1, "video": 1}, got
        for u, heard in got["heard"].items():
            assert heard["audio"] >= 25 and heard["video"] >= 10 and heard["level"] > 0, (bot, u, heard)
    # wa's camera off and on again: wb gets its video again.
    assert r["wa_camera_back"]["wb"] >= 10, r["wa_camera_back"]
    # A member left and another joined: everyone receives the newcomer, nobody the leaver.
    now = sorted(set(first) - {LEAVER} | {NEWCOMER[0]})
    for page in PAGES:
        got = r[f"{page}_after_join"]
        assert sorted(got["users"]) == sorted(set(now) - {page}), got
        assert got["kinds"] == ["SfuFeed"] * 4, got
        s = got["users"][NEWCOMER[0]]
        assert s["feed"] and s["audio"] > 25 and s["energy"] > 0 and s["frames"] > 10, (page, s)
    for bot in [*BOTS, NEWCOMER[0]]:
        if bot == LEAVER:
            continue
        got = r[f"{bot}_after_join"]
        assert got["feeds"] == sorted(set(now) - {bot}) and got["mesh"] == [], (bot, got)
        # the ones who stayed receive the newcomer, who receives everyone
        assert sorted(got["heard"]) == ([NEWCOMER[0]] if bot != NEWCOMER[0] else sorted(set(now) - {bot}))
        for u, heard in got["heard"].items():
            assert heard["audio"] >= 25 and heard["video"] >= 10, (bot, u, heard)
    # No token, or a wrong one: Janus refuses the participant (VIDEOROOM_UNAUTHORIZED).
    assert r["no_token"].get("error_code") == 433, r["no_token"]
    assert r["bad_token"].get("error_code") == 433, r["bad_token"]
    # The switch to audio: over a second of audio after it settled, nobody sent or
    # received a video frame, and audio went on everywhere.
    for page in PAGES:
        a, b = r[f"{page}_audio_only"]
        assert [o["frames"] for o in a["outbound"]["video"]] == [o["frames"] for o in b["outbound"]["video"]]
        for u in set(now) - {page}:
            assert b["users"][u]["frames"] == a["users"][u]["frames"], (page, u, a, b)
            assert b["users"][u]["videoTracks"] == 0, (page, u, b)
            assert b["users"][u]["audio"] >= a["users"][u]["audio"] + 25, (page, u, a, b)
    for bot in r["bots_now"]:
        a, b = r[f"{bot}_audio_only"]
        assert a["sent_video"] == b["sent_video"], (bot, a, b)
        for u in set(now) - {bot}:
            assert a["video"][u] == b["video"][u], (bot, u, a, b)
            assert b["audio"][u] >= a["audio"][u] + 25, (bot, u, a, b)
            assert not b["receiving_video"][u], (bot, u, b)
        assert sorted(r[f"{bot}_video_gone"]) == sorted(set(now) - {bot}), r[f"{bot}_video_gone"]
    assert r["configure_failed"] == [] and r["page_errors"] == []
    assert r["page_logs"] == {"wa": [], "wb": []}, r["page_logs"]


# ---------------------------------------------------------------- inside the namespace


async def _bot_links(m: Any) -> dict[str, Any]:
    """What a Python member's media is made of now, and what it uploads: the number of
    outbound streams per kind that sent something, over all of its connections."""
    session = m.engine.media
    assert session is not None
    kinds = {p.remote: type(p).__name__ for p in session.peers.values()}
    sending = {"audio": 0, "video": 0}
    pcs = [p.pc for p in session.peers.values()]
    if session.publisher is not None:
        pcs.append(session.publisher.pc)
    for pc in pcs:
        for s in (await pc.getStats()).values():
            if s.type == "outbound-rtp" and s.packetsSent > 0:
                sending[s.kind] += 1
    return {
        "publisher": session.publisher is not None,
        "feeds": sorted(k for k, v in kinds.items() if v == "_SfuFeed"),
        "mesh": sorted(k for k, v in kinds.items() if v != "_SfuFeed"),
        "sending": sending,
    }


async def _sent_video(m: Any) -> int:
    session = m.engine.media
    assert session is not None and session.publisher is not None
    return sum(
        s.packetsSent
        for s in (await session.publisher.pc.getStats()).values()
        if s.type == "outbound-rtp" and s.kind == "video"
    )


async def decoded(m: Any, other: str, kind: str, n: int) -> int:
    """Wait until ``m`` decoded ``n`` frames of ``kind`` from ``other`` in all; the count."""
    from call_driver import WAIT

    return int(await m.probe.wait_frames(other, kind, max(0, n - m.probe.count(other, kind)), WAIT))


async def _drive() -> dict[str, Any]:
    from browser_driver import CHROMIUM_ARGS, HARNESS
    from call_driver import WAIT, LogWatch, Member
    from janus_peer import Peer
    from janusproc import SECRET, running
    from playwright.async_api import async_playwright

    from ringline import MediaType
    from ringline.media import TestPattern
    from ringline.server.sfu import room_id
    from serverproc import SDK_APP_ID, ServerProcess

    small = TestPattern(width=160, height=120, fps=10)
    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rl-sfu-five-") as tmp,
        running(Path(tmp) / "janus", preload_shim=True) as janus,
    ):
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        # Five members' media in one namespace on a small shared machine: a member's
        # process may stall for a few seconds; its session must outlive that.
        srv = ServerProcess(Path(tmp) / "srv", heartbeat_grace=10.0, extra_args=args).start()
        bots = {u: Member(srv, u, f, video=small) for u, f in BOTS.items()}
        bots[NEWCOMER[0]] = Member(srv, NEWCOMER[0], NEWCOMER[1], video=small)
        errors: list[str] = []
        logs = LogWatch()
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                pages = {}
                for name in PAGES:
                    page = await (await browser.new_context()).new_page()
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await page.add_init_script(FIVE_STATS)
                    await page.goto(srv.url + "/sdk/ringline.js")
                    await page.add_script_tag(content=HARNESS)
                    await page.evaluate(
                        "async (a) => { await window.rlSetup(a); }",
                        {
                            "sdkAppId": SDK_APP_ID,
                            "userId": name,
                            "userSig": srv.sig(name),
                            "video": {"width": 160, "height": 120, "frameRate": 10},
                        },
                    )
                    pages[name] = page

                async def web(name: str, predicate: str, arg: Any = None) -> Any:
                    """Wait in page ``name`` until ``predicate`` (over ``rl``, ``s`` =
                    the latest stats, ``a`` = arg) is truthy; its value."""
                    handle = await pages[name].wait_for_function(
                        "(a) => { const rl = window.rl, s = window.rlFive;"
                        f" return rl && s && ({predicate}); }}",
                        arg=arg,
                        timeout=WAIT * 1000,
                        polling=100,
                    )
                    return await handle.json_value()

                async def pages_receive(users: list[str], key: str) -> None:
                    """Each page receives audio and video from each of ``users`` (others
                    than itself) on SFU feeds; ``out[f"{page}_{key}"]``: its stats then."""
                    for name in PAGES:
                        want = [u for u in users if u != name]
                        out[f"{name}_{key}"] = await web(
                            name,
                            "s.live === a.length + 1 && s.kinds.length === a.length"
                            " && a.every((u) => s.users[u] && s.users[u].feed && s.users[u].audio > 25"
                            " && s.users[u].energy > 0 && s.users[u].frames > 10) && s",
                            want,
                        )

                async def bots_receive(names: list[str], users: list[str], key: str) -> None:
                    for u in names:
                        m = bots[u]
                        heard = {}
                        for other in users:
                            if other == u:
                                continue
                            try:
                                heard[other] = {
                                    "audio": await decoded(m, other, "audio", 25),
                                    "video": await decoded(m, other, "video", 10),
                                    "level": m.probe.max_level.get(other, 0.0),
                                }
                            except TimeoutError:
                                sent = {n: await pg.evaluate("window.rlFive") for n, pg in pages.items()}
                                sess = m.engine.media
                                if sess is not None and other in sess.peers:
                                    sent["inbound"] = [
                                        dict(vars(x))
                                        for x in (await sess.peers[other].pc.getStats()).values()
                                        if x.type == "inbound-rtp"
                                    ]
                                    sent["offer"] = [
                                        ln
                                        for ln in sess.peers[other].pc.remoteDescription.sdp.splitlines()
                                        if "rtpmap" in ln or "ssrc-group" in ln
                                    ]
                                raise AssertionError(
                                    f"{key}: {u} gets no media from {other}: {m.probe.frames}, "
                                    f"{m.engine.media!r}, {sent}"
                                ) from None
                        out[f"{u}_{key}"] = {**await _bot_links(m), "heard": heard}

                start = sorted([*PAGES, *BOTS])
                for u in BOTS:
                    await bots[u].login()
                cid = await bots["pa"].engine.calls([*PAGES, "pb", "pc"], MediaType.VIDEO)
                for u in ("pb", "pc"):
                    await bots[u].rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
                    await bots[u].engine.accept()
                await pages_receive(start, "start")
                await bots_receive(list(BOTS), start, "start")

                # pc leaves; pd joins.
                await bots[LEAVER].engine.hangup()
                now = sorted(set(start) - {LEAVER} | {NEWCOMER[0]})
                stay = [u for u in BOTS if u != LEAVER]
                for u in stay:
                    session = bots[u].engine.media
                    assert session is not None

                    def left(s: Any = session) -> bool:
                        return LEAVER not in s.peers

                    await bots[u].rec.wait_until(left, timeout=WAIT)
                await bots[NEWCOMER[0]].login()
                await bots["pa"].engine.invite_user([NEWCOMER[0]])
                await bots[NEWCOMER[0]].rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
                await bots[NEWCOMER[0]].engine.accept()
                await pages_receive(now, "after_join")
                await bots_receive(stay, [NEWCOMER[0]], "after_join")
                await bots_receive([NEWCOMER[0]], now, "after_join")
                out["bots_now"] = [*stay, NEWCOMER[0]]

                # wa's camera off, then on: wb gets its video again.
                await pages["wa"].evaluate("async () => { await window.rl.engine.closeCamera(); }")
                await pages["wa"].evaluate("async () => { await window.rl.engine.openCamera(); }")
                got = await web("wb", "s.users.wa && s.users.wa.frames", None)
                more = await web("wb", "s.users.wa && s.users.wa.frames >= a + 10 && s.users.wa.frames", got)
                out["wa_camera_back"] = {"wb": more - got}

                # No token, or a wrong one: refused by Janus itself.
                room = room_id(cid)
                stranger = await asyncio.to_thread(Peer, janus.url)
                out["no_token"] = await asyncio.to_thread(stranger.join, room, "mallory", None)
                out["bad_token"] = await asyncio.to_thread(stranger.join, room, "mallory", "not-a-token")
                await asyncio.to_thread(stranger.leave)

                # The call switches to audio.
                await bots["pa"].engine.switch_call_media_type(MediaType.AUDIO)
                for u in out["bots_now"]:
                    await bots[u].rec.wait_for(
                        "on_call_media_type_changed", new_call_media_type=MediaType.AUDIO, timeout=WAIT
                    )
                for name in PAGES:
                    await web(name, "rl.engine._call.mediaType === 1")

                async def audio_second() -> None:
                    """Wait until every member got 50 more audio packets or frames (1 s)
                    from every other one."""
                    for u in out["bots_now"]:
                        for other in now:
                            if other != u:
                                await bots[u].probe.wait_frames(other, "audio", 50, WAIT)
                    for name in PAGES:
                        marks = await web(name, "s.users")
                        await web(
                            name,
                            "Object.keys(a).every((u) => s.users[u] && s.users[u].audio >= a[u].audio + 50)",
                            marks,
                        )

                async def snapshot() -> None:
                    for name in PAGES:
                        out.setdefault(f"{name}_audio_only", []).append(await web(name, "s"))
                    for u in out["bots_now"]:
                        session = bots[u].engine.media
                        assert session is not None
                        others = [o for o in now if o != u]
                        out.setdefault(f"{u}_audio_only", []).append(
                            {
                                "sent_video": await _sent_video(bots[u]),
                                "video": {o: bots[u].probe.count(o, "video") for o in others},
                                "audio": {o: bots[u].probe.count(o, "audio") for o in others},
                                "receiving_video": {o: session.stats()[o].receiving_video for o in others},
                            }
                        )

                await audio_second()  # what was on its way when the call switched arrives
                await snapshot()
                await audio_second()
                await snapshot()
                for u in out["bots_now"]:
                    events = bots[u].rec.events_for(cid)
                    switched = [i for i, e in enumerate(events) if e.name == "on_call_media_type_changed"]
                    out[f"{u}_video_gone"] = [
                        e.kwargs["user_id"]
                        for e in events[switched[0] :]
                        if e.name == "on_user_video_available" and not e.kwargs["is_video_available"]
                    ]

                await bots["pa"].engine.hangup()
                await bots["pb"].engine.hangup()
                await bots[NEWCOMER[0]].engine.hangup()
                await pages["wa"].evaluate("async () => { await window.rl.engine.hangup(); }")
                await web("wb", "rl.events.some((e) => e.name === 'onCallEnd')")
                out["page_errors"] = errors
                out["page_logs"] = {
                    n: await pg.evaluate("window.rl.events.filter((e) => e.name === 'onError')")
                    for n, pg in pages.items()
                }
                out["configure_failed"] = logs.seen("video in the SFU")
                await browser.close()
        finally:
            logs.close()
            for m in bots.values():
                await m.engine.uninit()
            srv.kill()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_drive())))
