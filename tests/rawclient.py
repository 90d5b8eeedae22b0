"""A bare protocol client for tests that poke at the wire (bad frames, resume, seq)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp

from serverproc import SDK_APP_ID, ServerProcess, unique

#: Request ids, shared by every client of the process: a session resumed on a new
#: :class:`Raw` never reuses an id of that session (ids are unique per session).
_IDS = itertools.count(1)


class Raw:
    """One WebSocket speaking docs/protocol.md by hand. Pushes are collected in
    :attr:`events`; :meth:`request` waits for the matching response. Every text frame
    received (answers, pushes and anything else), in arrival order, is also kept in
    :attr:`frames`, so a test can check the order of answers and pushes
    (:meth:`index_of`, :meth:`answer_index`)."""

    def __init__(self, srv: ServerProcess, *, heartbeat: float = 0.4, local_addr: str = "") -> None:
        self.srv = srv
        self.heartbeat = heartbeat
        self.local_addr = local_addr  # connect from this loopback address (e.g. 127.0.0.7)
        self.pinger: asyncio.Task[None] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = _IDS
        self.responses: dict[int | None, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        #: Every text frame received on any socket of this client, in arrival order.
        self.frames: list[dict[str, Any]] = []
        self.cond = asyncio.Condition()
        self.reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[tuple[int | None, str]] | None = None
        self.session = ""
        self.last_seq = 0
        self.consumed = 0

    async def connect(self) -> Raw:
        if self.http is None:
            connector = aiohttp.TCPConnector(local_addr=(self.local_addr, 0)) if self.local_addr else None
            self.http = aiohttp.ClientSession(connector=connector)
        self.ws = await self.http.ws_connect(self.srv.url + "/v1/ws", autoping=True)
        self.closed = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read(self.ws, self.closed))
        if self.heartbeat:
            self.pinger = asyncio.create_task(self._ping(self.ws))
        return self

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            try:
                await ws.send_str(json.dumps({"op": "ping", "ack": self.last_seq}))
            except ConnectionError:
                return
            await asyncio.sleep(self.heartbeat)

    async def _read(
        self, ws: aiohttp.ClientWebSocketResponse, closed: asyncio.Future[tuple[int | None, str]]
    ) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            async with self.cond:
                self.frames.append(frame)
                if "ev" in frame:
                    self.events.append(frame)
                    self.last_seq = frame["seq"]
                elif "re" in frame:
                    self.responses.setdefault(frame["re"], []).append(frame)
                self.cond.notify_all()
        if not closed.done():
            closed.set_result((ws.close_code, str(ws.extra) if hasattr(ws, "extra") else ""))
        async with self.cond:
            self.cond.notify_all()

    async def send(self, frame: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def response(self, rid: int | None, timeout: float = 10.0) -> dict[str, Any]:
        async with self.cond:
            await asyncio.wait_for(self.cond.wait_for(lambda: bool(self.responses.get(rid))), timeout)
            return self.responses[rid].pop(0)

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.send({"id": rid, "op": op, **args})
        return await self.response(rid)

    async def ok(self, op: str, **args: Any) -> dict[str, Any]:
        r = await self.request(op, **args)
        assert r["ok"], r
        return dict(r["result"])

    async def login(
        self,
        user_id: str,
        *,
        device_id: str = "",
        multi_device: bool = False,
        expire: int = 86400,
        **extra: Any,
    ) -> dict[str, Any]:
        if self.ws is None:
            await self.connect()
        res = await self.ok(
            "login",
            v=1,
            sdk_app_id=SDK_APP_ID,
            user_id=user_id,
            user_sig=self.srv.sig(user_id, expire),
            device_id=device_id or user_id + "-dev",
            multi_device=multi_device,
            **extra,
        )
        self.session = res["session"]
        return res

    async def event(self, name: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The next not-yet-consumed push called ``name`` whose args match."""

        def find() -> dict[str, Any] | None:
            for i in range(self.consumed, len(self.events)):
                ev = self.events[i]
                if ev["ev"] == name and all(ev["args"].get(k) == v for k, v in match.items()):
                    self.consumed = i + 1
                    return ev
            return None

        async with self.cond:
            found: list[dict[str, Any]] = []

            def ready() -> bool:
                ev = find()
                if ev is not None:
                    found.append(ev)
                return bool(found)

            try:
                await asyncio.wait_for(self.cond.wait_for(ready), timeout)
            except TimeoutError:
                seen = [e["ev"] for e in self.events]
                raise TimeoutError(f"no {name} {match} within {timeout}s; saw {seen}") from None
            return found[0]

    def index_of(self, frame: dict[str, Any]) -> int:
        """Where ``frame`` (an object :meth:`request`, :meth:`event` or :attr:`events`
        returned) is in :attr:`frames`; ``ValueError`` if it was never received."""
        for i, f in enumerate(self.frames):
            if f is frame:
                return i
        raise ValueError(f"{frame} was not received by this client")

    def answer_index(self, rid: int | None) -> int:
        """Where the (first) answer to request ``rid`` is in :attr:`frames`."""
        for i, f in enumerate(self.frames):
            if "re" in f and f["re"] == rid:
                return i
        raise ValueError(f"no answer to request {rid} was received")

    def names(self, call_id: str | None = None) -> list[str]:
        return [e["ev"] for e in self.events if call_id is None or e["args"].get("call_id") == call_id]

    async def drop(self) -> None:
        """Close the socket without logging out (the session stays resumable)."""
        if self.pinger is not None:
            self.pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pinger
            self.pinger = None
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader

    async def close(self) -> None:
        await self.drop()
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        assert self.closed is not None
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)


async def logged_in(server: ServerProcess, clients: list[Raw], prefix: str, **extra: Any) -> tuple[Raw, str]:
    """A connected client logged in as a fresh user ``prefix…``; kept in ``clients``.
    ``extra``: more fields of the login request."""
    c = await Raw(server).connect()
    clients.append(c)
    user = unique(prefix)
    await c.login(user, **extra)
    return c, user
