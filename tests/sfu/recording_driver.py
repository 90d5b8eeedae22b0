"""Runs inside a loopback-only network namespace (tests/sfu/test_recording.py): a real Janus
(loopback shim preloaded), a VideoRoom room the driver creates over Janus's HTTP API with
recording on (``record``, ``rec_dir``), and two aiortc members that join it as publishers
straight through Janus's API, each sending a tone of its own frequency and a 160x120 test
pattern for SECONDS seconds once both are connected. Then both leave (Janus closes their
.mjr files) and Janus stops.

Usage: ``recording_driver.py REC_DIR [SECONDS]``. Prints one JSON line: the .mjr files
written and how long the members were connected."""

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

from aiortc import RTCPeerConnection, RTCSessionDescription
from janus_peer import Peer, post
from janusproc import SECRET, running

from ringline.media.sources import PatternVideoTrack, ToneTrack

FREQ = {"alice": 440.0, "bob": 660.0}
ROOM = "ringline-rec-test"


class Publisher:
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.peer = Peer(url)
        self.pc = RTCPeerConnection()
        self.connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

    def _send(self, body: dict[str, Any], jsep: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.peer.url}/{self.peer.session}/{self.peer.handle}"
        ack = post(url, {"janus": "message", "body": body, "jsep": jsep})
        if ack.get("janus") == "error":
            raise RuntimeError(f"{self.name}: {ack}")
        while True:
            ev = self.peer.event()
            if not ev:
                raise TimeoutError(f"{self.name}: no answer to joinandconfigure")
            if ev.get("jsep"):
                post(url, {"janus": "trickle", "candidate": {"completed": True}})
                return dict(ev["jsep"])
            data = ev.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise RuntimeError(f"{self.name}: {data}")

    async def publish(self) -> None:
        self.pc.addTrack(ToneTrack(FREQ[self.name], 0.3))
        self.pc.addTrack(PatternVideoTrack(160, 120, 10))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body: dict[str, Any] = {
            "request": "joinandconfigure",
            "ptype": "publisher",
            "room": ROOM,
            "id": self.name,
        }
        body |= {"audio": True, "video": True}
        jsep = await asyncio.to_thread(
            self._send, body, {"type": "offer", "sdp": self.pc.localDescription.sdp}
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))

    async def leave(self) -> None:
        await self.pc.close()
        await asyncio.to_thread(self.peer.leave)


async def main(rec_dir: Path, seconds: float, tmp: Path) -> dict[str, Any]:
    with running(tmp / "janus", preload_shim=True) as janus:
        admin = Peer(janus.url)
        create = {"request": "create", "room": ROOM, "admin_key": SECRET, "record": True}
        create |= {"rec_dir": str(rec_dir), "audiocodec": "opus", "videocodec": "vp8"}
        made = post(f"{janus.url}/{admin.session}/{admin.handle}", {"janus": "message", "body": create})
        assert made.get("plugindata", {}).get("data", {}).get("videoroom") == "created", made
        members = [Publisher(n, janus.url) for n in FREQ]
        try:
            await asyncio.gather(*(m.publish() for m in members))
            await asyncio.wait_for(asyncio.gather(*(m.connected.wait() for m in members)), 30)
            started = time.monotonic()
            await asyncio.sleep(seconds)  # the length of the call being recorded
        finally:
            for m in members:
                await m.leave()
        connected = time.monotonic() - started
        admin.leave()
    return {"connected_seconds": round(connected, 2)}


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    work = Path(tempfile.mkdtemp(prefix="rl-rec-"))
    result = asyncio.run(main(folder, secs, work))
    result["files"] = sorted(p.name for p in folder.iterdir())
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)  # kept (Janus's log) when it failed
