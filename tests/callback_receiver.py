"""A callback receiver process for end-to-end tests, independent of Ringline's code.

It checks the Standard Webhooks signature with the PyPI package ``standardwebhooks``
and the Tencent-style ``Sign`` by hand, answers 200 (401 on a bad signature), and
prints one JSON line per request to stdout, so the test awaits lines instead of
polling::

    {"id": ..., "command": ..., "path": ..., "body": <raw body as text>, "std_ok": true,
     "tencent_ok": true}

``--delay`` slows every answer (to have requests in flight when the server is killed).
``--hold-after N`` holds every request after the N-th, unanswered and unprinted, until the
process gets SIGUSR1 (so a test can kill a sender while its requests are surely in
flight).
It prints ``READY`` once it accepts connections. Usage::

    python tests/callback_receiver.py --port P --token T --secret whsec_... [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
import sys
import time

from aiohttp import web
from standardwebhooks import Webhook


def tencent_ok(token: str, query: dict[str, str], app_id: str) -> bool:
    stamp = query.get("RequestTime", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 60:
        return False
    if (query.get("SdkAppid") or query.get("sdkappid")) != app_id:
        return False
    want = hashlib.sha256((token + stamp).encode()).hexdigest()
    return hmac.compare_digest(want, query.get("Sign", ""))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--hold-after", type=int, default=-1)
    args = p.parse_args()
    hook = Webhook(args.secret)
    released = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, released.set)
    seen = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        if 0 <= args.hold_after < seen:
            await released.wait()
        body = await request.read()
        try:
            hook.verify(body, dict(request.headers))
            std_ok = True
        except Exception:
            std_ok = False
        tc_ok = tencent_ok(args.token, dict(request.query), args.app_id)
        if args.delay:
            await asyncio.sleep(args.delay)  # a slow receiver, on purpose
        line = {
            "id": request.headers.get("webhook-id", ""),
            "command": request.query.get("CallbackCommand") or request.query.get("command") or "",
            "path": request.path,
            "body": body.decode("utf-8", "replace"),
            "std_ok": std_ok,
            "tencent_ok": tc_ok,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        if not (std_ok and tc_ok):
            return web.json_response({"ActionStatus": "FAIL", "ErrorCode": 401}, status=401)
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True).start()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
