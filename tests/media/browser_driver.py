"""A Python member and a browser member (Debian's Chromium, the browser engine served
at /sdk/ringline.js) in one call.

    python tests/media/browser_driver.py MODE      (inside a loopback-only netns)

The Python engine calls the browser user (VIDEO); the page answers. The ids are
chosen so that the Python side (``python-offers``) or the browser side
(``browser-offers``) is the offerer (docs/media.md §2); then the call switches to
audio. ``mixed-mesh``: two Python members and the browser in one video group call.
``relay TURN_URL [TURN_SECRET]``: a 1v1 audio call through a server with
``--ice-transport-policy relay`` and that TURN server (tests/media/turn.py; with
TURN_SECRET, as ``--turn-url``/``--turn-secret``), reporting both sides' selected
candidate pairs. ``python-offers-restart`` / ``browser-offers-restart``: the Python member's connection
dies mid-call and media flows again both ways on the same call (the Python offerer
starts over with a brand new connection; a Python answerer asks the browser for a new
offer and answers it from a brand new connection).
Prints one JSON object with what each side measured.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from call_driver import WAIT, Member
from faults import break_ice
from playwright.async_api import async_playwright

from ringline import MediaType
from serverproc import SDK_APP_ID, ServerProcess

CHROMIUM_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-gpu",
]

# Runs in the page: an engine that answers every call and keeps its events and the
# inbound statistics of each remote user in window.rl. rlSetup's optional ``video``: the
# camera constraints (320x240 at 15 fps by default).
HARNESS = """
window.rlSetup = async ({ sdkAppId, userId, userSig, video }) => {
  const m = await import("/sdk/ringline.js");
  const engine = new m.CallEngine({
    serverUrl: location.origin,
    video: video || { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15 } },
  });
  const rl = { engine, events: [], stats: {} };
  window.rl = rl;
  for (const name of Object.values(m.TUICallEvent)) {
    engine.on(name, (p) => rl.events.push({ name, p: JSON.parse(JSON.stringify(p || {})) }));
  }
  engine.on(m.TUICallEvent.ON_CALL_RECEIVED, () => engine.accept());
  setInterval(async () => {
    for (const u of engine.remoteUsers) {
      const pc = engine.getPeerConnection(u);
      if (!pc) continue;
      const s = { framesDecoded: 0, frameWidth: 0, audioEnergy: 0, audioPackets: 0, codecs: [] };
      for (const r of (await pc.getStats()).values()) {
        if (r.type === "inbound-rtp" && r.kind === "video") {
          s.framesDecoded = r.framesDecoded || 0;
          s.frameWidth = r.frameWidth || 0;
        }
        if (r.type === "inbound-rtp" && r.kind === "audio") {
          s.audioEnergy = r.totalAudioEnergy || 0;
          s.audioPackets = r.packetsReceived || 0;
        }
        if (r.type === "codec") s.codecs.push(r.mimeType);
      }
      s.transceivers = pc.getTransceivers().map((t) => t.receiver.track.kind);
      const video = pc.getTransceivers().find((t) => t.receiver.track.kind === "video");
      s.videoDirection = video ? video.currentDirection : null;
      rl.stats[u] = s;
    }
  }, 250);
  await engine.init({ sdkAppId, userId, userSig });
};
"""


async def mixed_mesh() -> dict[str, Any]:
    """Two Python members and one browser member in a video group call."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rl-interop-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv").start()
        a, c = Member(srv, "apy", 440.0), Member(srv, "cpy", 660.0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page()
                await page.goto(srv.url + "/sdk/ringline.js")
                await page.add_script_tag(content=HARNESS)
                await page.evaluate(
                    "async (a) => { await window.rlSetup(a); }",
                    {"sdkAppId": SDK_APP_ID, "userId": "bweb", "userSig": srv.sig("bweb")},
                )
                await a.login()
                await c.login()
                cid = await a.engine.calls(["bweb", "cpy"], MediaType.VIDEO)
                await c.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
                await c.engine.accept()
                for m, others in ((a, ("bweb", "cpy")), (c, ("apy", "bweb"))):
                    for o in others:
                        out[f"{m.user}<-{o}"] = await m.hears(o)
                        out[f"{m.user}<-{o}"]["video_frames"] = await m.probe.wait_frames(
                            o, "video", 10, WAIT
                        )
                for o in ("apy", "cpy"):
                    handle = await page.wait_for_function(
                        "(u) => { const s = window.rl.stats[u];"
                        " return s && s.framesDecoded > 10 && s.audioEnergy > 0 && s; }",
                        arg=o,
                        timeout=WAIT * 1000,
                        polling=100,
                    )
                    out[f"bweb<-{o}"] = await handle.json_value()
                await a.engine.hangup()
                await c.engine.hangup()
                for m in (a, c):
                    await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                await browser.close()
        finally:
            for m in (a, c):
                await m.engine.uninit()
            srv.stop()
    return out


async def restart(py_id: str) -> dict[str, Any]:
    """A 1v1 video call whose Python side loses its connection to the browser."""
    web_id = "bweb"
    out: dict[str, Any] = {"python": py_id}
    with tempfile.TemporaryDirectory(prefix="rl-interop-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv").start()
        py = Member(srv, py_id, 440.0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(srv.url + "/sdk/ringline.js")
                await page.add_script_tag(content=HARNESS)
                await page.evaluate(
                    "async (a) => { await window.rlSetup(a); }",
                    {"sdkAppId": SDK_APP_ID, "userId": web_id, "userSig": srv.sig(web_id)},
                )

                async def decoded_more_than(frames: int) -> Any:
                    handle = await page.wait_for_function(
                        "([u, n]) => { const s = window.rl.stats[u]; return s && s.framesDecoded > n && s; }",
                        arg=[py_id, frames],
                        timeout=WAIT * 1000,
                        polling=100,
                    )
                    return await handle.json_value()

                await py.login()
                cid = await py.engine.calls([web_id], MediaType.VIDEO)
                await py.rec.wait_for("on_call_begin", call_id=cid, timeout=WAIT)
                before = await py.probe.wait_frames(web_id, "audio", 50, WAIT)
                seen = await decoded_more_than(10)
                session = py.engine.media
                assert session is not None
                out["python_is_offerer"] = session.stats()[web_id].offerer
                out["browser_ufrag_before"] = await page.evaluate(LOCAL_UFRAG, py_id)
                await break_ice(session.peers[web_id].pc)
                # 1 s of new audio and new video both ways: only a new connection brings it.
                out["python_new_audio"] = await py.probe.wait_frames(web_id, "audio", 50, WAIT) - before
                await py.probe.wait_frames(web_id, "video", 10, WAIT)
                out["browser_after"] = await decoded_more_than(seen["framesDecoded"] + 30)
                out["browser_ufrag_after"] = await page.evaluate(LOCAL_UFRAG, py_id)
                stats = session.stats()[web_id]
                out["python_restarts"] = stats.restarts
                out["python_state"] = stats.connection_state
                out["call_id_kept"] = py.engine.call_id == cid
                await py.engine.hangup()
                await py.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                out["page_errors"] = errors
                await browser.close()
        finally:
            await py.engine.uninit()
            srv.stop()
    return out


# Runs in the page: the ICE username fragment of the browser's connection to user u
# (new ICE credentials = a restarted or new ICE session).
LOCAL_UFRAG = """(u) => {
  const pc = window.rl.engine.getPeerConnection(u);
  const m = pc && pc.localDescription && pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/);
  return m ? m[1] : null;
}"""

# Runs in the page: the browser's selected candidate pair to user u and its candidate types.
SELECTED_PAIR = """async (u) => {
  const pc = window.rl.engine.getPeerConnection(u);
  if (!pc) return false;
  const stats = [...(await pc.getStats()).values()];
  const byId = new Map(stats.map((r) => [r.id, r]));
  const transport = stats.find((r) => r.type === "transport" && r.selectedCandidatePairId);
  const pair = transport
    ? byId.get(transport.selectedCandidatePairId)
    : stats.find((r) => r.type === "candidate-pair" && r.nominated && r.state === "succeeded");
  if (!pair || pair.state !== "succeeded") return false;
  const local = byId.get(pair.localCandidateId), remote = byId.get(pair.remoteCandidateId);
  return {
    nominated: !!pair.nominated,
    local: local.candidateType, remote: remote.candidateType,
    localPort: local.port, relayProtocol: local.relayProtocol || null,
    bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
    localTypes: [...new Set(stats.filter((r) => r.type === "local-candidate").map((r) => r.candidateType))],
    policy: window.rl.engine.iceTransportPolicy,
    configured: pc.getConfiguration().iceTransportPolicy,
  };
}"""


async def relay(turn_url: str, turn_secret: str = "") -> dict[str, Any]:
    """A 1v1 audio call between Python and the browser, media only through TURN: with the
    static credential ``ringline``/``secret``, or given ``turn_secret``, with the per-user
    credentials of ``--turn-url``/``--turn-secret``."""
    from relay_driver import ice_facts

    py_id, web_id = "apy", "bweb"
    out: dict[str, Any] = {}
    flags = ["--ice-server", turn_url, "--ice-username", "ringline", "--ice-credential", "secret"]
    if turn_secret:
        flags = ["--turn-url", turn_url, "--turn-secret", turn_secret]
    with tempfile.TemporaryDirectory(prefix="rl-interop-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv", extra_args=[*flags, "--ice-transport-policy", "relay"]).start()
        py = Member(srv, py_id, 440.0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(srv.url + "/sdk/ringline.js")
                await page.add_script_tag(content=HARNESS)
                await page.evaluate(
                    "async (a) => { await window.rlSetup(a); }",
                    {"sdkAppId": SDK_APP_ID, "userId": web_id, "userSig": srv.sig(web_id)},
                )
                await py.login()
                cid = await py.engine.calls([web_id], MediaType.AUDIO)
                await py.rec.wait_for("on_call_begin", call_id=cid, timeout=WAIT)
                out["python_hears_browser"] = await py.hears(web_id)
                handle = await page.wait_for_function(
                    "(u) => { const s = window.rl.stats[u];"
                    " return s && s.audioPackets > 20 && s.audioEnergy > 0 && s; }",
                    arg=py_id,
                    timeout=WAIT * 1000,
                    polling=100,
                )
                out["browser_audio"] = await handle.json_value()
                out["browser_pair"] = await page.evaluate(SELECTED_PAIR, py_id)
                out["python"] = ice_facts(py, web_id)
                await py.engine.hangup()
                await py.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                out["page_errors"] = errors
                await browser.close()
        finally:
            await py.engine.uninit()
            srv.stop()
    return out


async def main(mode: str) -> dict[str, Any]:
    if mode == "relay":
        return await relay(*sys.argv[2:4])
    if mode == "mixed-mesh":
        return await mixed_mesh()
    if mode.endswith("-restart"):
        return await restart("apy" if mode == "python-offers-restart" else "zpy")
    py_id, web_id = ("apy", "bweb") if mode == "python-offers" else ("zpy", "bweb")
    out: dict[str, Any] = {"python": py_id, "browser": web_id}
    with tempfile.TemporaryDirectory(prefix="rl-interop-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv").start()
        py = Member(srv, py_id, 440.0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(srv.url + "/sdk/ringline.js")
                await page.add_script_tag(content=HARNESS)
                await page.evaluate(
                    "async (a) => { await window.rlSetup(a); }",
                    {"sdkAppId": SDK_APP_ID, "userId": web_id, "userSig": srv.sig(web_id)},
                )

                async def web(predicate: str) -> Any:
                    handle = await page.wait_for_function(
                        f"(u) => {{ const rl = window.rl; return ({predicate}); }}",
                        arg=py_id,
                        timeout=WAIT * 1000,
                        polling=100,
                    )
                    return await handle.json_value()

                await py.login()
                cid = await py.engine.calls([web_id], MediaType.VIDEO)
                await py.rec.wait_for("on_call_begin", call_id=cid, timeout=WAIT)
                # Python side: the browser's fake microphone and camera arrive and decode.
                out["python_hears_browser"] = await py.hears(web_id)
                out["python_video_frames"] = await py.probe.wait_frames(web_id, "video", 10, WAIT)
                out["python_video_size"] = py.probe.sizes.get(web_id)
                session = py.engine.media
                assert session is not None
                out["python_is_offerer"] = session.stats()[web_id].offerer
                # Browser side: the Python tone and test pattern arrive and decode.
                out["browser_frames"] = await web(
                    "rl.stats[u] && rl.stats[u].framesDecoded > 10 && rl.stats[u]"
                )
                out["browser_audio"] = await web(
                    "rl.stats[u] && rl.stats[u].audioPackets > 20"
                    " && rl.stats[u].audioEnergy > 0 && rl.stats[u]"
                )
                out["browser_volume"] = await web(
                    "(rl.events.filter((e) => e.name === 'onUserVoiceVolume')"
                    ".flatMap((e) => e.p.volumeMap)"
                    ".find((v) => v.userId === u && v.audioVolume > 0) || false)"
                )
                out["browser_quality"] = await web(
                    "(rl.events.filter((e) => e.name === 'onUserNetworkQualityChanged')"
                    ".flatMap((e) => e.p.networkQualityList)"
                    ".find((q) => q.userId === u && q.quality > 0) || false)"
                )
                # Switch to audio: video stops both ways, audio goes on.
                await py.engine.switch_call_media_type(MediaType.AUDIO)
                await py.rec.wait_for(
                    "on_user_video_available", user_id=web_id, is_video_available=False, timeout=WAIT
                )
                await py.rec.wait_until(lambda: not session.stats()[web_id].receiving_video, timeout=WAIT)
                await py.probe.wait_frames(web_id, "audio", 25, WAIT)
                packets = out["browser_audio"]["audioPackets"]
                out["browser_after_switch"] = await web(
                    f"rl.stats[u] && rl.stats[u].videoDirection === 'inactive'"
                    f" && rl.stats[u].audioPackets > {packets} + 25 && rl.stats[u]"
                )
                out["python_receiving_video_after_switch"] = session.stats()[web_id].receiving_video
                await py.engine.hangup()
                await py.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                out["browser_end"] = await web("rl.events.find((e) => e.name === 'onCallEnd') || false")
                out["page_errors"] = errors
                await browser.close()
        finally:
            await py.engine.uninit()
            srv.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
