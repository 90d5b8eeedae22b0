"""The browser engine through Janus: one Chromium page (the browser engine served at
/sdk/ringline.js) and two Python SDK engines with media in one 3-member audio call, with
a real Janus (loopback shim preloaded) and ``ringline serve --sfu``, all inside a
loopback-only network namespace. On ``on_sfu`` the page leaves the mesh, publishes once
and receives each Python member on a connection of its own; each Python member hears the
page through the room; when a client that does not follow SFU rooms joins, all go back
to the mesh and hear each other there; when one Python member hangs up, the page drops
its connection and goes on hearing the other.

The test runs this file again as a script inside the namespace (``python
tests/sfu/test_sfu_browser.py``), which prints one JSON object of what each side saw.
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

from needs import missing

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
pytestmark = pytest.mark.timeout(240)

WEB = "bweb"
BOTS = {"apy": 300.0, "cpy": 500.0}

# Runs in the page, besides the interop harness: every 250 ms, for each remote user, what
# its current connection receives (and whether it is an SFU feed), and over every live
# RTCPeerConnection of the page, the outbound audio streams (this device's uploads).
SFU_STATS = """
window.rlPcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  window.rlPcs.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
window.rlSfu = { users: {}, outbound: [], live: 0 };
setInterval(async () => {
  const rl = window.rl;
  if (!rl) return;
  const users = {};
  for (const u of rl.engine.remoteUsers) {
    const pc = rl.engine.getPeerConnection(u);
    if (!pc || pc.connectionState === "closed") continue;
    const peer = rl.engine._mesh.peers.get(u);
    const s = { feed: !!peer && peer.constructor.name === "SfuFeed", packets: 0, bytes: 0, energy: 0,
                directions: pc.getTransceivers().map((t) => t.currentDirection) };
    for (const r of (await pc.getStats()).values()) {
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        s.packets += r.packetsReceived || 0;
        s.bytes += r.bytesReceived || 0;
        s.energy += r.totalAudioEnergy || 0;
      }
    }
    users[u] = s;
  }
  const outbound = [];
  let live = 0;
  for (const pc of window.rlPcs) {
    if (pc.connectionState === "closed" || pc.signalingState === "closed") continue;
    live += 1;
    for (const r of (await pc.getStats()).values()) {
      if (r.type !== "outbound-rtp" || r.kind !== "audio") continue;
      outbound.push({ packets: r.packetsSent || 0, bytes: r.bytesSent || 0 });
    }
  }
  window.rlSfu = { users, outbound, live };
}, 250);
"""


def _missing_browser() -> str | None:
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed (./scripts/test installs it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


def test_browser_and_two_python_members_hear_each_other_through_janus() -> None:
    reason = _missing_browser()
    if reason:
        missing(reason)
    with loopback_netns() as ns:
        r = run_in(ns, [str(Path(__file__).resolve())], timeout=200)
    # The page: one publishing connection and one receiving connection per Python member,
    # no mesh connection left, exactly one audio upload.
    assert r["web_links"] == {"publisher": True, "feeds": sorted(BOTS), "mesh": []}, r["web_links"]
    assert len(r["web_outbound"]) == 1 and r["web_outbound"][0]["packets"] > 0, r["web_outbound"]
    assert r["web_live_connections"] == 3
    for bot in BOTS:
        first, later = r[f"web<-{bot}"]
        assert first["feed"] and later["feed"], (bot, first, later)
        assert set(later["directions"]) == {"recvonly"}, (bot, later)
        assert later["packets"] >= first["packets"] + 50, (bot, first, later)
        assert later["bytes"] > first["bytes"], (bot, first, later)
        assert later["energy"] > 0, (bot, later)
    # Each Python member: through the room only, and it hears the page there.
    for bot in BOTS:
        assert r[f"{bot}_links"] == {"publisher": True, "feeds": sorted({WEB, *BOTS} - {bot}), "mesh": []}
        heard = r[f"{bot}<-web"]
        assert heard["sfu_frames"] >= 50 and heard["level"] > 0 and heard["max_volume"] > 0, (bot, heard)
    # cpy hangs up: the page drops its feed and goes on hearing apy.
    # Back to the mesh when a client that does not follow rooms joined.
    for bot in BOTS:
        assert not r[f"web<-{bot}_mesh_again"]["feed"], r[f"web<-{bot}_mesh_again"]
        assert r[f"{bot}_mesh_again"] == {"publisher": False, "kinds": ["_Peer"]}, r[f"{bot}_mesh_again"]
        assert r[f"{bot}<-web_mesh_again"] >= 50
    assert r["web_after_cpy_left"]["users"] == ["apy"], r["web_after_cpy_left"]
    assert r["web_after_cpy_left"]["more_packets"] >= 50
    assert r["page_errors"] == []


# ---------------------------------------------------------------- inside the namespace


async def _drive() -> dict[str, Any]:
    from browser_driver import CHROMIUM_ARGS, HARNESS
    from call_driver import WAIT, Member
    from janusproc import SECRET, running
    from playwright.async_api import async_playwright

    from rawclient import Raw
    from ringline import MediaType
    from serverproc import SDK_APP_ID, ServerProcess

    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rl-sfu-web-") as tmp,
        running(Path(tmp) / "janus", preload_shim=True) as janus,
    ):
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        srv = ServerProcess(Path(tmp) / "srv", extra_args=args).start()
        bots = {u: Member(srv, u, f) for u, f in BOTS.items()}
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.add_init_script(SFU_STATS)
                await page.goto(srv.url + "/sdk/ringline.js")
                await page.add_script_tag(content=HARNESS)
                await page.evaluate(
                    "async (a) => { await window.rlSetup(a); }",
                    {"sdkAppId": SDK_APP_ID, "userId": WEB, "userSig": srv.sig(WEB)},
                )

                async def web(predicate: str, arg: Any = None) -> Any:
                    handle = await page.wait_for_function(
                        "(a) => { const rl = window.rl, s = window.rlSfu;"
                        f" return rl && s && ({predicate}); }}",
                        arg=arg,
                        timeout=WAIT * 1000,
                        polling=100,
                    )
                    return await handle.json_value()

                for m in bots.values():
                    await m.login()
                cid = await bots["apy"].engine.calls([WEB, "cpy"], MediaType.AUDIO)
                await bots["cpy"].rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
                await bots["cpy"].engine.accept()

                # The page: in the room (a publisher, a feed per member, the mesh closed).
                out["web_links"] = await web(
                    "rl.engine._mesh.publisher && rl.engine._mesh.peers.size === 2"
                    " && [...rl.engine._mesh.peers.values()].every((p) => p.constructor.name === 'SfuFeed')"
                    " && { publisher: true, feeds: [...rl.engine._mesh.peers.keys()].sort(),"
                    " mesh: [...rl.engine._mesh.peers.values()]"
                    ".filter((p) => p.constructor.name !== 'SfuFeed').map((p) => p.userId) }"
                )
                for bot in BOTS:
                    first = await web(
                        "s.users[a] && s.users[a].feed && s.users[a].packets > 25 && s.users[a]", bot
                    )
                    later = await web(
                        "s.users[a[0]] && s.users[a[0]].packets >= a[1].packets + 50 && s.users[a[0]]",
                        [bot, first],
                    )
                    out[f"web<-{bot}"] = [first, later]
                sfu = await web(
                    "s.live === 3 && s.outbound.length >= 1 && s.outbound.every((o) => o.packets > 0) && s"
                )
                out["web_outbound"], out["web_live_connections"] = sfu["outbound"], sfu["live"]

                # Each Python member: in the room, hearing the page through it.
                for u, m in bots.items():
                    session = m.engine.media
                    assert session is not None

                    def in_room(s: Any = session) -> bool:
                        names = {type(peer).__name__ for peer in s.peers.values()}
                        return s.publisher is not None and names == {"_SfuFeed"} and len(s.peers) == 2

                    await m.rec.wait_until(in_room, timeout=WAIT)
                    kinds = {p.remote: type(p).__name__ for p in session.peers.values()}
                    out[f"{u}_links"] = {
                        "publisher": session.publisher is not None,
                        "feeds": sorted(k for k, v in kinds.items() if v == "_SfuFeed"),
                        "mesh": sorted(k for k, v in kinds.items() if v == "_Peer"),
                    }
                    before = m.probe.count(WEB, "audio")
                    after = await m.probe.wait_frames(WEB, "audio", 50, WAIT)
                    heard = await m.hears(WEB)
                    out[f"{u}<-web"] = {"sfu_frames": after - before, **heard}

                # A client that does not follow SFU rooms joins: the room goes, and the page
                # and the Python members go back to the mesh and hear each other there.
                dora = Raw(srv)
                try:
                    await dora.login("dora")
                    await bots["apy"].engine.invite_user(["dora"])
                    await dora.event("on_call_received", call_id=cid, timeout=WAIT)
                    await dora.ok("accept", call_id=cid)
                    meshed = await web(
                        "!rl.engine._mesh.sfu && !rl.engine._mesh.publisher"
                        " && ['apy', 'cpy'].every((u) => s.users[u] && !s.users[u].feed"
                        " && s.users[u].packets > 25)"
                        " && s.users"
                    )
                    for bot in BOTS:
                        out[f"web<-{bot}_mesh_again"] = await web(
                            "s.users[a[0]] && !s.users[a[0]].feed && s.users[a[0]].packets >= a[1] + 50"
                            " && s.users[a[0]]",
                            [bot, meshed[bot]["packets"]],
                        )
                    for u, m in bots.items():
                        session = m.engine.media
                        assert session is not None
                        before = m.probe.count(WEB, "audio")
                        after = await m.probe.wait_frames(WEB, "audio", 50, WAIT)
                        mesh_kinds = sorted({type(peer).__name__ for peer in session.peers.values()})
                        published = session.publisher is not None
                        out[f"{u}_mesh_again"] = {"publisher": published, "kinds": mesh_kinds}
                        out[f"{u}<-web_mesh_again"] = after - before
                    await dora.ok("hangup", call_id=cid)
                    await web("!rl.engine.getPeerConnection('dora')")
                finally:
                    await dora.close()

                # cpy hangs up: the page drops its feed and goes on hearing apy.
                await bots["cpy"].engine.hangup()
                left = await web("!s.users.cpy && !rl.engine.getPeerConnection('cpy') && s.users.apy")
                more = await web(
                    "s.users.apy && s.users.apy.packets >= a + 50 && s.users.apy", left["packets"]
                )
                out["web_after_cpy_left"] = {
                    "users": await page.evaluate("Object.keys(window.rlSfu.users)"),
                    "more_packets": more["packets"] - left["packets"],
                }
                await bots["apy"].engine.hangup()
                await web("rl.events.some((e) => e.name === 'onCallEnd')")
                out["page_errors"] = errors
                await browser.close()
        finally:
            for m in bots.values():
                await m.engine.uninit()
            srv.kill()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_drive())))
