"""A Ringline callback receiver that checks BOTH signatures and drops duplicates.

    python examples/webhook_receiver.py --port 9000 --token T --secret whsec_...

Point the callback url at ``http://HOST:9000/`` (any path works). For each request it:

1. checks the Tencent-style query signature: ``Sign == hex(sha256(token +
   RequestTime))`` and ``RequestTime`` within 60 s of now;
2. checks the Standard Webhooks signature: ``webhook-signature`` holds
   ``v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")>``
   (key = base64-decoded secret after ``whsec_``), timestamp within 5 min;
3. answers 401 if either fails; otherwise drops the event if its ``webhook-id`` was
   seen before (a retry of something already handled), else prints it;
4. answers 200 with Tencent's ``{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}``.

It uses only the standard library and aiohttp, on purpose: it is the independent
check of what Ringline sends, and a template for your own receiver. Keep the seen-id
set in your database in production (and process the event in the same transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import signal
import sys
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

TENCENT_TOLERANCE = 60
STANDARD_TOLERANCE = 5 * 60
SEEN_MAX = 100_000


class BadSignature(Exception):
    pass


def check_tencent(token: str, query: Any, now: float) -> None:
    sign, request_time = query.get("Sign", ""), query.get("RequestTime", "")
    if not sign or not request_time.isdigit():
        raise BadSignature("Sign or RequestTime missing")
    if abs(now - int(request_time)) > TENCENT_TOLERANCE:
        raise BadSignature("RequestTime too far from now")
    expected = hashlib.sha256((token + request_time).encode()).hexdigest()
    if not hmac.compare_digest(expected, sign.lower()):
        raise BadSignature("Sign mismatch")


def check_standard(keys: list[bytes], body: bytes, headers: Any, now: float) -> str:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or not signatures:
        raise BadSignature("webhook-id, webhook-timestamp or webhook-signature missing")
    if abs(now - int(stamp)) > STANDARD_TOLERANCE:
        raise BadSignature("webhook-timestamp too far from now")
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    wanted = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() for k in keys]
    for item in signatures.split(" "):
        version, _, value = item.partition(",")
        if version == "v1" and any(hmac.compare_digest(value, w) for w in wanted):
            return str(msg_id)
    raise BadSignature("no matching webhook-signature")


def secret_key(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        sys.exit(f"--secret {secret!r} is not whsec_<base64>")


def call_id_of(event: dict[str, Any]) -> str:
    for holder in (event, event.get("CallInfo") or {}, event.get("CallRecord") or {}):
        if isinstance(holder, dict) and holder.get("CallId"):
            return str(holder["CallId"])
    return "?"


def make_app(token: str, secrets: list[str]) -> web.Application:
    keys = [secret_key(s) for s in secrets]
    seen: OrderedDict[str, None] = OrderedDict()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: verify BEFORE parsing
        now = time.time()
        try:
            check_tencent(token, request.query, now)
            event_id = check_standard(keys, body, request.headers, now)
        except BadSignature as exc:
            print(f"REJECTED {request.path_qs[:80]}: {exc}", flush=True)
            return web.json_response(
                {"ActionStatus": "FAIL", "ErrorCode": 401, "ErrorInfo": str(exc)}, status=401
            )
        if event_id in seen:
            print(f"DUPLICATE id={event_id}", flush=True)
        else:
            seen[event_id] = None
            if len(seen) > SEEN_MAX:
                seen.popitem(last=False)
            event = json.loads(body)
            command = request.query.get("CallbackCommand") or request.query.get("command") or "?"
            print(
                f"EVENT command={command} call={call_id_of(event)} seq={event.get('Sequence')} id={event_id}",
                flush=True,
            )
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"webhook receiver listening on http://{host}:{port}/", flush=True)  # now accepting
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", required=True, help="the Tencent-style callback token")
    parser.add_argument(
        "--secret", required=True, action="append", help="whsec_… secret; repeat while rotating"
    )
    args = parser.parse_args()
    asyncio.run(serve(make_app(args.token, args.secret), args.host, args.port))


if __name__ == "__main__":
    main()
