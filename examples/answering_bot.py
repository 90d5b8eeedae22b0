"""An answering machine: answers every call, plays a spoken greeting, records the
caller to a WAV file, and hangs up after N seconds.

    pip install -e '.[media]'
    python examples/answering_bot.py --user answer-bot --hold 20 --record-dir recordings

The greeting is spoken by espeak-ng when it is installed (``apt-get install
espeak-ng``), else a tone is played instead (the bot says so); ``--greeting FILE``
plays your own WAV. Each caller is recorded to ``RECORD_DIR/<caller>.wav``. The app id
and secret key are read from the server's data folder (``--data-dir``), or given with
``--sdk-app-id`` and ``--secret-key``. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ringline import CallEndReason, CallEngine, CallObserver, MediaType
from ringline.core.types import CallObserverExtraInfo
from ringline.core.usersig import gen_user_sig
from ringline.media import MediaOptions, TestTone, WavRecorder

GREETING = "Hello, you have reached the Ringline answering bot. Please leave a message."


def make_greeting(text: str, folder: Path) -> Path | None:
    """Speak ``text`` to a WAV with espeak-ng; None when espeak-ng is not installed."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    path = folder / "greeting.wav"
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


class AnsweringBot(CallObserver):
    def __init__(self, engine: CallEngine, hold: float, recorder: WavRecorder, once: bool) -> None:
        self.engine = engine
        self.hold = hold
        self.recorder = recorder
        self.once = once
        self.done = asyncio.Event()
        self.timer: asyncio.Task[None] | None = None

    async def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> None:
        print(f"ringing: {caller_id} calls ({media_type.name}); answering", flush=True)
        await self.engine.accept()

    def on_call_begin(self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo) -> None:
        print(f"connected: {call_id}; playing the greeting, recording", flush=True)
        if self.hold > 0:
            self.timer = asyncio.create_task(self._hang_up_later(call_id))

    async def _hang_up_later(self, call_id: str) -> None:
        await asyncio.sleep(self.hold)
        if self.engine.call_id == call_id:
            print(f"hanging up after {self.hold:g} s", flush=True)
            await self.engine.hangup()

    def on_user_join(self, user_id: str) -> None:
        print(f"member: {user_id}", flush=True)

    def _ended(self, reason: CallEndReason, user_id: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        recordings = {u: [str(p) for p in paths] for u, paths in self.recorder.paths.items()}
        print(f"ended: {reason.name} by {user_id}; recordings: {json.dumps(recordings)}", flush=True)
        if self.once:
            self.done.set()

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


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the Ringline server")
    p.add_argument("--data-dir", default="ringline-data", help="the server's data folder (for app.json)")
    p.add_argument("--sdk-app-id", type=int, help="instead of --data-dir: the app id")
    p.add_argument("--secret-key", help="instead of --data-dir: the app's secret key")
    p.add_argument("--user", default="answer-bot", help="the bot's user id")
    p.add_argument("--hold", type=float, default=20.0, help="seconds before hanging up (0 = never)")
    p.add_argument("--greeting", type=Path, help="a WAV to play instead of the spoken greeting")
    p.add_argument("--text", default=GREETING, help="what espeak-ng says")
    p.add_argument("--record-dir", type=Path, default=Path("recordings"), help="where callers are recorded")
    p.add_argument("--once", action="store_true", help="exit after the first call")
    args = p.parse_args()
    if args.sdk_app_id is not None and args.secret_key:
        app_id, key = args.sdk_app_id, args.secret_key
    else:
        app = json.loads(await asyncio.to_thread(Path(args.data_dir, "app.json").read_text))
        app_id, key = app["sdk_app_id"], app["secret_key"]
    sig = gen_user_sig(app_id, key, args.user, 86400, now=int(time.time()))

    with tempfile.TemporaryDirectory(prefix="ringline-bot-") as tmp:
        greeting: Path | TestTone | None = args.greeting
        if greeting is None:
            greeting = await asyncio.to_thread(make_greeting, args.text, Path(tmp))
            if greeting is None:
                print("espeak-ng is not installed: the greeting is a 440 Hz tone", flush=True)
                greeting = TestTone()
            else:
                print(f"greeting spoken by espeak-ng: {args.text!r}", flush=True)
        recorder = WavRecorder(args.record_dir)
        media = MediaOptions(audio=greeting, sink=recorder)
        async with CallEngine(args.url, device_id=f"{args.user}-bot", media=media) as engine:
            bot = AnsweringBot(engine, args.hold, recorder, args.once)
            engine.add_observer(bot)
            await engine.init(app_id, args.user, sig)
            print(f"logged in as {args.user}; waiting for calls", flush=True)
            closed = asyncio.create_task(engine.wait_closed())
            done = asyncio.create_task(bot.done.wait())
            await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
            for task in (closed, done):
                task.cancel()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
