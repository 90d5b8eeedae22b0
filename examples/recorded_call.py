"""Place a recorded call between two bots, then fetch its recording over the admin REST API.

    pip install -e '.[media]'
    ringline serve --sfu janus=http://127.0.0.1:8088/janus --sfu-secret SECRET &
    python examples/recorded_call.py --seconds 10 --out call.ogg

Alice (a 300 Hz tone) calls Bob (500 Hz) with ``CallParams(record=True)``: the call goes
through the SFU, both hear ``on_call_recording_changed(True)``, they talk for
``--seconds`` and Alice hangs up. The server then converts the recording; the script
asks ``get_recordings`` until it is ``Ready`` (or ``Failed``) and saves the file with
``download_recording``. It prints what happens, and with ``--json`` ends with one JSON
line. In production, list and download from your backend, and let the
``Call.CallbackAfterRecordingReady`` callback tell you when a file is ready
(docs/recording.md). The app id and secret key come from ``--data-dir`` (the server's
data folder) or ``--sdk-app-id`` / ``--secret-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from ringline import CallEngine, CallError, CallObserver, CallParams, MediaType
from ringline.core.usersig import gen_user_sig
from ringline.media import MediaOptions, TestTone


class Member(CallObserver):
    """Prints a member's call events and keeps what the script waits for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ringing, self.begun, self.recorded, self.ended = (asyncio.Event() for _ in range(4))

    def on_call_received(self, call_id: str, caller_id: str, *args: Any) -> None:
        print(f"{self.name}: call from {caller_id}", flush=True)
        self.ringing.set()

    def on_call_begin(self, call_id: str, *args: Any) -> None:
        print(f"{self.name}: connected", flush=True)
        self.begun.set()

    def on_call_recording_changed(self, call_id: str, is_recording: bool) -> None:
        print(f"{self.name}: the call is {'recorded' if is_recording else 'no longer recorded'}", flush=True)
        if is_recording:
            self.recorded.set()

    def on_call_end(self, call_id: str, *args: Any) -> None:
        print(f"{self.name}: call ended", flush=True)
        self.ended.set()


class Admin:
    """The admin REST API of a Ringline server, signed as ``administrator``."""

    def __init__(self, http: aiohttp.ClientSession, url: str, app_id: int, key: str) -> None:
        self.http, self.url, self.app_id, self.key = http, url.rstrip("/"), app_id, key

    def _query(self) -> dict[str, str]:
        sig = gen_user_sig(self.app_id, self.key, "administrator", 3600, now=int(time.time()))
        return {
            "sdkappid": str(self.app_id),
            "identifier": "administrator",
            "usersig": sig,
            "random": str(random.randrange(2**32)),
            "contenttype": "json",
        }

    async def call(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``/v4/call_record_http_srv/<command>``; its ``Response``, or SystemExit
        naming the error."""
        url = f"{self.url}/v4/call_record_http_srv/{command}"
        async with self.http.post(url, params=self._query(), json=body) as r:
            answer: dict[str, Any] = await r.json(content_type=None)
        if answer.get("ActionStatus") != "OK":
            raise SystemExit(f"{command}: error {answer.get('ErrorCode')}: {answer.get('ErrorInfo')}")
        response: dict[str, Any] = answer["Response"]
        return response

    async def download(self, recording_id: str, out: Path) -> int:
        """Save the recording's file to ``out``; its size in bytes."""
        url = f"{self.url}/v4/call_record_http_srv/download_recording"
        async with self.http.post(url, params=self._query(), json={"RecordingId": recording_id}) as r:
            if r.status != 200:
                raise SystemExit(f"download_recording: HTTP {r.status}: {await r.text()}")
            data = await r.read()
        await asyncio.to_thread(out.write_bytes, data)
        return len(data)


async def within(event: asyncio.Event, seconds: float, what: str) -> None:
    """Wait for ``event``; SystemExit saying what did not happen and what to check."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        raise SystemExit(
            f"{what} within {seconds:.0f} s: is the server started with --sfu, and is its Janus up?"
        ) from None


async def talk(url: str, app_id: int, key: str, seconds: float) -> str:
    """Alice calls Bob with recording on, they talk for ``seconds``, Alice hangs up; the call id."""
    alice, bob = Member("alice"), Member("bob")
    async with (
        CallEngine(url, media=MediaOptions(audio=TestTone(frequency=300.0))) as a,
        CallEngine(url, media=MediaOptions(audio=TestTone(frequency=500.0))) as b,
    ):
        a.add_observer(alice)
        b.add_observer(bob)
        await a.init(app_id, "alice", gen_user_sig(app_id, key, "alice", 3600, now=int(time.time())))
        await b.init(app_id, "bob", gen_user_sig(app_id, key, "bob", 3600, now=int(time.time())))
        call_id = await a.calls(["bob"], MediaType.AUDIO, CallParams(record=True))
        await within(bob.ringing, 30, "bob was not called")
        await b.accept()
        for m in (alice, bob):
            await within(m.begun, 30, f"{m.name} was not connected")
            await within(m.recorded, 60, f"{m.name} was not told that the call is recorded")
        await asyncio.sleep(seconds)  # the bots talk: this is the call being recorded
        await a.hangup()
        await within(bob.ended, 30, "the call did not end")
    return call_id


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the Ringline server (with --sfu)")
    p.add_argument("--data-dir", default="ringline-data", help="the server's data folder (for app.json)")
    p.add_argument("--sdk-app-id", type=int, help="instead of --data-dir: the app id")
    p.add_argument("--secret-key", help="instead of --data-dir: the app's secret key")
    p.add_argument("--seconds", type=float, default=10.0, help="how long the bots talk")
    p.add_argument("--out", type=Path, default=Path("call.ogg"), help="where to save the recording")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the recording")
    p.add_argument("--json", action="store_true", help="end with a JSON summary line")
    args = p.parse_args()
    if args.sdk_app_id is not None and args.secret_key:
        app_id, key = args.sdk_app_id, args.secret_key
    else:
        path = Path(args.data_dir, "app.json")
        try:
            app = json.loads(await asyncio.to_thread(path.read_text))
        except FileNotFoundError:
            raise SystemExit(
                f"no {path}: pass --data-dir (the server's folder) or --sdk-app-id and --secret-key"
            ) from None
        app_id, key = app["sdk_app_id"], app["secret_key"]
    try:
        call_id = await talk(args.url, app_id, key, args.seconds)
    except CallError as exc:
        raise SystemExit(f"the call was refused: {exc}") from None

    async with aiohttp.ClientSession() as http:
        admin = Admin(http, args.url, app_id, key)
        deadline = time.monotonic() + args.wait
        while True:
            found = (await admin.call("get_recordings", {"CallId": call_id}))["RecordingList"]
            state = found[0]["State"] if found else "not listed yet"
            if state in ("Ready", "Failed") or time.monotonic() > deadline:
                break
            print(f"recording of {call_id}: {state}", flush=True)
            await asyncio.sleep(1.0)  # polling a REST API: there is no event to wait for here
        if state == "Failed":
            errors = found[0].get("Errors")
            raise SystemExit(f"recording of {call_id} failed: {errors} (the server's log says more)")
        if state != "Ready":
            raise SystemExit(
                f"recording of {call_id}: still {state} after {args.wait:.0f} s; wait longer with --wait"
            )
        info = found[0]
        size = await admin.download(info["RecordingId"], args.out)
        print(f"saved {args.out}: {info['Format']}, {info['Duration']:.1f} s, {size} bytes", flush=True)
    if args.json:
        print(json.dumps({"call_id": call_id, "recording": info, "file": str(args.out), "size": size}))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
