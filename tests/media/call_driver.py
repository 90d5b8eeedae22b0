"""Python members calling through a real Ringline server, with real media.

    python tests/media/call_driver.py SCENARIO     (inside a loopback-only netns)

Starts ``ringline serve`` (no ICE servers: host candidates only), runs the scenario
with SDK engines made with ``media=MediaOptions(...)``, and prints one JSON object
of what each member saw. Scenarios: ``video-switch`` (1v1 video call, then audio),
``mesh3`` (a group call of three).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from probe import Probe

from ringline import CallEngine, MediaType
from ringline.media import MediaOptions, TestPattern, TestTone
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess

WAIT = 30.0
MADE = {"on_user_voice_volume_changed", "on_user_network_quality_changed"}


class Member:
    def __init__(self, srv: ServerProcess, user: str, freq: float) -> None:
        self.user = user
        self.probe = Probe()
        self.rec = RecordingObserver()
        opts = MediaOptions(
            audio=TestTone(frequency=freq, amplitude=0.4),
            video=TestPattern(width=320, height=240, fps=15),
            sink=self.probe,
        )
        self.engine = CallEngine(srv.url, device_id=f"{user}-dev", media=opts)
        self.engine.add_observer(self.rec)
        self.srv = srv

    async def login(self) -> None:
        await self.engine.init(SDK_APP_ID, self.user, self.srv.sig(self.user))

    def volume_events(self) -> list[dict[str, int]]:
        return [e.kwargs["volume_map"] for e in self.rec.events if e.name == "on_user_voice_volume_changed"]

    async def hears(self, other: str) -> dict[str, Any]:
        """Wait until ``other``'s audio decodes here and shows in a volume event."""
        await self.probe.wait_frames(other, "audio", 25, WAIT)
        await self.rec.wait_until(
            lambda: any(v.get(other, 0) > 0 for v in self.volume_events()), timeout=WAIT
        )
        await self.rec.wait_until(
            lambda: any(
                q.user_id == other and 1 <= q.quality <= 5
                for e in self.rec.events
                if e.name == "on_user_network_quality_changed"
                for q in e.kwargs["network_quality_list"]
            ),
            timeout=WAIT,
        )
        return {
            "level": self.probe.max_level.get(other, 0.0),
            "max_volume": max(v.get(other, 0) for v in self.volume_events()),
            "own_volume": max(v.get(self.user, 0) for v in self.volume_events()),
        }

    def order_facts(self, call_id: str) -> dict[str, Any]:
        names = [e.name for e in self.rec.events_for(call_id)]
        begin = names.index("on_call_begin") if "on_call_begin" in names else -1
        ends = [i for i, n in enumerate(names) if n in ("on_call_end", "on_call_not_connected")]
        end = ends[0] if ends else len(names)
        return {
            "made_before_begin": [n for n in names[:begin] if n in MADE],
            "after_end": names[end + 1 :],
            "terminal": names[end] if ends else None,
        }


async def video_switch(srv: ServerProcess) -> dict[str, Any]:
    a, b = Member(srv, "alice", 300), Member(srv, "bob", 500)
    out: dict[str, Any] = {}
    async with a.engine, b.engine:
        await a.login()
        await b.login()
        cid = await a.engine.calls(["bob"], MediaType.VIDEO)
        await b.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
        await b.engine.accept()
        out["alice_hears_bob"] = await a.hears("bob")
        out["bob_hears_alice"] = await b.hears("alice")
        out["alice_video_from_bob"] = await a.probe.wait_frames("bob", "video", 10, WAIT)
        out["bob_video_from_alice"] = await b.probe.wait_frames("alice", "video", 10, WAIT)
        out["video_size"] = a.probe.sizes.get("bob")
        await a.rec.wait_for("on_user_video_available", user_id="bob", is_video_available=True, timeout=WAIT)
        await b.rec.wait_for(
            "on_user_video_available", user_id="alice", is_video_available=True, timeout=WAIT
        )

        await a.engine.switch_call_media_type(MediaType.AUDIO)
        for m, other in ((a, "bob"), (b, "alice")):
            await m.rec.wait_for(
                "on_call_media_type_changed", new_call_media_type=MediaType.AUDIO, timeout=WAIT
            )
            await m.rec.wait_for(
                "on_user_video_available", user_id=other, is_video_available=False, timeout=WAIT
            )
            session = m.engine.media
            assert session is not None
            await m.rec.wait_until(lambda s=session, o=other: not s.stats()[o].receiving_video, timeout=WAIT)
            before = m.probe.count(other, "audio")
            await m.probe.wait_frames(other, "audio", 25, WAIT)
            out[f"{m.user}_after_switch"] = {
                "audio_frames": m.probe.count(other, "audio") - before,
                "receiving_video": session.stats()[other].receiving_video,
                "video_available_events": [
                    e.kwargs["is_video_available"]
                    for e in m.rec.events_for(cid)
                    if e.name == "on_user_video_available" and e.kwargs["user_id"] == other
                ],
            }
        await a.engine.hangup()
        for m in (a, b):
            await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
            out[f"{m.user}_order"] = m.order_facts(cid)
            out[f"{m.user}_media_after_end"] = m.engine.media is not None
    return out


async def mesh3(srv: ServerProcess) -> dict[str, Any]:
    users = {"alice": 300.0, "bob": 500.0, "carol": 700.0}
    members = {u: Member(srv, u, f) for u, f in users.items()}
    out: dict[str, Any] = {}
    try:
        for m in members.values():
            await m.login()
        cid = await members["alice"].engine.calls(["bob", "carol"], MediaType.AUDIO)
        for u in ("bob", "carol"):
            await members[u].rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
            await members[u].engine.accept()
        for u, m in members.items():
            for other in users:
                if other != u:
                    out[f"{u}<-{other}"] = await m.hears(other)
            out[f"{u}_volume_keys"] = sorted(m.volume_events()[-1])
        await members["carol"].engine.hangup()
        for u in ("alice", "bob"):
            await members[u].rec.wait_for("on_user_leave", user_id="carol", timeout=WAIT)
            session = members[u].engine.media
            assert session is not None
            await members[u].rec.wait_until(lambda s=session: "carol" not in s.stats(), timeout=WAIT)
            out[f"{u}_peers_after_carol_left"] = sorted(session.stats())
        await members["alice"].engine.hangup()
        for u in ("alice", "bob"):
            await members[u].rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
            out[f"{u}_order"] = members[u].order_facts(cid)
    finally:
        for m in members.values():
            await m.engine.uninit()
    return out


async def main(scenario: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rl-media-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv").start()
        try:
            return await {"video-switch": video_switch, "mesh3": mesh3}[scenario](srv)
        finally:
            srv.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
