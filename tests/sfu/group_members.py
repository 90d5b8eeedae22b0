"""Some of the members of one big audio call, in a process of their own
(tests/sfu/group_driver.py starts two or more of these, so that no one process carries
every member's media).

    python tests/sfu/group_members.py --url URL --users m1:300,m4:600 --everyone 9 [--video]

Each user is an SDK engine made with ``media=`` (tests/media/call_driver.py's
:class:`Member`: a tone of the given frequency, a :class:`Probe` as its sink) that
accepts every call it receives (``--video``: the call is a video call, each member also
sending a 320×240 test pattern). Commands come one a line on stdin, answers go one JSON
object a line on stdout:

* (at start)  → ``{"ready": true}`` once every user logged in;
* ``call``    → the first user calls every other member (``--everyone`` names them);
  ``{"called": call_id}``;
* ``heard``   → once each user hears each of the others (frames, volume and quality
  events): ``{"heard": {user: {other: {frames, level, peak_hz}}}, "call_id"}``;
* ``report``  → ``{"report": {user: {frames: {other: n}, peak_hz: {other: Hz}, links}}}``
  once 50 more frames came from each other member (the last second's frequency);
* ``hangup``  → each user hangs up (the last one finds the call ended) and waits for
  its ``on_call_end``: ``{"hung_up": [users]}``;
* ``quit`` (or stdin closed) → the engines are closed and the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from call_driver import WAIT, Member

from ringline import CallObserver, MediaType
from ringline.core.errors import ErrorCode, RemoteCallError
from ringline.core.usersig import gen_user_sig
from serverproc import SDK_APP_ID, SECRET

#: How long a member may take to hear everyone (a loaded 2-core machine, 9 members).
HEAR_WAIT = 120.0


class At:
    """The server's address and the users' signatures (what :class:`Member` needs)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def sig(self, user_id: str, expire: int = 86400) -> str:
        return gen_user_sig(SDK_APP_ID, SECRET, user_id, expire, now=int(time.time()))


class Accept(CallObserver):
    def __init__(self, member: Member) -> None:
        self.member = member

    async def on_call_received(self, *args: Any) -> None:
        await self.member.engine.accept()


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def group_users(n: int) -> dict[str, float]:
    """``n`` members ``m1..mN``, each with a tone of its own: 300, 400, … Hz."""
    return {f"m{i + 1}": 300.0 + 100.0 * i for i in range(n)}


async def links(m: Member) -> dict[str, Any]:
    """The engine's connections: its SFU publisher, the members it receives through the
    SFU, its mesh peers, and how many outbound audio and video streams carried packets
    over all its connections."""
    session = m.engine.media
    assert session is not None
    pcs = [p.pc for p in session.peers.values()]
    if session.publisher is not None:
        pcs.append(session.publisher.pc)
    outbound = {"audio": 0, "video": 0}
    for pc in pcs:
        for s in (await pc.getStats()).values():
            if getattr(s, "type", "") == "outbound-rtp" and getattr(s, "kind", "") in outbound:
                outbound[s.kind] += int(getattr(s, "packetsSent", 0) > 0)
    return {
        "publisher": session.publisher is not None,
        "feeds": sorted(p.remote for p in session.peers.values() if type(p).__name__ == "_SfuFeed"),
        "mesh": sorted(p.remote for p in session.peers.values() if type(p).__name__ == "_Peer"),
        "outbound_audio": outbound["audio"],
        "outbound_video": outbound["video"],
    }


def missing(members: dict[str, Member], others: Callable[[str], list[str]]) -> dict[str, Any]:
    """Who does not hear whom (too few frames), and each such member's connections."""
    out: dict[str, Any] = {}
    for u, m in members.items():
        deaf = [o for o in others(u) if m.probe.count(o, "audio") < 25]
        if deaf and m.engine.media is not None:
            out[u] = {"deaf_to": deaf, "peers": [repr(p) for p in m.engine.media.peers.values()]}
            publisher = m.engine.media.publisher
            out[u]["publisher"] = publisher.pc.connectionState if publisher is not None else None
    return out


async def main(url: str, users: dict[str, float], everyone: list[str], video: bool) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # the driver keeps it in a log
    logging.getLogger("ringline.media").setLevel(logging.INFO)
    at = At(url)
    members = {u: Member(at, u, f) for u, f in users.items()}
    for m in members.values():
        m.engine.add_observer(Accept(m))
        await m.login()
    say({"ready": True})
    loop = asyncio.get_running_loop()
    cid = ""

    def others(u: str) -> list[str]:
        return [o for o in everyone if o != u]

    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line in ("", "quit"):
                return
            if line == "call":
                first = next(iter(members.values()))
                kind = MediaType.VIDEO if video else MediaType.AUDIO
                cid = await first.engine.calls(others(first.user), kind)
                say({"called": cid})
            elif line == "heard":

                async def hears(m: Member) -> dict[str, Any]:
                    got: dict[str, Any] = {}
                    for o in others(m.user):
                        await m.hears(o)
                        got[o] = {
                            "frames": m.probe.count(o, "audio"),
                            "level": round(m.probe.max_level.get(o, 0.0), 3),
                            "peak_hz": round(m.probe.peak_hz(o)),
                        }
                    return got

                try:
                    async with asyncio.timeout(HEAR_WAIT):
                        heard = await asyncio.gather(*(hears(m) for m in members.values()))
                except TimeoutError:
                    raise SystemExit(f"not heard in time: {missing(members, others)}") from None
                cid = cid or next(iter(members.values())).engine.call_id or ""
                say({"heard": dict(zip(members, heard, strict=True)), "call_id": cid})
            elif line == "report":

                async def report(m: Member) -> dict[str, Any]:
                    frames, peak = {}, {}
                    for o in others(m.user):
                        frames[o] = await m.probe.wait_frames(o, "audio", 50, WAIT)
                        peak[o] = round(m.probe.peak_hz(o))
                    return {"frames": frames, "peak_hz": peak, "links": await links(m)}

                reports = await asyncio.gather(*(report(m) for m in members.values()))
                say({"report": dict(zip(members, reports, strict=True))})
            elif line == "hangup":
                for m in members.values():
                    try:
                        if not any(e.name == "on_call_end" for e in m.rec.events_for(cid)):
                            await m.engine.hangup()
                    except RemoteCallError as e:  # the last one: the call ended as the others left
                        if e.code != ErrorCode.CALL_NOT_FOUND:
                            raise
                    await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                say({"hung_up": list(members)})
            else:
                raise SystemExit(f"group_members.py: unknown command {line!r}")
    finally:
        for m in members.values():
            await m.engine.uninit()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--users", required=True, help="user:frequency,… (this process's members)")
    p.add_argument("--everyone", type=int, required=True, help="members in the call (m1..mN)")
    p.add_argument("--video", action="store_true", help="a video call (320x240 test patterns)")
    a = p.parse_args()
    mine = {u: float(f) for u, f in (x.split(":") for x in a.users.split(","))}
    asyncio.run(main(a.url, mine, list(group_users(a.everyone)), a.video))
