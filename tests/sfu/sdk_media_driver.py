"""Runs inside a loopback-only network namespace (tests/sfu/test_sfu_media.py): a real Janus
(loopback shim preloaded), ``ringline serve --sfu`` and three SDK engines made with
``media=MediaOptions(...)`` (tests/media/call_driver.py's members) in one audio call. When
``on_sfu`` comes, each engine's media closes the mesh, publishes once through the room and
receives the other two there; Janus is killed and started again mid-call, and they hear
each other again; a device that does not follow SFU rooms joins, and they hear each other
in the mesh again. Prints one JSON line.

``sdk_media_driver.py failover``: two Janus and ``ringline serve --sfu A --sfu B``; the
Janus holding the call's room is killed (SIGKILL, not started again): the server makes the
room on the other one, every engine publishes again there and hears the others, and the
call's record is intact."""

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
from janusproc import SECRET, JanusProcess, running

from rawclient import Raw
from restclient import admin_post, fail_of
from ringline.server.sfu import JanusClient, room_id
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


async def _holders(js: dict[str, JanusProcess], room: str) -> list[str]:
    """Which of the (running) Janus ``js`` have ``room``."""
    got = []
    for name, j in js.items():
        jc = JanusClient(j.url, SECRET)
        try:
            if await jc.exists(room):
                got.append(name)
        finally:
            await jc.close()
    return got


async def failover() -> dict[str, Any]:
    js = {
        "A": JanusProcess(TMP / "A", preload_shim=True, rtp_ports=(20000, 20199)),
        "B": JanusProcess(TMP / "B", preload_shim=True, rtp_ports=(20200, 20399)),
    }
    args = ["--sfu-secret", SECRET, "--log-level", "INFO"]
    for j in js.values():
        args += ["--sfu", f"janus={j.url}"]
    (TMP / "srv").mkdir()
    srv = ServerProcess(TMP / "srv", extra_args=args)
    members: dict[str, Member] = {}
    out: dict[str, Any] = {}
    try:
        for j in js.values():
            j.start()
        srv.start()
        members = {u: Member(srv, u, f) for u, f in TRIO.items()}
        cid = await trio_call(members)
        await hears_all(members, out)
        for m in members.values():  # through the room now (volume events come steadily)
            media = m.engine.media
            assert media is not None
            await m.rec.wait_until(lambda: media.publisher is not None, timeout=WAIT)  # noqa: B023
        holders = await _holders(js, room_id(cid))
        out["room_on_before"] = holders
        publishers = {u: m.engine.media.publisher for u, m in members.items() if m.engine.media}
        dead = js[holders[0]]
        assert dead.proc is not None
        killed = time.monotonic()
        dead.proc.kill()  # SIGKILL, and it stays dead
        dead.proc.wait()
        for u, m in members.items():
            for other in TRIO:
                if other != u:
                    out[f"{u}<-{other}"]["after_janus_death"] = await m.probe.wait_frames(
                        other, "audio", 50, 2 * WAIT
                    )
        out["recovered_in_s"] = round(time.monotonic() - killed, 1)
        out["published_again"] = sorted(
            u for u, m in members.items() if m.engine.media and m.engine.media.publisher is not publishers[u]
        )
        out["room_on_after"] = await _holders({n: j for n, j in js.items() if j is not dead}, room_id(cid))
        out["killed"] = [n for n, j in js.items() if j is dead]
        await members["carol"].engine.hangup()
        await members["alice"].rec.wait_for("on_user_leave", user_id="carol", timeout=WAIT)
        await members["alice"].engine.hangup()
        await members["bob"].rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
        status, answer = await admin_post(
            srv, "/v4/call_record_http_srv/get_record_by_callid", json.dumps({"CallId": cid})
        )
        assert status == 200 and fail_of("v4", answer) == (0, ""), answer
        out["record"] = answer["Response"]["CallRecord"]
        out["begins"] = {
            u: [e.name for e in m.rec.events_for(cid)].count("on_call_begin") for u, m in members.items()
        }
    finally:
        for m in members.values():
            await m.engine.uninit()
        srv.kill()
        for j in js.values():
            j.stop()
    return out


if __name__ == "__main__":
    scenario = sys.argv[1] if len(sys.argv) > 1 else ""
    print(json.dumps(asyncio.run(failover() if scenario == "failover" else main())))
    shutil.rmtree(TMP, ignore_errors=True)  # kept (Janus's and the server's logs) when it failed
