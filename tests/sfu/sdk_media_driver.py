"""Runs inside a loopback-only network namespace (tests/sfu/test_sfu_media.py): a real Janus
(loopback shim preloaded), ``ringline serve --sfu`` and three SDK engines made with
``media=MediaOptions(...)`` (tests/media/call_driver.py's members) in one audio call. When
``on_sfu`` comes, each engine's media closes the mesh, publishes once through the room and
receives the other two there; Janus is killed and started again mid-call, and they hear
each other again; a device that does not follow SFU rooms joins, and they hear each other
in the mesh again. Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from call_driver import TRIO, WAIT, Member, hears_all, trio_call
from janusproc import SECRET, running

from rawclient import Raw
from serverproc import ServerProcess

TMP = Path(tempfile.mkdtemp(prefix="rl-sfu-sdk-"))


async def main() -> dict[str, Any]:
    tmp = TMP
    with running(tmp / "janus", preload_shim=True) as janus:
        (tmp / "srv").mkdir()
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        srv = ServerProcess(tmp / "srv", extra_args=args).start()
        users = TRIO
        members = {u: Member(srv, u, f) for u, f in users.items()}
        out: dict[str, Any] = {}
        try:
            cid = await trio_call(members)
            await hears_all(members, out)
            for u, m in members.items():
                session = m.engine.media
                assert session is not None
                out[f"{u}_links"] = {
                    "publisher": session.publisher is not None,
                    "feeds": sorted(
                        p.remote for p in session.peers.values() if type(p).__name__ == "_SfuFeed"
                    ),
                    "mesh": sorted(p.remote for p in session.peers.values() if type(p).__name__ == "_Peer"),
                }
                out[f"{u}_observer_saw_sfu"] = [e.name for e in m.rec.events if e.name.startswith("on_sfu")]
            for u, m in members.items():  # more audio, now that only the SFU carries it
                for other in users:
                    if other != u:
                        out[f"{u}<-{other}"]["more_frames"] = await m.probe.wait_frames(
                            other, "audio", 50, WAIT
                        )
            # Janus dies and comes back: the server notices that Janus forgot its session,
            # makes the room again with new tokens, and every engine publishes again.
            assert janus.proc is not None
            publishers = {u: m.engine.media.publisher for u, m in members.items() if m.engine.media}
            killed = time.monotonic()
            janus.proc.kill()
            janus.proc.wait()
            janus.start()
            for u, m in members.items():
                for other in users:
                    if other != u:
                        out[f"{u}<-{other}"]["after_janus_restart"] = await m.probe.wait_frames(
                            other, "audio", 50, 2 * WAIT
                        )
            out["recovered_in_s"] = round(time.monotonic() - killed, 1)
            out["published_again"] = sorted(
                u
                for u, m in members.items()
                if m.engine.media and m.engine.media.publisher is not publishers[u]
            )
            # A device that does not follow SFU rooms joins (a bare client here, a browser in
            # real life): the call goes back to the mesh, and the engines hear each other there.
            dora = Raw(srv)
            try:
                await dora.login("dora")
                await members["alice"].engine.invite_user(["dora"])
                await dora.event("on_call_received", call_id=cid, timeout=WAIT)
                await dora.ok("accept", call_id=cid)
                for u, m in members.items():
                    for other in users:
                        if other != u:
                            out[f"{u}<-{other}"]["after_mesh_again"] = await m.probe.wait_frames(
                                other, "audio", 50, WAIT
                            )
                    session = m.engine.media
                    assert session is not None
                    out[f"{u}_links_mesh_again"] = {
                        "publisher": session.publisher is not None,
                        "mesh": sorted(
                            p.remote for p in session.peers.values() if type(p).__name__ == "_Peer"
                        ),
                        "connected": sorted(
                            p.remote for p in session.peers.values() if p.pc.connectionState == "connected"
                        ),
                    }
                await dora.ok("hangup", call_id=cid)
                for m in members.values():
                    await m.rec.wait_for("on_user_leave", user_id="dora", timeout=WAIT)
            finally:
                await dora.close()
            await members["carol"].engine.hangup()
            for u in ("alice", "bob"):
                await members[u].rec.wait_for("on_user_leave", user_id="carol", timeout=WAIT)
                other = "bob" if u == "alice" else "alice"
                await members[u].probe.wait_frames(other, "audio", 50, WAIT)
                session = members[u].engine.media
                assert session is not None
                out[f"{u}_peers_after_carol_left"] = sorted(session.stats())
            await members["alice"].engine.hangup()
            await members["bob"].rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
        finally:
            for m in members.values():
                await m.engine.uninit()
            srv.kill()
        return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    shutil.rmtree(TMP, ignore_errors=True)  # kept (Janus's and the server's logs) when it failed
