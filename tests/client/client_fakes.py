"""A scripted, in-process Ringline server for the client tests (docs/protocol.md).

It does the session plumbing itself (login, resume with replay from ``ack``, ping,
logout) and leaves calls to the test: an op with a handler in ``server.handlers`` is
answered by it, any other op waits in ``conn.requests`` for the test to answer.
Pushes go through :meth:`FakeServer.push`, which numbers them per session and keeps
them for replay. Tests wait on :meth:`FakeServer.wait`, re-checked on every frame and
connection change: no sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from ringline.client import CallEngine

__all__ = [
    "SDK_APP_ID",
    "SIG",
    "EngineFactory",
    "FakeConn",
    "FakeError",
    "FakeServer",
    "FakeSession",
    "info",
    "received",
]

SDK_APP_ID = 1400000000
SIG = "eJyr-fake-sig"

#: ``make_engine(**options)`` fixture type (conftest.py).
EngineFactory = Callable[..., CallEngine]


def info(role: int = 2, **extra: Any) -> dict[str, Any]:
    """A wire ``info`` dict."""
    out: dict[str, Any] = {
        "room_id": {"int_room_id": 1234, "str_room_id": ""},
        "role": role,
        "user_data": "hello",
        "chat_group_id": "",
    }
    out.update(extra)
    return out


def received(
    call_id: str, caller: str = "bob", callees: tuple[str, ...] = ("alice",), media: int = 1
) -> dict[str, Any]:
    """Args of an ``on_call_received`` push."""
    return {
        "call_id": call_id,
        "caller_id": caller,
        "callee_id_list": list(callees),
        "media_type": media,
        "info": info(2, ring_time_left=29.5, inviter_id=caller, inviter_nickname="Bob"),
    }


class FakeError(Exception):
    """Raise from a handler to refuse the request with ``code``."""

    def __init__(self, code: int, message: str = "refused by the fake server") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


Handler = Callable[["FakeConn", dict[str, Any]], "dict[str, Any] | Awaitable[Any] | None"]


@dataclass
class FakeSession:
    token: str
    user_id: str
    device_id: str
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: FakeConn | None = None
    # Held while pushing or replaying, so live pushes never overtake a replay.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class FakeConn:
    """One WebSocket connection as the server sees it."""

    def __init__(self, server: FakeServer, ws: web.WebSocketResponse, request: web.Request):
        self.server = server
        self.ws = ws
        self.request = request
        self.frames: list[dict[str, Any]] = []
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session: FakeSession | None = None
        self.closed = False

    @property
    def node(self) -> str:
        """The URL's node prefix this connection came through ("" for none)."""
        return self.request.match_info.get("node", "")

    def ops(self) -> list[str]:
        """Ops received on this connection, pings left out."""
        return [f.get("op", "?") for f in self.frames if f.get("op") != "ping"]

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(obj))

    async def respond(self, req: dict[str, Any], result: dict[str, Any] | None = None) -> None:
        await self.send({"re": req.get("id"), "ok": True, "result": result or {}})

    async def refuse(self, req: dict[str, Any], code: int, message: str = "refused") -> None:
        await self.send({"re": req.get("id"), "ok": False, "code": code, "message": message})

    async def close(self, code: int, message: str = "") -> None:
        await self.ws.close(code=code, message=message.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""
        transport = self.request.transport
        assert transport is not None
        transport.abort()

    async def next_request(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return await self.requests.get()


class FakeServer:
    def __init__(self, *, heartbeat_interval: float = 5.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_grace = 15.0
        #: Read frames but answer nothing (a hung server or a black-holed network).
        self.mute = False
        self.handlers: dict[str, Handler] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.connections: list[FakeConn] = []
        self.logins: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.pings: list[int] = []
        #: Refuse every login with (code, message), then close 4003.
        self.login_refusal: tuple[int, str] | None = None
        #: Refuse every resume with (code, message).
        self.resume_refusal: tuple[int, str] | None = None
        #: Hold resume answers until this event is set.
        self.resume_gate: asyncio.Event | None = None
        #: Replay this many already-acknowledged pushes too (a sloppy server).
        self.replay_overlap = 0
        #: What resume answers as ``answers_kept`` (None: leave the field out, as a
        #: server older than answer replay does). The fake keeps no answers itself:
        #: a request sent again reaches the test or its handler again.
        self.answers_kept: bool | None = True
        #: Nodes (URL prefixes) whose WebSockets close with this code right after the
        #: upgrade (1013: no server can take the session yet).
        self.closing_nodes: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/ws", self._ws)
        # Several URLs of one fake server ("nodes"): URL + "/n1" and so on; the node a
        # connection came through is FakeConn.node.
        app.router.add_get("/{node}/v1/ws", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for conn in self.connections:
            if not conn.closed:
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ test API

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever the server sees something."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def next_conn(self, index: int, timeout: float = 5.0) -> FakeConn:
        """The ``index``-th connection (0-based), once it has opened a session."""
        await self.wait(
            lambda: len(self.connections) > index and self.connections[index].session is not None,
            timeout,
        )
        return self.connections[index]

    def session(self, user_id: str) -> FakeSession:
        """The latest session of ``user_id``."""
        return [s for s in self.sessions.values() if s.user_id == user_id][-1]

    async def push(self, session: FakeSession, ev: str, args: dict[str, Any] | None = None) -> int:
        """Send push ``ev`` to ``session`` (kept for replay). Returns its seq."""
        async with session.lock:
            frame: dict[str, Any] = {"ev": ev, "seq": len(session.log) + 1, "args": args or {}}
            session.log.append(frame)
            conn = session.conn
            if conn is not None and not conn.closed:
                await conn.send(frame)
            return int(frame["seq"])

    def requests_of(self, op: str) -> list[dict[str, Any]]:
        return [f for c in self.connections for f in c.frames if f.get("op") == op]

    # ------------------------------------------------------------------ plumbing

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = FakeConn(self, ws, request)
        self.connections.append(conn)
        self._notify()
        if conn.node in self.closing_nodes:
            conn.closed = True
            await ws.close(code=self.closing_nodes[conn.node], message=b"try again")
            return ws
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                conn.frames.append(frame)
                await self._handle(conn, frame)
                self._notify()
        finally:
            conn.closed = True
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self._notify()
        return ws

    async def _handle(self, conn: FakeConn, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if self.mute:
            return
        if op == "ping":
            self.pings.append(frame["ack"])
            await conn.send({"pong": time.time()})
        elif op == "login":
            await self._login(conn, frame)
        elif op == "resume":
            await self._resume(conn, frame)
        elif op == "logout":
            await conn.respond(frame)
            await conn.close(1000, "logged out")
        elif isinstance(op, str) and op in self.handlers:
            try:
                result = self.handlers[op](conn, frame)
                if inspect.isawaitable(result):
                    result = await result
            except FakeError as exc:
                await conn.refuse(frame, exc.code, exc.message)
            else:
                await conn.respond(frame, result)
        else:
            await conn.requests.put(frame)

    async def _login(self, conn: FakeConn, frame: dict[str, Any]) -> None:
        self.logins.append(frame)
        if self.login_refusal is not None:
            await conn.refuse(frame, *self.login_refusal)
            await conn.close(4003, self.login_refusal[1])
            return
        n = next(self._ids)
        session = FakeSession(
            token=f"s_{n}",
            user_id=frame["user_id"],
            device_id=frame.get("device_id") or f"made-up-{n}",
        )
        self.sessions[session.token] = session
        conn.session = session
        session.conn = conn
        await conn.respond(
            frame,
            {
                "session": session.token,
                "device_id": session.device_id,
                "user_id": session.user_id,
                "heartbeat_interval": self.heartbeat_interval,
                "heartbeat_grace": self.heartbeat_grace,
                "server_time": time.time(),
                "sig_expires_at": 1715552000,
                "protocol": 1,
            },
        )

    async def _resume(self, conn: FakeConn, frame: dict[str, Any]) -> None:
        self.resumes.append(frame)
        self._notify()
        if self.resume_gate is not None:
            await self.resume_gate.wait()
        session = self.sessions.get(frame.get("session", ""))
        if self.resume_refusal is not None or session is None:
            code, message = self.resume_refusal or (-1414, "session unknown")
            await conn.refuse(frame, code, message)
            return
        ack = int(frame["ack"])
        async with session.lock:
            result: dict[str, Any] = {"session": session.token, "resumed": True, "next_seq": ack + 1}
            if self.answers_kept is not None:
                result["answers_kept"] = self.answers_kept
            await conn.respond(frame, result)
            for push in session.log[max(0, ack - self.replay_overlap) :]:
                await conn.send(push)
            conn.session = session
            session.conn = conn
