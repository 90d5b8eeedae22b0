"""Call a user with real media and print the volumes and the network quality every second.

    pip install -e '.[media]'
    python examples/call_and_measure.py --user tester --callee answer-bot --seconds 15

It sends a test tone (``--wav FILE`` sends a file instead) and, with ``--video``, a
test pattern; ``--record-dir`` records what it hears. Each second it prints a line::

    t=3s  volume tester=21 answer-bot=17  quality answer-bot=EXCELLENT rtt=1.1ms loss=0.0% jitter=1.9ms

It hangs up after ``--seconds`` (or when the callee does) and, with ``--json``, ends
with one JSON line summing up what it measured. The app id and secret key come from
``--data-dir`` (the server's data folder) or ``--sdk-app-id`` / ``--secret-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from ringline import CallEndReason, CallEngine, CallObserver, MediaType, NetworkQualityInfo
from ringline.core.types import CallObserverExtraInfo
from ringline.core.usersig import gen_user_sig
from ringline.media import MediaOptions, MediaSink, PeerStats, TestPattern, TestTone, WavRecorder


class Meter(CallObserver):
    """Keeps the latest volume and quality events; notes when the call begins and ends."""

    def __init__(self) -> None:
        self.volumes: dict[str, int] = {}
        self.max_volume: dict[str, int] = {}
        self.quality: dict[str, str] = {}
        self.begun = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.events: list[str] = []

    def on_call_begin(self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo) -> None:
        print(f"connected: {call_id} ({media_type.name})", flush=True)
        self.begun.set()

    def on_user_voice_volume_changed(self, volume_map: dict[str, int]) -> None:
        self.volumes = dict(volume_map)
        for user, v in volume_map.items():
            self.max_volume[user] = max(v, self.max_volume.get(user, 0))

    def on_user_network_quality_changed(self, network_quality_list: list[NetworkQualityInfo]) -> None:
        self.quality = {q.user_id: q.quality.name for q in network_quality_list}

    def on_user_audio_available(self, user_id: str, is_audio_available: bool) -> None:
        self.events.append(f"audio_available({user_id},{is_audio_available})")

    def on_user_video_available(self, user_id: str, is_video_available: bool) -> None:
        self.events.append(f"video_available({user_id},{is_video_available})")

    def _ended(self, reason: CallEndReason, user_id: str) -> None:
        self.end_reason = f"{reason.name} by {user_id}"
        print(f"ended: {self.end_reason}", flush=True)
        self.ended.set()

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        total_time: float,
        info: CallObserverExtraInfo,
    ) -> None:
        self._ended(reason, user_id)

    def on_call_not_connected(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        info: CallObserverExtraInfo,
    ) -> None:
        self._ended(reason, user_id)


def measure(engine: CallEngine, last: dict[str, PeerStats]) -> dict[str, PeerStats]:
    """Update ``last`` with the media session's current measures and return it.

    A remote user's measures stay in ``last`` once their connection is closed: when the
    callee hangs up, its media says goodbye a moment before the call's end reaches this
    engine, and a line printed in between still shows what was last measured."""
    session = engine.media
    if session is not None:
        last.update(session.stats())
    return last


def report_line(t: int, stats: dict[str, PeerStats], meter: Meter) -> str:
    vols = " ".join(f"{u}={v}" for u, v in meter.volumes.items())
    parts = [f"t={t}s", f" volume {vols}"]
    for user, st in stats.items():
        rtt = "?" if st.rtt_ms is None else f"{st.rtt_ms:.1f}ms"
        loss = "?" if st.loss_pct is None else f"{st.loss_pct:.1f}%"
        jitter = "?" if st.jitter_ms is None else f"{st.jitter_ms:.1f}ms"
        quality = meter.quality.get(user, st.quality.name)
        parts.append(f" quality {user}={quality} rtt={rtt} loss={loss} jitter={jitter}")
    return " ".join(parts)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the Ringline server")
    p.add_argument("--data-dir", default="ringline-data", help="the server's data folder (for app.json)")
    p.add_argument("--sdk-app-id", type=int, help="instead of --data-dir: the app id")
    p.add_argument("--secret-key", help="instead of --data-dir: the app's secret key")
    p.add_argument("--user", default="measure", help="this caller's user id")
    p.add_argument("--callee", default="answer-bot", help="who to call")
    p.add_argument("--video", action="store_true", help="a video call (sends a test pattern)")
    p.add_argument("--wav", type=Path, help="send this audio file instead of a tone")
    p.add_argument("--seconds", type=int, default=15, help="hang up after this many seconds")
    p.add_argument("--record-dir", type=Path, help="record what each member says to WAV files here")
    p.add_argument("--json", action="store_true", help="end with a JSON summary line")
    args = p.parse_args()
    if args.sdk_app_id is not None and args.secret_key:
        app_id, key = args.sdk_app_id, args.secret_key
    else:
        app = json.loads(await asyncio.to_thread(Path(args.data_dir, "app.json").read_text))
        app_id, key = app["sdk_app_id"], app["secret_key"]
    sig = gen_user_sig(app_id, key, args.user, 86400, now=int(time.time()))

    recorder = WavRecorder(args.record_dir) if args.record_dir else None
    sinks: list[MediaSink] = [recorder] if recorder is not None else []
    media = MediaOptions(audio=args.wav or TestTone(), video=TestPattern(), sink=sinks)
    meter = Meter()
    summary: dict[str, Any] = {}
    async with CallEngine(args.url, device_id=f"{args.user}-measure", media=media) as engine:
        engine.add_observer(meter)
        await engine.init(app_id, args.user, sig)
        await engine.calls([args.callee], MediaType.VIDEO if args.video else MediaType.AUDIO)
        print(f"calling {args.callee}", flush=True)
        ended = asyncio.create_task(meter.ended.wait())
        begun = asyncio.create_task(meter.begun.wait())
        await asyncio.wait({begun, ended}, return_when=asyncio.FIRST_COMPLETED)
        begun.cancel()
        t = 0
        last: dict[str, PeerStats] = {}
        while meter.begun.is_set() and not meter.ended.is_set() and t < args.seconds:
            await asyncio.wait({ended}, timeout=1.0)
            t += 1
            if not meter.ended.is_set():
                measure(engine, last)
                print(report_line(t, last, meter), flush=True)
                summary["stats"] = {
                    u: {
                        "rtt_ms": s.rtt_ms,
                        "loss_pct": s.loss_pct,
                        "jitter_ms": s.jitter_ms,
                        "audio_frames": s.audio_frames,
                        "video_frames": s.video_frames,
                    }
                    for u, s in last.items()
                }
        if not meter.ended.is_set() and engine.call_id is not None:
            await engine.hangup()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended, timeout=10)
        ended.cancel()
    if args.json:
        summary.update(
            {
                "connected": meter.begun.is_set(),
                "end": meter.end_reason,
                "max_volume": meter.max_volume,
                "quality": meter.quality,
                "availability": meter.events,
                "recordings": {u: [str(x) for x in ps] for u, ps in recorder.paths.items()}
                if recorder
                else {},
            }
        )
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
