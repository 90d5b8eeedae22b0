"""Runs inside a loopback-only network namespace (tests/sfu/test_sfu_media.py): a real Janus
(with the loopback shim preloaded), ``ringline serve --sfu`` and three aiortc members of one
audio call. Each publishes a tone of its own frequency through the server's ``sfu``
requests (the server relays them to Janus) and subscribes to the other two as their
``on_sfu_feed`` pushes (or its publish answer) name them. Prints one JSON line: per member
and feed, the audio frames received and their dominant frequency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from janusproc import SECRET, running

from rawclient import Raw
from ringline.media.sources import ToneTrack
from serverproc import ServerProcess, unique

FREQ = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
WANT_FRAMES = 100  # 2 s of audio from each feed


class Member:
    def __init__(self, name: str, srv: ServerProcess) -> None:
        self.name = name
        self.user = unique(name)
        self.raw = Raw(srv)
        self.pub = RTCPeerConnection()
        self.subs: dict[str, RTCPeerConnection] = {}
        self.got: dict[str, dict[str, Any]] = {}
        self.pcm: dict[str, list[np.ndarray]] = {}
        self.names: dict[str, str] = {}
        self.done = asyncio.Event()
        #: feed → (frame count, the event set when it is reached)
        self.want: dict[str, tuple[int, asyncio.Event]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.cid = ""

    async def sfu(self, **data: Any) -> dict[str, Any]:
        return await self.raw.ok("sfu", call_id=self.cid, data=data)

    async def publish(self) -> list[str]:
        self.pub.addTrack(ToneTrack(FREQ[self.name], 0.3))
        await self.pub.setLocalDescription(await self.pub.createOffer())
        res = await self.sfu(type="publish", sdp=self.pub.localDescription.sdp)
        await self.pub.setRemoteDescription(RTCSessionDescription(res["sdp"], "answer"))
        return list(res["feeds"])

    async def subscribe(self, feed: str) -> None:
        if feed in self.subs:
            return
        pc = self.subs[feed] = RTCPeerConnection()
        self.got[feed] = {"frames": 0}
        self.pcm[feed] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.create_task(self.read(feed, track)))

        res = await self.sfu(type="subscribe", feed=feed)
        await pc.setRemoteDescription(RTCSessionDescription(res["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.sfu(type="start", feed=feed, sdp=pc.localDescription.sdp)

    async def read(self, feed: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            self.got[feed]["frames"] += 1
            want = self.want.get(feed)
            if want is not None and self.got[feed]["frames"] >= want[0]:
                want[1].set()
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            self.pcm[feed].append(pcm.astype(np.float64))
            if all(g["frames"] >= WANT_FRAMES for g in self.got.values()) and len(self.got) == 2:
                self.done.set()

    def findings(self) -> dict[str, Any]:
        out = {}
        for feed, g in self.got.items():
            pcm = np.concatenate(self.pcm[feed][-50:]) if self.pcm[feed] else np.zeros(1)
            rate = 48000
            spectrum = np.abs(np.fft.rfft(pcm))
            peak = (
                float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))]) if len(pcm) > 1 else 0.0
            )
            out[self.names[feed]] = {
                "frames": g["frames"],
                "peak_hz": round(peak),
                "rms": float(np.sqrt(np.mean(pcm**2))) / 32768,
                "state": self.subs[feed].connectionState,
            }
        return out

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for pc in [self.pub, *self.subs.values()]:
            await pc.close()
        await self.raw.close()


TMP = Path(tempfile.mkdtemp(prefix="rl-sfu-media-"))


async def main() -> dict[str, Any]:
    tmp = TMP
    with running(tmp / "janus", preload_shim=True) as janus:
        (tmp / "srv").mkdir()
        srv = ServerProcess(
            tmp / "srv", extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        ).start()
        members = [Member(n, srv) for n in ("alice", "bob", "carol")]
        by_user = {m.user: m for m in members}
        for m in members:
            m.names = {o.user: o.name for o in members}
        try:
            for m in members:
                await m.raw.login(m.user, sfu=True)
            alice, bob, carol = members
            cid = (await alice.raw.ok("calls", user_ids=[bob.user, carol.user], media_type=1))["call_id"]
            for m in members:
                m.cid = cid
            for m in (bob, carol):
                await m.raw.event("on_call_received", call_id=cid)
                await m.raw.ok("accept", call_id=cid)
            for m in members:
                await m.raw.event("on_sfu", call_id=cid)

            async def run(m: Member) -> None:
                for feed in await m.publish():
                    await m.subscribe(feed)
                while len(m.subs) < 2:
                    ev = await m.raw.event("on_sfu_feed", timeout=30, call_id=cid)
                    await m.subscribe(ev["args"]["user_id"])
                await asyncio.wait_for(m.done.wait(), 60)

            started = time.monotonic()
            await asyncio.gather(*(run(m) for m in members))
            took = time.monotonic() - started
            result: dict[str, Any] = {
                "members": {m.name: m.findings() for m in members},
                "seconds": round(took, 1),
                "publishers": sorted(by_user[u].name for u in by_user),
            }
            # Carol leaves: Alice and Bob still hear each other through the room.
            await carol.raw.ok("hangup", call_id=cid)
            after: dict[str, int] = {}
            for m, other in ((alice, bob), (bob, alice)):
                await m.raw.event("on_user_leave", call_id=cid, user_id=carol.user)
                start = m.got[other.user]["frames"]
                reached = asyncio.Event()
                m.want[other.user] = (start + 50, reached)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reached.wait(), 20)
                after[m.name] = m.got[other.user]["frames"] - start
            result["after_carol_left"] = after
            for m in (alice, bob):
                await m.raw.request("hangup", call_id=cid)
            return result
        finally:
            for m in members:
                await m.close()
            srv.kill()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    shutil.rmtree(TMP, ignore_errors=True)  # kept (Janus's and the server's logs) when it failed
