"""A call bot that answers every call and hangs up after N seconds.

    .venv/bin/ringline usersig answer-bot            # mint a sig (or let this script do it)
    .venv/bin/python examples/auto_answer.py --user answer-bot --hold 10

It reads the app id and secret key from the server's data folder, so run it next to
`ringline serve` (or pass --data-dir). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

from ringline import CallEngine, CallObserver, MediaType
from ringline.core.types import CallObserverExtraInfo
from ringline.core.usersig import gen_user_sig


class AutoAnswer(CallObserver):
    def __init__(self, engine: CallEngine, hold: float) -> None:
        self.engine = engine
        self.hold = hold
        self.timer: asyncio.Task[None] | None = None

    async def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> None:
        print(f"ringing: {caller_id} calls ({media_type.name}), answering", flush=True)
        await self.engine.accept()

    def on_call_begin(self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo) -> None:
        print(f"connected: {call_id}", flush=True)
        if self.hold > 0:
            self.timer = asyncio.create_task(self._hang_up_later())

    async def _hang_up_later(self) -> None:
        await asyncio.sleep(self.hold)
        if self.engine.call_id is not None:
            await self.engine.hangup()

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: object,
        user_id: str,
        total_time: int,
        info: CallObserverExtraInfo,
    ) -> None:
        print(f"ended: by {user_id} after {total_time}s", flush=True)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--data-dir", default="ringline-data")
    p.add_argument("--user", default="answer-bot")
    p.add_argument("--hold", type=float, default=10.0, help="seconds before hanging up (0 = never)")
    args = p.parse_args()
    app = json.loads(await asyncio.to_thread(Path(args.data_dir, "app.json").read_text))
    sig = gen_user_sig(app["sdk_app_id"], app["secret_key"], args.user, 86400, now=int(time.time()))
    async with CallEngine(args.url, device_id=f"{args.user}-bot") as engine:
        engine.add_observer(AutoAnswer(engine, args.hold))
        await engine.init(app["sdk_app_id"], args.user, sig)
        print(f"logged in as {args.user}; waiting for calls", flush=True)
        await engine.wait_closed()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
