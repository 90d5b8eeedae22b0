"""The kit of the callback tests (test_callbacks, test_callback_workers, test_vendor_port):
a server that signs callbacks with the tests' token and secret (:func:`server_args`),
helper processes that print one JSON line per request they took (:class:`LineProcess`:
the signature-checking :class:`Receiver`, the vendor handler), the admin REST client
(:class:`Admin`) and SDK users (:func:`log_in`). The fixtures are in conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ringline import CallEngine, MediaType
from ringline.core.usersig import gen_user_sig
from ringline.server.rest_contract import V1_CALLBACK_ACTIONS, V4_CALLBACK_COMMANDS
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, SECRET, ServerProcess, unique

RECEIVER = str(Path(__file__).parent.parent / "callback_receiver.py")
TOKEN = "ringline-callback-token-for-tests"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
ALL_STATES = ["Pending", "InFlight", "Delivered", "GivenUp", "Gone"]
WAIT = 60.0


def server_args() -> list[str]:
    return [
        "--callback-token",
        TOKEN,
        "--webhook-secret",
        WHSEC,
        "--callback-retry-delays",
        "0.2,0.5,1,2",
    ]


@dataclass
class LineProcess:
    """A helper process of these tests, ``python SCRIPT --port PORT ...``: it prints READY
    once it listens, then one JSON object a line, kept in ``lines`` in arrival order;
    :meth:`wait_until` waits for a condition on them without sleeping."""

    port: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def spawn(self, script: str, *args: str) -> None:
        """Start ``script`` with ``--port`` and ``args``; return once it says READY."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, script, "--port", str(self.port), *args, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(20):
            line = await self.proc.stdout.readline()
        assert line.strip() == b"READY", line
        self._reader = asyncio.create_task(self._read(self.proc.stdout))

    def parse(self, line: dict[str, Any]) -> dict[str, Any]:
        """One line as kept (a subclass may add to it)."""
        return line

    def add(self, line: dict[str, Any]) -> None:
        """Keep ``line`` and wake :meth:`wait_until`."""
        self.lines.append(line)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.add(self.parse(json.loads(line)))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            who = type(self).__name__
            raise AssertionError(f"{who}: {what} not within {timeout} s ({len(self.lines)} lines)") from None


@dataclass
class Receiver(LineProcess):
    """The receiver process (tests/callback_receiver.py): checks both signatures of every
    request and answers 200; ``hits`` are its lines, one a request."""

    delay: float = 0.0
    gone: bool = True

    @property
    def hits(self) -> list[dict[str, Any]]:
        return self.lines

    async def start(self, *, delay: float | None = None, hold_after: int = -1) -> Receiver:
        """Start the process; ``hold_after`` >= 0 holds every request after that many
        until :meth:`release`."""
        if delay is not None:
            self.delay = delay
        await self.spawn(
            RECEIVER,
            *("--token", TOKEN, "--secret", WHSEC, "--app-id", str(SDK_APP_ID)),
            *("--delay", str(self.delay), "--hold-after", str(hold_after)),
        )
        return self

    def parse(self, line: dict[str, Any]) -> dict[str, Any]:
        line["event"] = json.loads(line["body"])
        return line

    def release(self) -> None:
        """Answer the requests held since ``start(hold_after=…)``, and every later one."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)

    def ids(self) -> set[str]:
        return {h["id"] for h in self.hits}


class Admin:
    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        q = {
            "sdkappid": str(SDK_APP_ID),
            "identifier": "administrator",
            "usersig": gen_user_sig(SDK_APP_ID, SECRET, "administrator", 3600, now=int(time.time())),
            "random": "1",
            "contenttype": "json",
        }
        async with self.session.post(self.server.url + path, params=q, json=body) as r:
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
            return data

    async def v4(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post(f"/v4/{command}", body)
        assert data["ActionStatus"] == "OK", data
        response: dict[str, Any] = data["Response"]
        return response

    async def v4_fail(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post(f"/v4/{command}", body)
        assert data["ActionStatus"] == "FAIL", data
        return data

    async def v1(self, command: str, body: dict[str, Any]) -> Any:
        data = await self._post(f"/v1/{command}", body)
        assert data["errorCode"] == 0, data
        return data["data"]

    async def subscribe(self, base: str) -> None:
        await self.v4(
            "call_config/set_callback",
            {"Url": base + "/v4", "CallbackCommandList": list(V4_CALLBACK_COMMANDS)},
        )
        await self.v1("callback/set", {"address": base + "/v1", "actions": list(V1_CALLBACK_ACTIONS)})

    async def deliveries(self, states: list[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = {"State": states or ALL_STATES, "NumberPerPage": 100, "Page": page, **filters}
            r = await self.v4("call_callback_http_srv/get_deliveries", body)
            out += r["DeliveryList"]
            if len(out) >= r["TotalNum"] or not r["DeliveryList"]:
                return out
            page += 1

    async def counts(self) -> dict[str, int]:
        r = await self.v4("call_callback_http_srv/get_deliveries", {"NumberPerPage": 1})
        counts: dict[str, int] = r["Counts"]
        return counts

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT
    ) -> None:
        """For server state no event announces (the outbox seen over REST): re-check,
        bounded in time."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"server: {what} not within {timeout} s")
            await asyncio.sleep(0.1)


Users = Callable[[int], Awaitable[list[tuple[CallEngine, RecordingObserver, str]]]]


async def log_in(
    server: ServerProcess, n: int, engines: list[CallEngine]
) -> list[tuple[CallEngine, RecordingObserver, str]]:
    """``n`` fresh users logged in with SDK engines (kept in ``engines`` to uninit)."""
    out = []
    for _ in range(n):
        u = unique("cb")
        e = CallEngine(server.url, device_id=f"{u}-dev")
        rec = RecordingObserver()
        e.add_observer(rec)
        await e.init(SDK_APP_ID, u, server.sig(u))
        engines.append(e)
        out.append((e, rec, u))
    return out


async def talk(a: CallEngine, ra: RecordingObserver, b: CallEngine, rb: RecordingObserver, ub: str) -> str:
    """One 1v1 call from ``a`` to ``ub``, accepted by ``b``, hung up by ``b``; its id."""
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await b.hangup()
    await ra.wait_for("on_call_end", call_id=cid)
    return cid
