"""Python members calling through a real Ringline server, with real media.

    python tests/media/call_driver.py SCENARIO     (inside a loopback-only netns)

Starts ``ringline serve`` (no ICE servers: host candidates only), runs the scenario
with SDK engines made with ``media=MediaOptions(...)``, and prints one JSON object
of what each member saw. Scenarios: ``video-switch`` (1v1 video call, then audio),
``mesh3`` (a group call of three), ``ice-restart`` (the offerer's connection dies
mid-call and media flows again), ``server-restart`` (the server restarts while the
offerer's connection dies, so its new offer is lost; once the engines resumed, media
flows again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from faults import break_ice
from probe import Probe

from ringline import CallEngine, MediaType
from ringline.media import MediaOptions, TestPattern, TestTone
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess

WAIT = 30.0
MADE = {"on_user_voice_volume_changed", "on_user_network_quality_changed"}


class LogWatch(logging.Handler):
    """The ``ringline.media`` log lines, to wait for one (logged on the event loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        media_log = logging.getLogger("ringline.media")
        media_log.setLevel(logging.INFO)
        media_log.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._changed.set()

    def seen(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait(self, text: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while not self.seen(text):
                self._changed.clear()
                await self._changed.wait()
        return self.seen(text)[0]

    def close(self) -> None:
        logging.getLogger("ringline.media").removeHandler(self)
        super().close()


class Reachable(Protocol):
    """Where members log in: a :class:`ServerProcess`, or its address and signatures
    in another process (tests/sfu/group_members.py)."""

    url: str

    def sig(self, user_id: str, expire: int = 86400) -> str: ...


class Member:
    def __init__(
        self,
        srv: Reachable,
        user: str,
        freq: float,
        request_timeout: float = 10.0,
        video: TestPattern | None = None,
    ) -> None:
        self.user = user
        self.probe = Probe()
        self.rec = RecordingObserver()
        opts = MediaOptions(
            audio=TestTone(frequency=freq, amplitude=0.4),
            video=video or TestPattern(width=320, height=240, fps=15),
            sink=self.probe,
        )
        self.engine = CallEngine(
            srv.url, device_id=f"{user}-dev", media=opts, request_timeout=request_timeout
        )
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
            await m.rec.wait_until(lambda: not session.stats()[other].receiving_video, timeout=WAIT)  # noqa: B023
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


#: The members of a 3-member call: user -> the tone (Hz) each sends.
TRIO = {"alice": 300.0, "bob": 500.0, "carol": 700.0}


async def trio_call(members: dict[str, Member]) -> str:
    """Log in ``members`` (made from :data:`TRIO`); alice calls bob and carol (audio),
    both accept; the call id."""
    for m in members.values():
        await m.login()
    cid = await members["alice"].engine.calls(["bob", "carol"], MediaType.AUDIO)
    for u in ("bob", "carol"):
        await members[u].rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
        await members[u].engine.accept()
    return cid


async def hears_all(members: dict[str, Member], out: dict[str, Any]) -> None:
    """``out["a<-b"]``: whether member a hears member b's tone, for every pair."""
    for u, m in members.items():
        for other in members:
            if other != u:
                out[f"{u}<-{other}"] = await m.hears(other)


async def mesh3(srv: ServerProcess) -> dict[str, Any]:
    members = {u: Member(srv, u, f) for u, f in TRIO.items()}
    out: dict[str, Any] = {}
    try:
        cid = await trio_call(members)
        await hears_all(members, out)
        for u, m in members.items():
            out[f"{u}_volume_keys"] = sorted(m.volume_events()[-1])
        await members["carol"].engine.hangup()
        for u in ("alice", "bob"):
            await members[u].rec.wait_for("on_user_leave", user_id="carol", timeout=WAIT)
            session = members[u].engine.media
            assert session is not None
            await members[u].rec.wait_until(lambda: "carol" not in session.stats(), timeout=WAIT)  # noqa: B023
            out[f"{u}_peers_after_carol_left"] = sorted(session.stats())
        await members["alice"].engine.hangup()
        for u in ("alice", "bob"):
            await members[u].rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
            out[f"{u}_order"] = members[u].order_facts(cid)
    finally:
        for m in members.values():
            await m.engine.uninit()
    return out


async def flowing(a: Member, b: Member) -> dict[str, int]:
    """Wait for 1 s of audio (50 frames) and 10 video frames more, both ways."""
    for m, other in ((a, b.user), (b, a.user)):
        await m.probe.wait_frames(other, "audio", 50, WAIT)
        await m.probe.wait_frames(other, "video", 10, WAIT)
    return {
        f"{a.user}<-{b.user}": a.probe.count(b.user, "audio"),
        f"{b.user}<-{a.user}": b.probe.count(a.user, "audio"),
    }


async def video_call(a: Member, b: Member) -> str:
    """alice calls bob (video), bob accepts; both hear each other."""
    await a.login()
    await b.login()
    cid = await a.engine.calls([b.user], MediaType.VIDEO)
    await b.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
    await b.engine.accept()
    await a.hears(b.user)
    await b.hears(a.user)
    return cid


def restart_facts(a: Member, b: Member, cid: str) -> dict[str, Any]:
    sa, sb = a.engine.media, b.engine.media
    assert sa is not None and sb is not None
    return {
        "call_ids": [a.engine.call_id, b.engine.call_id],
        "restarts": {a.user: sa.stats()[b.user].restarts, b.user: sb.stats()[a.user].restarts},
        "states": {a.user: sa.stats()[b.user].connection_state, b.user: sb.stats()[a.user].connection_state},
        "errors": {m.user: [e.kwargs for e in m.rec.events if e.name == "on_error"] for m in (a, b)},
        "ended_early": [
            m.user for m in (a, b) if any(e.name == "on_call_end" for e in m.rec.events_for(cid))
        ],
    }


async def end_call(a: Member, b: Member, cid: str, out: dict[str, Any]) -> None:
    await a.engine.hangup()
    for m in (a, b):
        await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
        out[f"{m.user}_order"] = m.order_facts(cid)


async def ice_restart(srv: ServerProcess) -> dict[str, Any]:
    a, b = Member(srv, "alice", 300), Member(srv, "bob", 500)
    out: dict[str, Any] = {}
    async with a.engine, b.engine:
        cid = await video_call(a, b)
        out["call_id"] = cid
        out["before"] = await flowing(a, b)
        session = a.engine.media
        assert session is not None
        old = session.peers["bob"].pc
        await break_ice(old)  # alice (the offerer) loses her network path to bob
        out["after"] = await flowing(a, b)
        out["old_state"] = old.connectionState
        out.update(restart_facts(a, b, cid))
        await end_call(a, b, cid, out)
    return out


async def server_restart(srv: ServerProcess) -> dict[str, Any]:
    # Requests wait 2 s at most for the server to come back: alice's new offer is lost.
    a, b = Member(srv, "alice", 300, request_timeout=2.0), Member(srv, "bob", 500, request_timeout=2.0)
    logs = LogWatch()
    out: dict[str, Any] = {}
    try:
        async with a.engine, b.engine:
            cid = await video_call(a, b)
            out["call_id"] = cid
            out["before"] = await flowing(a, b)
            session = a.engine.media
            assert session is not None
            # SIGTERM: devices are told to come back (1001). Off the loop, so the engines
            # see the close and reconnect as they would in a real app.
            out["server_exit"] = await asyncio.to_thread(srv.stop)
            await break_ice(session.peers["bob"].pc)
            out["lost"] = await logs.wait("signal offer to bob failed", WAIT)
            await asyncio.to_thread(srv.start)
            up = time.monotonic()
            # Well before bob's own side of the dead connection expires (ICE consent,
            # about 30 s): the recovery comes from alice's reconnect.
            async with asyncio.timeout(20):
                out["after"] = await flowing(a, b)
            out["recovered_in"] = time.monotonic() - up
            out["resent"] = logs.seen("sending the offer again")
            out["asked"] = logs.seen("asking alice for a new connection")
            out.update(restart_facts(a, b, cid))
            await end_call(a, b, cid, out)
    finally:
        logs.close()
    return out


SCENARIOS: dict[str, tuple[Callable[[ServerProcess], Awaitable[dict[str, Any]]], dict[str, Any]]] = {
    "video-switch": (video_switch, {}),
    "mesh3": (mesh3, {}),
    "ice-restart": (ice_restart, {}),
    # sessions outlive the restart while the engines come back
    "server-restart": (server_restart, {"heartbeat_grace": 20.0}),
}


async def main(scenario: str) -> dict[str, Any]:
    run, server_options = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory(prefix="rl-media-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv", **server_options).start()
        try:
            return await run(srv)
        finally:
            srv.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
