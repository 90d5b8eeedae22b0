"""The WebSocket endpoint ``/v1/ws``: frames in, switchboard inputs out (docs/protocol.md).

Each connection has two tasks: this reader, and a writer that drains the session's
queue of frames so that sending never blocks the switchboard. Bad frames get an error
response and the connection stays open; only a sustained flood closes it (4008). If
sending fails for any other reason than the connection going away, the writer logs the
cause once and closes the connection with :data:`SEND_FAILED_CLOSE` (1011): the session
lives on, and the device resumes it and gets every unacknowledged push again.

Answers to a logged-in session's requests are remembered by request ``id`` (the last
:data:`~.session.ANSWERS_KEPT`, for as long as the session lives) so that a client which lost
an answer with its connection can send the request again after ``resume``: it gets
the same answer and the request does not run twice (docs/protocol.md "Requests").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import WebSocketError, WSMsgType, web

from ..core import machine as m
from ..core.enums import CallResultType, MediaType
from ..core.errors import ErrorCode, LocalCallError
from ..core.protocol import (
    DEFAULT_RING_TIMEOUT,
    DEVICE_ID,
    MAX_CALL_ID,
    MAX_DEVICE_ID,
    MAX_GROUP_ID,
    MAX_RECENT,
    PROTOCOL_VERSION,
    login_result,
    resume_result,
)
from ..core.types import CallParams, OfflinePushInfo, RoomId
from ..core.usersig import UserSigError, verify_user_sig
from .callbacks import PLATFORMS
from .hub import Hub, _cause, record_to_recent
from .inbound import InputError, parse_json, peer_address, request_id, safe_utf8
from .rest_contract import MAX_UNIX_S
from .session import ANSWERS_KEPT, Close, Frame, Link, RequestAnswers, Session, device_key
from .session import dumps as _dumps
from .sfu import JanusError
from .store import base as st
from .wsserver import WsConnection, text_frames

__all__ = [
    "FLOOD_REFUSALS",
    "FLOOD_WINDOW",
    "PROTOCOL_VERSION",
    "RERUNNABLE_OPS",
    "SEND_FAILED_CLOSE",
    "WsHandler",
]

log = logging.getLogger("ringline.server")

#: A connection whose frames are refused for the rate limit this many times within
#: :data:`FLOOD_WINDOW` seconds is closed with 4008 (docs/protocol.md "Limits").
FLOOD_REFUSALS = 100
FLOOD_WINDOW = 10.0
#: Requests that only read: one sent again simply runs again (its answer, up to 200
#: call records, would be costly to keep for every session).
RERUNNABLE_OPS = frozenset({"query_recent_calls", "get_state"})
#: Close code when sending to a connection failed (RFC 6455 "internal error"): the
#: device reconnects and resumes; its session and unacknowledged pushes are kept.
SEND_FAILED_CLOSE = 1011
#: Tests only: the first frame that contains this text fails to send, once per process
#: (how the tests make the writer fail; nothing real does once strings are checked).
_FAIL_SEND_ENV = "RINGLINE_TEST_FAIL_SEND"


class BadParam(LocalCallError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PARAM_INVALID, message)


# ---------------------------------------------------------------- argument readers


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in d or d[key] is None:
        if default is ...:
            raise BadParam(f"missing field '{key}'")
        return default
    v = d[key]
    if isinstance(v, bool) and typ in (int, float, (int, float)):
        raise BadParam(f"field '{key}' must be a number, not a boolean")
    if not isinstance(v, typ):
        want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise BadParam(f"field '{key}' must be {want}, got {type(v).__name__}")
    return v


def _str(d: dict[str, Any], key: str, default: Any = ..., max_len: int = 4096) -> str:
    v: str = _get(d, key, str, default)
    if len(v) > max_len:
        raise BadParam(f"field '{key}' is longer than {max_len} characters")
    return v


#: What a device may name as its ``platform`` (the callbacks' ``OptPlatform``).
DEVICE_PLATFORMS = tuple(p for p in PLATFORMS if p != "RESTAPI")


def _call_id(d: dict[str, Any]) -> str:
    """The request's ``call_id`` (at most :data:`~ringline.core.protocol.MAX_CALL_ID` characters)."""
    return _str(d, "call_id", max_len=MAX_CALL_ID)


def _platform(d: dict[str, Any], default: str | None) -> str | None:
    """The optional ``platform`` of a login or resume: one of :data:`DEVICE_PLATFORMS`."""
    v: str | None = _get(d, "platform", str, default)
    if v is not None and v not in DEVICE_PLATFORMS:
        raise BadParam(f"field 'platform' must be one of {', '.join(DEVICE_PLATFORMS)}, not {v[:40]!r}")
    return v


def _ids(d: dict[str, Any], key: str) -> tuple[str, ...]:
    v = _get(d, key, list)
    if len(v) > 64:
        raise BadParam(f"field '{key}' has {len(v)} entries; a call has at most 9 members")
    for x in v:
        if not isinstance(x, str):
            raise BadParam(f"field '{key}' must be a list of user id strings")
    return tuple(v)


def _media(d: dict[str, Any], key: str = "media_type") -> MediaType:
    v = _get(d, key, int)
    try:
        return MediaType(v)
    except ValueError:
        raise BadParam(f"'{key}' must be 1 (AUDIO) or 2 (VIDEO), got {v}") from None


def _params(d: dict[str, Any]) -> CallParams:
    p = _get(d, "params", dict, {})
    room = p.get("room_id")
    room_id = None
    if room is not None:
        if not isinstance(room, dict):
            raise BadParam("params.room_id must be {int_room_id, str_room_id}")
        room_id = RoomId(
            _get(room, "int_room_id", int, 0), _str(room, "str_room_id", "", max_len=m.MAX_ROOM_STR)
        )
    push = p.get("offline_push_info")
    push_info = None
    if isinstance(push, dict):
        push_info = OfflinePushInfo(
            title=_str(push, "title", "", 256),
            desc=_str(push, "desc", "", 1024),
            extension=_str(push, "extension", "", 4096),
        )
    return CallParams(
        room_id=room_id,
        timeout=_get(p, "timeout", int, DEFAULT_RING_TIMEOUT),
        user_data=_str(p, "user_data", "", max_len=4000),
        offline_push_info=push_info,
        chat_group_id=_str(p, "chat_group_id", "", max_len=MAX_GROUP_ID),
        is_ephemeral_call=_get(p, "is_ephemeral_call", bool, False),
        record=_get(p, "record", bool, False),
    )


class _Conn(Link):
    """Per-connection state: the socket and its queue of frames (:class:`Link`), the
    session once logged in, and the flood meter."""

    __slots__ = (
        "addr",
        "allowance",
        "cause",
        "close_code",
        "counted",
        "flooded",
        "handler",
        "held",
        "last",
        "login_timer",
        "ops",
        "out",
        "ready",
        "refused",
        "session",
        "task",
        "user",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse | WsConnection, rate: float, handler: WsHandler) -> None:
        super().__init__()
        self.ws = ws
        self.handler = handler
        #: the WebSocket is open for frames (between ``prepare`` and a close)
        self.ready = False
        #: writes text frames at once (None: every frame goes through the writer task)
        self.out: _FrameWriter | WsConnection | None = None
        #: the writer task, while frames wait (for the socket to drain, or a close)
        self.task: asyncio.Task[None] | None = None
        self.session: Session | None = None
        self.allowance = rate
        self.last = time.monotonic()
        #: when frames over the rate limit came (made at the first: a deque is 760 bytes)
        self.refused: deque[float] | None = None
        self.flooded = False
        self.addr = ""  # the remote address, counted in WsHandler._unauthenticated until login
        self.counted = False
        self.login_timer: asyncio.TimerHandle | None = None
        #: requests being processed: id -> (op, arrival), for the logs and metrics
        self.ops: dict[int, tuple[str, float]] = {}
        #: the user a login named (refused or not), for the logs
        self.user = ""
        #: why the server closed the connection, for the logs ("" if it did not)
        self.cause = ""
        #: the close code the server sent (None: the client closed, or the connection broke)
        self.close_code: int | None = None
        #: text frames held while the hub's cork is in (written together at its end)
        self.held: list[str] | None = None

    def put(self, frame: Frame) -> None:
        """Send ``frame`` after the others: written at once when nothing waits before
        it (one ``send()``, no task switch), held for the end of the hub's round while
        its :class:`~.session.Cork` is in (one ``send()`` for all of them), else queued
        for the writer task."""
        out = self.out
        if out is not None and self.task is None and not self.frames and type(frame) is str and self.ready:
            if self.ws.closed:
                return  # a close frame went out: nothing may follow it
            cork = self.handler.cork
            if cork.depth:
                held = self.held
                if held is None:
                    self.held = [frame]
                    cork.hold(self)
                else:
                    held.append(frame)
                return
            self._write((frame,))
            return
        held = self.held
        if held:  # frames held before this one go first
            self.held = None
            self.frames.extend(held)
        self.frames.append(frame)
        self.queued()

    def write_held(self) -> None:
        held = self.held
        if not held:
            return
        self.held = None
        if self.out is None or self.task is not None or self.frames or not self.ready:
            self.frames[:0] = held
            self.queued()
        elif not self.ws.closed:
            self._write(held)

    def _write(self, texts: Sequence[str]) -> None:
        out = self.out
        assert out is not None
        try:
            out.write(texts)
        except ConnectionResetError:
            return  # the connection is going: the session gets it again on resume
        except Exception as exc:
            self.handler._write_failed(self, exc)
            return
        if out.paused():
            self.queued()  # the writer task waits for the socket to drain

    def queued(self) -> None:
        if self.task is None and self.ready:
            self.task = asyncio.get_running_loop().create_task(self.handler._writer(self))

    async def close(self, code: int, message: str) -> None:
        self.ended_by_server(code, message)
        await self.ws.close(code=code, message=_close_reason(message))

    def ended_by_server(self, code: int, cause: str) -> None:
        """The server closes the connection with ``code`` because of ``cause`` (the
        first reason given is the one logged)."""
        if self.close_code is None:
            self.close_code, self.cause = code, cause


class _FrameWriter:
    """Writes a connection's text frames straight to its transport: one write for any
    number of them, no task switch. Flow control as aiohttp's own writer:
    :meth:`paused` while the transport's buffer is over its high-water mark,
    :meth:`drain` waits until it is not. Only for connections without compression,
    which the server never negotiates; aiohttp's pings, pongs and close frames still go
    through aiohttp."""

    __slots__ = ("hook", "protocol", "transport")

    def __init__(
        self, transport: asyncio.Transport, protocol: Any, hook: Callable[[str], None] | None
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.hook = hook

    @classmethod
    def of(cls, request: web.Request, hook: Callable[[str], None] | None = None) -> _FrameWriter | None:
        """The writer of ``request``'s connection, or None where its transport or
        protocol lacks what it needs (then frames go through ``send_str``). ``hook``
        sees every text first (and may raise)."""
        transport, protocol = request.transport, request.protocol
        if (
            transport is None
            or not hasattr(transport, "writelines")
            or not hasattr(protocol, "writing_paused")
            or not hasattr(protocol, "_drain_helper")
        ):
            return None
        return cls(transport, protocol, hook)

    def write(self, texts: Sequence[str]) -> None:
        """Write ``texts`` as text frames; ConnectionResetError once the connection
        is closing."""
        transport = self.transport
        if transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        transport.write(text_frames(texts, self.hook))

    def paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return bool(self.protocol.writing_paused)

    async def drain(self) -> None:
        """Wait until the transport takes more (raises once the connection is lost)."""
        await self.protocol._drain_helper()


def _close_reason(message: str) -> bytes:
    """A close frame's reason: at most 120 characters of ``message``, as UTF-8."""
    return message[:120].encode("utf-8", "backslashreplace")


class WsHandler:
    """Serves ``GET /v1/ws``. One instance per server."""

    def __init__(self, hub: Hub, *, secret_key: str, sdk_app_id: int) -> None:
        self.hub = hub
        #: the hub's cork: frames put while it is in are written at the end of the round
        self.cork = hub.cork
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self._background: set[asyncio.Task[Any]] = set()
        #: WebSockets open without a login, by remote address (capped per address)
        self._unauthenticated: dict[str, int] = {}
        s = hub.settings
        self.rate = s.rate_limit_per_s
        self.max_frame = s.max_frame_bytes
        #: the largest message either WebSocket reads (beyond it: close 1009)
        self.max_message = max(self.max_frame * 16, 1 << 20)
        self._fail_send = os.environ.get(_FAIL_SEND_ENV, "")
        #: set on a cluster node: another node that relays a client's WebSocket here
        #: proves it with this value in :data:`PEER_HEADER`, and then its
        #: ``X-Forwarded-For`` is the client's address (docs/cluster.md)
        self.peer_token = ""
        #: connections served by Ringline's own WebSocket (wsserver.py), until they end
        self._lean: set[_Conn] = set()
        self._ops: dict[str, Callable[[_Conn, int, dict[str, Any]], None]] = {
            "calls": self._op_calls,
            "accept": self._simple(m.Accept),
            "reject": self._simple(m.Reject),
            "ignore": self._simple(m.Ignore),
            "hangup": self._simple(m.Hangup),
            "join": self._simple(m.Join),
            "invite_user": self._op_invite,
            "switch_call_media_type": self._op_switch,
            "open_camera": self._flag("video", True),
            "close_camera": self._flag("video", False),
            "open_microphone": self._flag("audio", True),
            "close_microphone": self._flag("audio", False),
            "signal": self._op_signal,
            "sfu": self._op_sfu,
            "set_self_info": self._op_self_info,
            "enable_multi_device_ability": self._op_multi,
            "renew_user_sig": self._op_renew,
            "query_recent_calls": self._op_query,
            "delete_record_calls": self._op_delete,
            "get_state": self._op_state,
            "logout": self._op_logout,
        }

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (a store query, closing an old socket); it is
        cancelled by :meth:`close`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Cancel background work (pending ``query_recent_calls``); call at shutdown,
        after the hub has drained and before the store closes."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Connections without a session (the hub closed the others): aiohttp closes its
        # own at shutdown; Ringline's own ones are closed here, the same way.
        for conn in list(self._lean):
            if isinstance(conn.ws, WsConnection):
                conn.ws.send_close(1001, b"server shutting down")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        addr = peer_address(request, self.peer_token) or "?"
        if self._unauthenticated.get(addr, 0) >= self.hub.settings.max_unauthenticated:
            return web.Response(
                status=429,
                text=f"{addr} already holds {self.hub.settings.max_unauthenticated} WebSockets that "
                "have not logged in; log in on those first (or raise --max-unauthenticated)\n",
            )
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=self.max_message, compress=False)
        conn = self._opened(_Conn(ws, self.rate, self), addr)
        try:
            await ws.prepare(request)
        except BaseException:
            self._authenticated(conn)
            raise
        _require_masking(request, ws)
        conn.out = _FrameWriter.of(request, self._check_fail if self._fail_send else None)
        conn.ready = True
        if conn.frames:
            conn.queued()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._binary(conn)
                elif msg.type is WSMsgType.ERROR:
                    break
                if ws.closed:
                    break
        finally:
            writer = self._release(conn)
            if writer is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        return ws

    def _opened(self, conn: _Conn, addr: str) -> _Conn:
        """``conn`` from ``addr`` opened: it counts against the address's cap of
        WebSockets without a login until it logs in, and must do so in time."""
        self._unauthenticated[addr] = self._unauthenticated.get(addr, 0) + 1
        conn.addr, conn.counted = addr, True
        conn.login_timer = asyncio.get_running_loop().call_later(
            self.hub.settings.login_timeout, self._login_timed_out, conn
        )
        return conn

    def _release(self, conn: _Conn) -> asyncio.Task[None] | None:
        """``conn`` ended: log it, detach its session, cancel its writer (returned, for
        the caller that can wait for it to end)."""
        self._authenticated(conn)
        self._ended(conn)
        if conn.session is not None:
            conn.session.detach(conn)
        conn.ready, conn.out = False, None
        writer = conn.task
        if writer is not None:
            writer.cancel()
        return writer

    # Ringline's own WebSocket (wsserver.py): the same connection life as handle(),
    # driven by the protocol's callbacks instead of a task per connection.

    def lean_accepts(self, transport: asyncio.Transport) -> bool:
        """True if a WebSocket from ``transport``'s address may open now (else aiohttp
        takes the request and answers 429, naming the cap)."""
        addr = _remote(transport)
        return self._unauthenticated.get(addr, 0) < self.hub.settings.max_unauthenticated

    def attach(self, transport: asyncio.Transport) -> WsConnection:
        """Serve ``transport``, whose upgrade was just answered with 101: it becomes a
        :class:`~.wsserver.WsConnection`; feed it any bytes read past the handshake."""
        lean = WsConnection(transport, self, self.max_message, self._check_fail if self._fail_send else None)
        transport.set_protocol(lean)
        conn = self._opened(_Conn(lean, self.rate, self), _remote(transport))
        lean.conn = conn
        conn.out = lean
        conn.ready = True
        self._lean.add(conn)
        return lean

    def _binary(self, conn: _Conn) -> None:
        self._error(
            conn, None, ErrorCode.MALFORMED_FRAME, "binary frames are not used; send JSON text frames"
        )

    def _protocol_error(self, conn: _Conn, code: int, reason: str) -> None:
        """The client broke RFC 6455; the connection closes with ``code``."""
        conn.ended_by_server(code, f"WebSocket protocol error: {reason}")

    def _lean_lost(self, conn: _Conn) -> None:
        """A connection of Ringline's own WebSocket ended (as handle()'s ``finally``)."""
        if conn not in self._lean:
            return
        self._lean.discard(conn)
        self._release(conn)

    def _authenticated(self, conn: _Conn) -> None:
        """``conn`` logged in (or closed): its login timer stops, and it no longer
        counts against its address's cap of WebSockets without a login."""
        if conn.login_timer is not None:
            conn.login_timer.cancel()
            conn.login_timer = None
        if conn.counted:
            conn.counted = False
            left = self._unauthenticated.get(conn.addr, 0) - 1
            if left > 0:
                self._unauthenticated[conn.addr] = left
            else:
                self._unauthenticated.pop(conn.addr, None)

    def _login_timed_out(self, conn: _Conn) -> None:
        conn.login_timer = None
        if conn.session is None and not conn.ws.closed:
            timeout = self.hub.settings.login_timeout
            message = f"no login or resume within {timeout:g} s"
            conn.put(Close(4010, message))

    async def _writer(self, conn: _Conn) -> None:
        """Send ``conn``'s queued frames in order (waiting for the socket to drain
        when it must), close on a :class:`Close`, and end when none are left."""
        ws = conn.ws
        try:
            while True:
                out = conn.out
                if out is not None and out.paused():
                    await out.drain()
                frames = conn.take()
                if not frames or ws.closed:
                    return
                texts: list[str] = []
                for frame in frames:
                    if isinstance(frame, Close):
                        if texts:
                            await self._send_frames(conn, texts)
                        conn.ended_by_server(frame.code, frame.message)
                        conn.ready = False  # nothing follows a close
                        await ws.close(code=frame.code, message=_close_reason(frame.message))
                        return
                    texts.append(frame)
                await self._send_frames(conn, texts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ws.closed or isinstance(exc, ConnectionResetError):
                return  # the connection went away; the reader ends with it
            await self._writer_failed(conn, exc)
        finally:
            conn.task = None

    def _check_fail(self, text: str) -> None:
        """The failure made on purpose by the tests (``RINGLINE_TEST_FAIL_SEND``)."""
        if self._fail_send and self._fail_send in text:
            self._fail_send = ""
            raise OSError(f"a failure made on purpose by {_FAIL_SEND_ENV}")

    def _write_failed(self, conn: _Conn, exc: Exception) -> None:
        """Writing a frame at once failed: as :meth:`_writer_failed`, from a task."""
        if conn.ws.closed or isinstance(exc, ConnectionResetError):
            return
        task = asyncio.get_running_loop().create_task(self._writer_failed(conn, exc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_frames(self, conn: _Conn, texts: list[str]) -> None:
        """Send ``texts`` as text frames: with one write (one ``send()``) when the
        connection allows it, else one by one through aiohttp."""
        out = conn.out
        if out is None:
            ws = conn.ws
            if not isinstance(ws, web.WebSocketResponse):
                raise ConnectionResetError("the connection is gone")
            for text in texts:
                self._check_fail(text)
                await self._send_frame(ws, text)
            return
        out.write(texts)

    async def _send_frame(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            await ws.send_str(text)
        except UnicodeEncodeError:
            # Cannot happen: every value is checked on the way in (inbound.py). Should
            # one slip through, the frame goes out escaped rather than failing.
            log.error("a frame held text UTF-8 cannot encode; sent it escaped")
            await ws.send_str(safe_utf8(text))

    async def _writer_failed(self, conn: _Conn, exc: Exception) -> None:
        """Sending failed on a live connection: close it so that the device resumes,
        rather than leave it looking live while nothing reaches it."""
        s = conn.session
        who = f"device {s.device_id} of {s.user_id}" if s is not None else "a connection not logged in"
        log.error(
            "%s: sending failed (%s); closing the connection with %d, the device resumes "
            "and gets its events again",
            who,
            _cause(exc),
            SEND_FAILED_CLOSE,
        )
        conn.ended_by_server(SEND_FAILED_CLOSE, f"sending failed ({_cause(exc)})")
        with contextlib.suppress(Exception):
            await conn.ws.close(
                code=SEND_FAILED_CLOSE, message=b"sending failed; resume to get the events again"
            )

    def _send(self, conn: _Conn, text: str) -> None:
        conn.put(text)

    def _reply(self, conn: _Conn, rid: int | None, result: Any) -> None:
        self._finished(conn, rid)
        self._send(conn, _dumps({"re": rid, "ok": True, "result": result}))

    def _error(self, conn: _Conn, rid: int | None, code: int, message: str) -> None:
        self._finished(conn, rid, int(code), message)
        self._send(conn, _dumps({"re": rid, "ok": False, "code": int(code), "message": message}))

    def _finished(self, conn: _Conn, rid: int | None, code: int = 0, message: str = "") -> None:
        """Request ``rid`` is answered (``code`` ≠ 0: refused): log a refusal once, with
        its cause, and time the request for the metrics."""
        entry = conn.ops.pop(rid, None) if rid is not None else None
        op = entry[0] if entry is not None else None
        if code:
            s = conn.session
            log.info(
                "request refused: %s",
                message,
                extra={
                    "op": op,
                    "code": code,
                    "user_id": s.user_id if s is not None else (conn.user or None),
                    "device_id": s.client_device_id if s is not None else None,
                    "remote": conn.addr,
                },
            )
        metrics = self.hub.metrics
        if metrics is not None and entry is not None:
            metrics.request_done(entry[0], time.perf_counter() - entry[1], code)
            if entry[0] == "resume":
                metrics.resumes.labels("refused" if code else "resumed").inc()

    def _ended(self, conn: _Conn) -> None:
        """The connection is over: log it once, with its close code and cause."""
        code = conn.close_code if conn.close_code is not None else conn.ws.close_code
        if conn.cause:
            cause = conn.cause
        elif code is None or code == 1006:
            cause = "connection lost"
        else:
            cause = "closed by the client"
        s = conn.session
        if s is not None or conn.user:
            log.info(
                "connection closed: %s",
                cause,
                extra={
                    "close_code": code,
                    "cause": cause,
                    "user_id": s.user_id if s is not None else conn.user,
                    "device_id": s.client_device_id if s is not None else None,
                    "remote": conn.addr,
                },
            )
        else:
            log.info(
                "connection closed before a login: %s",
                cause,
                extra={"close_code": code, "cause": cause, "remote": conn.addr},
            )
        if self.hub.metrics is not None:
            self.hub.metrics.closed.labels(str(code if code is not None else 1006)).inc()

    # Answers to the ops of a logged-in session go through these two: they are
    # remembered for a copy of the request sent again (see RequestAnswers).

    def _ok(self, conn: _Conn, rid: int, result: Any) -> None:
        self._finished(conn, rid)
        self._answer(conn, rid, _dumps({"re": rid, "ok": True, "result": result}))

    def _fail(self, conn: _Conn, rid: int, code: int, message: str) -> None:
        self._finished(conn, rid, int(code), message)
        self._answer(conn, rid, _dumps({"re": rid, "ok": False, "code": int(code), "message": message}))

    def _answer(self, conn: _Conn, rid: int, text: str) -> None:
        s = conn.session
        answers = s.answers if s is not None else None
        entry = answers.running.pop(rid, None) if answers is not None else None
        if s is None or answers is None or entry is None:
            self._send(conn, text)
            return
        fingerprint, latest = entry
        answers.keep(rid, fingerprint, text)
        # Not sent if the session has no connection now, or a newer one than the one
        # the latest copy came on: the client sends the request again after resuming,
        # and gets the kept answer then (once).
        if s.link is latest:
            latest.put(text)

    def _seen(self, conn: _Conn, answers: RequestAnswers, rid: int, fingerprint: int) -> bool:
        """True if request ``rid`` was received before in this session (it is answered
        here or when its first copy is done; it does not run again)."""
        done = answers.done.get(rid)
        running = answers.running.get(rid) if done is None else None
        if done is None and running is None:
            if answers.floor is not None and rid <= answers.floor:
                self._error(
                    conn,
                    rid,
                    ErrorCode.SIGNALING_SEND_FAIL,
                    f"request id {rid} is older than the last {ANSWERS_KEPT} answers this "
                    "server keeps for the session and is not run again: it may or may not "
                    "have taken effect (request ids must increase within a session)",
                )
                return True
            return False
        first = done[0] if done is not None else running[0] if running is not None else None
        if first != fingerprint:
            self._error(
                conn,
                rid,
                ErrorCode.PARAM_INVALID,
                f"request id {rid} was already used in this session for another request; "
                "ids must be unique within a session: keep one counter across reconnects",
            )
        elif done is not None:
            self._send(conn, done[1])
        else:
            answers.running[rid] = (fingerprint, conn)
        return True

    def _frame(self, conn: _Conn, data: str) -> None:
        if conn.flooded:
            return  # closing with 4008; nothing more is read
        now = time.monotonic()
        # Token bucket: `rate` frames/s, bursts up to 2x.
        conn.allowance = min(self.rate * 2, conn.allowance + (now - conn.last) * self.rate)
        conn.last = now
        if conn.session is not None:
            conn.session.last_seen = time.time()
        if conn.allowance < 1.0:
            self._refuse_flood(conn, data, now)
            return
        conn.allowance -= 1.0
        if _utf8_size(data, self.max_frame) > self.max_frame:
            self._error(
                conn,
                request_id(data, read_up_to=self.max_frame),
                ErrorCode.FRAME_TOO_LARGE,
                f"frame over {self.max_frame} bytes (UTF-8); this request did not run: send less per frame",
            )
            return
        try:
            req = parse_json(data)  # every value checked: text, numbers, nesting
        except InputError as e:
            code = ErrorCode.MALFORMED_FRAME if e.structural else ErrorCode.PARAM_INVALID
            self._error(conn, e.request_id, code, e.message())
            return
        if not isinstance(req, dict):
            self._error(conn, None, ErrorCode.MALFORMED_FRAME, "frame must be a JSON object")
            return
        rid = req.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int)):
            self._error(conn, None, ErrorCode.MALFORMED_FRAME, "'id' must be an integer")
            return
        op = req.get("op")
        if op == "ping":
            s = conn.session
            ack = req.get("ack")
            if s is not None and isinstance(ack, int) and not isinstance(ack, bool):
                s.ack(ack)
            self._send(conn, _dumps({"pong": time.time()}))
            return
        if not isinstance(op, str):
            self._error(conn, rid, ErrorCode.MALFORMED_FRAME, "missing 'op' (a string)")
            return
        if rid is not None:
            conn.ops[rid] = (op, time.perf_counter())
        kept = False  # the answer is remembered for copies of this request
        try:
            if op in ("login", "resume"):
                (self._op_login if op == "login" else self._op_resume)(conn, rid, req)
                if conn.session is not None:
                    self._authenticated(conn)
                return
            handler = self._ops.get(op)
            if handler is None:
                raise LocalCallError(
                    ErrorCode.UNKNOWN_OP, f"unknown op {op!r}; see docs/protocol.md for the list"
                )
            if conn.session is None:
                raise LocalCallError(
                    ErrorCode.NOT_LOGGED_IN, "log in first: send a 'login' or 'resume' request"
                )
            if rid is None:
                raise LocalCallError(ErrorCode.MALFORMED_FRAME, f"request '{op}' needs an integer 'id'")
            if op in RERUNNABLE_OPS:
                handler(conn, rid, req)
                return
            answers = conn.session.keep_answers()
            # Stable across processes: a cluster's next owner compares it (handover).
            fingerprint = zlib.crc32(
                data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
            )
            if self._seen(conn, answers, rid, fingerprint):
                return
            answers.running[rid] = (fingerprint, conn)
            kept = True
            handler(conn, rid, req)
        except LocalCallError as e:
            if kept and rid is not None:
                self._fail(conn, rid, e.code, e.message)
            else:
                self._error(conn, rid, e.code, e.message)
        except Exception:  # a bug must not take the connection down with it
            log.exception("op %r failed", op)
            message = "internal error; the server logged it"
            if kept and rid is not None:
                self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, message)
            else:
                self._error(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, message)

    def _refuse_flood(self, conn: _Conn, data: str, now: float) -> None:
        """Refuse a frame over the rate limit with ``-1413``, answering its own ``id``;
        the :data:`FLOOD_REFUSALS`-th refusal within :data:`FLOOD_WINDOW` seconds
        closes the connection with 4008 (docs/protocol.md "Limits")."""
        refused = conn.refused
        if refused is None:
            refused = conn.refused = deque()
        refused.append(now)
        while refused and refused[0] <= now - FLOOD_WINDOW:
            refused.popleft()
        self._error(
            conn,
            request_id(data, read_up_to=self.max_frame),
            ErrorCode.RATE_LIMITED,
            f"over {self.rate:g} frames/s; this request did not run: slow down and send it again "
            f"({FLOOD_REFUSALS} refusals within {FLOOD_WINDOW:g} s close the connection with 4008)",
        )
        if len(refused) >= FLOOD_REFUSALS:
            conn.flooded = True
            s = conn.session
            log.warning(
                "connection of %s closed: %d frames over the rate limit within %g s",
                s.device_id if s is not None else "a device not logged in",
                len(refused),
                FLOOD_WINDOW,
            )
            conn.put(Close(4008, "flooding: over the rate limit"))

    # ------------------------------------------------------------------ session ops

    def _check_version(self, req: dict[str, Any]) -> None:
        v = req.get("v", PROTOCOL_VERSION)
        if v != PROTOCOL_VERSION:
            raise LocalCallError(
                ErrorCode.PROTOCOL_VERSION,
                f"protocol version {v!r} is not supported; this server speaks {PROTOCOL_VERSION}",
            )

    def _op_login(self, conn: _Conn, rid: int | None, req: dict[str, Any]) -> None:
        self._check_version(req)
        if conn.session is not None:
            raise LocalCallError(ErrorCode.REQUEST_REPEATED, "already logged in on this connection")
        app_id = _get(req, "sdk_app_id", int)
        user_id = _str(req, "user_id", max_len=64)
        sig = _str(req, "user_sig", max_len=8192)
        device_id = _str(req, "device_id", "", max_len=MAX_DEVICE_ID) or "d_" + _rand()
        if not DEVICE_ID.fullmatch(device_id):
            raise BadParam(f"device_id must be 1-{MAX_DEVICE_ID} chars of [A-Za-z0-9_.:-]")
        multi = _get(req, "multi_device", bool, False)
        platform = _platform(req, "Unknown") or "Unknown"
        sfu = _get(req, "sfu", bool, False)
        if not m.valid_user_id(user_id):
            raise BadParam("user_id must be 1-32 chars of [A-Za-z0-9_-]")
        conn.user = user_id
        if app_id != self.sdk_app_id:
            self._close_after_error(
                conn,
                rid,
                ErrorCode.SIG_APP_MISMATCH,
                f"this server serves sdk_app_id {self.sdk_app_id}, not {app_id}",
            )
            return
        try:
            info = verify_user_sig(
                sig, sdk_app_id=app_id, user_id=user_id, secret_key=self.secret_key, now=time.time()
            )
        except UserSigError as e:
            self._close_after_error(conn, rid, e.code, e.message)
            return
        hub = self.hub
        # Scoped to the user: another user's login with this device_id is another device.
        s = hub.new_session(device_key(user_id, device_id), user_id, multi, float(info.expires_at))
        s.client_ip, s.platform = ("" if conn.addr == "?" else conn.addr), platform
        s.sfu = sfu
        mailbox = hub.attach(s)
        s.attach(conn)
        conn.session = s
        result = login_result(
            session=s.token,
            device_id=device_id,
            user_id=user_id,
            sig_expires_at=info.expires_at,
            server_time=time.time(),
            heartbeat_interval=hub.settings.heartbeat_interval,
            heartbeat_grace=hub.settings.heartbeat_grace,
            ice_servers=hub.settings.ice_server_list(user_id),
            ice_transport_policy=hub.settings.ice_transport_policy,
        )

        def deliver_mailbox() -> None:
            for name, args in mailbox:
                s.push(name, args)

        def refused(message: str) -> None:
            # The session could not be saved: the login did not happen.
            self._error(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, message)
            deliver_mailbox()  # still owed: kept for the next login of the device
            hub.end_session(s, 4003, "login failed: the server could not save the session", gone=True)
            if conn.session is s:
                conn.session = None
            with contextlib.suppress(LocalCallError):
                hub.submit(m.Logout(s.device_id))

        try:
            hub.submit(
                m.Login(s.device_id, user_id, multi, float(info.expires_at)),
                respond=lambda _v: self._reply(conn, rid, result),
                writes=[st.SessionWrite(s.row())],
                before=deliver_mailbox,
                refused=refused,
            )
        except LocalCallError:
            hub.end_session(s, 4003, "login refused")
            conn.session = None
            raise

    def _close_after_error(self, conn: _Conn, rid: int | None, code: int, message: str) -> None:
        self._error(conn, rid, code, message)
        conn.put(Close(4003, "login failed"))

    def _op_resume(self, conn: _Conn, rid: int | None, req: dict[str, Any]) -> None:
        self._check_version(req)
        token = _str(req, "session", max_len=128)
        ack = _get(req, "ack", int, 0)
        platform = _platform(req, None)
        sfu = _get(req, "sfu", bool, False)
        hub = self.hub
        s = hub.sessions.get(token)
        if s is None or s.closed:
            raise LocalCallError(
                ErrorCode.SESSION_UNKNOWN,
                "session unknown or expired; log in again with the same device_id",
            )
        old = s.attach(conn)
        s.client_ip = "" if conn.addr == "?" else conn.addr
        if platform is not None:
            s.platform = platform
        if s.sfu is not sfu:
            s.sfu = sfu
            cid = hub.sb.current_call_of(s.device_id)
            if cid is not None and hub.sfu is not None:
                hub.sfu.touch(cid)
        s.last_seen = time.time()
        conn.session = s
        if old is not None and old is not conn:
            self._spawn(old.close(4000, "resumed elsewhere"))
        restored = s.restored and not s.handed_over
        self._reply(
            conn,
            rid,
            resume_result(
                session=s.token,
                # False after a server restart: answers given before it are not known,
                # so requests still waiting for theirs must not be sent again.
                answers_kept=not restored,
                device_id=s.client_device_id,
                user_id=s.user_id,
                next_seq=ack + 1,
                sig_expires_at=s.sig_expires_at,
                server_time=time.time(),
                heartbeat_interval=hub.settings.heartbeat_interval,
                heartbeat_grace=hub.settings.heartbeat_grace,
                # TURN credentials are renewed: a fresh lifetime from now.
                ice_servers=hub.settings.ice_server_list(s.user_id),
                ice_transport_policy=hub.settings.ice_transport_policy,
            ),
        )
        replayed = s.replay_after(ack)
        if hub.metrics is not None and replayed:
            hub.metrics.replayed.inc(replayed)
        if restored or s.handed_over:
            s.handed_over = False
            hub.submit(m.Login(s.device_id, s.user_id, s.multi_device, s.sig_expires_at, resumed=True))

    def _op_logout(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        s = conn.session
        assert s is not None
        hub = self.hub

        def close() -> None:
            hub.end_session(s, 1000, "logged out")

        def refused(message: str) -> None:
            # The logout did not happen: the session stays, and the switchboard, which
            # let the device go, takes it back (it may send logout again).
            self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, message)
            if not s.closed:
                with contextlib.suppress(LocalCallError):
                    hub.submit(m.Login(s.device_id, s.user_id, s.multi_device, s.sig_expires_at))

        hub.submit(
            m.Logout(s.device_id),
            respond=lambda _v: self._ok(conn, rid, {}),
            before=close,
            refused=refused,
        )

    # ------------------------------------------------------------------ call ops

    def _dev(self, conn: _Conn) -> str:
        assert conn.session is not None
        return conn.session.device_id

    def _refused(self, conn: _Conn, rid: int) -> Callable[[str], None]:
        """The answer of request ``rid`` if the store refuses what it changed."""
        return lambda message: self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, message)

    def _run(self, conn: _Conn, rid: int, inp: m.Input, shape: Callable[[Any], Any] = lambda _v: {}) -> None:
        self.hub.submit(
            inp, respond=lambda v: self._ok(conn, rid, shape(v)), refused=self._refused(conn, rid)
        )

    def _simple(self, cls: Any) -> Callable[[_Conn, int, dict[str, Any]], None]:
        def op(conn: _Conn, rid: int, req: dict[str, Any]) -> None:
            self._run(conn, rid, cls(self._dev(conn), _call_id(req)))

        return op

    def _flag(self, kind: str, on: bool) -> Callable[[_Conn, int, dict[str, Any]], None]:
        def op(conn: _Conn, rid: int, req: dict[str, Any]) -> None:
            self._run(conn, rid, m.SetDeviceFlag(self._dev(conn), _call_id(req), kind, on))

        return op

    def _op_calls(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        params = _params(req)
        if self.hub.settings.record_calls and not params.record:
            params = dataclasses.replace(params, record=True)
        if params.record and self.hub.sfu is None:
            raise LocalCallError(
                ErrorCode.REQUEST_REFUSED,
                "this server cannot record calls: recording needs an SFU (ringline serve --sfu, "
                "see docs/recording.md); place the call without params.record",
            )
        inp = m.PlaceCall(
            self._dev(conn),
            _ids(req, "user_ids"),
            _media(req),
            params,
            new_call_id=_uuid(),
            new_room_id=_room(),
        )
        self._run(conn, rid, inp, lambda v: {"call_id": v})

    def _op_invite(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        inp = m.InviteUser(self._dev(conn), _call_id(req), _ids(req, "user_ids"), _params(req))
        self._run(conn, rid, inp, lambda v: {"user_ids": list(v or [])})

    def _op_switch(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        self._run(conn, rid, m.SwitchMediaType(self._dev(conn), _call_id(req), _media(req)))

    def _op_signal(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        # Relayed, never persisted: the answer and the push go out at once (docs/media.md).
        inp = m.Signal(
            self._dev(conn),
            _call_id(req),
            _str(req, "to_user_id", max_len=64),
            _get(req, "data", dict),
        )
        self._run(conn, rid, inp)

    def _op_sfu(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        # Relayed to Janus by the server (docs/sfu.md): answered once Janus has answered.
        sfu = self.hub.sfu
        if sfu is None:
            raise LocalCallError(ErrorCode.REQUEST_REFUSED, "this server runs no SFU (ringline serve --sfu)")
        s = conn.session
        assert s is not None
        call_id = _call_id(req)
        data = _get(req, "data", dict)

        async def run() -> None:
            try:
                result = await sfu.relay(call_id, s.user_id, s.device_id, data)
            except LocalCallError as e:
                self._fail(conn, rid, e.code, e.message)
            except JanusError as e:
                self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, str(e))
            except Exception:
                log.exception("sfu request failed")
                self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, "internal error; the server logged it")
            else:
                self._ok(conn, rid, result)

        self._spawn(run())

    def _op_self_info(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        inp = m.SetSelfInfo(self._dev(conn), _str(req, "nickname", "", 2000), _str(req, "avatar", "", 4096))
        self._run(conn, rid, inp)

    def _op_multi(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        enable = _get(req, "enable", bool)
        s = conn.session
        assert s is not None
        s.multi_device = enable
        self.hub.submit(
            m.SetMultiDevice(s.device_id, enable),
            respond=lambda _v: self._ok(conn, rid, {}),
            writes=[st.SessionWrite(s.row())],
            refused=self._refused(conn, rid),
        )

    def _op_renew(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        s = conn.session
        assert s is not None
        sig = _str(req, "user_sig", max_len=8192)
        info = verify_user_sig(
            sig, sdk_app_id=self.sdk_app_id, user_id=s.user_id, secret_key=self.secret_key, now=time.time()
        )
        s.sig_expires_at = float(info.expires_at)
        self.hub.submit(
            m.RenewSig(s.device_id, s.sig_expires_at),
            respond=lambda _v: self._ok(conn, rid, {"sig_expires_at": info.expires_at}),
            writes=[st.SessionWrite(s.row())],
            refused=self._refused(conn, rid),
        )

    def _op_state(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        s = conn.session
        assert s is not None
        cid = self.hub.sb.current_call_of(s.device_id)
        self._ok(conn, rid, {"call": self.hub.sb.call_state(cid, s.user_id) if cid else None})

    def _op_query(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        s = conn.session
        assert s is not None
        begin = _get(req, "begin", (int, float), None)
        end = _get(req, "end", (int, float), None)
        rt = _get(req, "result_type", int, 0)
        limit = _get(req, "limit", int, 50)
        for key, when in (("begin", begin), ("end", end)):
            if when is not None and not 0 <= when <= MAX_UNIX_S:
                raise BadParam(
                    f"field '{key}' must be unix seconds, 0..{MAX_UNIX_S}, not {when!r}"
                    " (milliseconds are not accepted)"
                )
        if not 0 <= rt <= 3:
            raise BadParam("result_type must be 0 (all), 1 (missed), 2 (incoming) or 3 (outgoing)")
        if not 1 <= limit <= MAX_RECENT:
            raise BadParam(f"limit must be 1..{MAX_RECENT}")

        async def run() -> None:
            try:
                await self.hub.drain()  # read your own writes
                rows = await self.hub.store.query_user_calls(
                    s.user_id, begin=begin, end=end, result_type=CallResultType(rt), limit=limit
                )
                recs = [record_to_recent(r.record, s.user_id, int(r.result_type)) for r in rows]
                self._ok(conn, rid, {"records": recs})
            except Exception:
                log.exception("query_recent_calls failed")
                self._fail(conn, rid, ErrorCode.SIGNALING_SEND_FAIL, "the record store failed; try again")

        self._spawn(run())

    def _op_delete(self, conn: _Conn, rid: int, req: dict[str, Any]) -> None:
        s = conn.session
        assert s is not None
        ids = _get(req, "call_ids", list)
        if not all(isinstance(x, str) and len(x) <= MAX_CALL_ID for x in ids) or len(ids) > 500:
            raise BadParam("call_ids must be a list of at most 500 call id strings")
        self.hub.enqueue_write(
            st.UserCallsHide(s.user_id, tuple(ids)),
            lambda: self._ok(conn, rid, {"deleted": list(ids)}),
            self._refused(conn, rid),
        )


def _utf8_size(data: str, limit: int) -> int:
    """The frame's size in UTF-8 bytes as it came on the wire, or a number on the same
    side of ``limit`` (its length in characters) when that alone tells."""
    n = len(data)
    if n > limit or n * 4 <= limit:
        return n
    return len(data.encode("utf-8", "surrogatepass"))


class _MaskedFramesOnly:
    """Stands in front of aiohttp's WebSocket frame parser and refuses a client frame
    that is not masked (RFC 6455 §5.1: the server MUST close the connection), with
    close code 1002. It follows the frame boundaries by their headers only (the
    payloads are skipped, not read); everything else is the parser's own work."""

    __slots__ = ("_bad", "_head", "_inner", "_queue", "_skip")

    def __init__(self, inner: Any, queue: Any) -> None:
        self._inner = inner
        self._queue = queue
        self._head = bytearray()  # the header bytes of the frame being read
        self._skip = 0  # payload bytes of the current frame still to come
        self._bad = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._bad:
            return True, b""
        if not self._all_masked(memoryview(data).cast("B")):
            self._bad = True
            self._queue.set_exception(
                WebSocketError(1002, "client frames must be masked (RFC 6455 section 5.1)")
            )
            return True, b""
        result: tuple[bool, bytes] = self._inner.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def _all_masked(self, data: memoryview) -> bool:
        i, n, head = 0, len(data), self._head
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            head.append(data[i])
            i += 1
            if len(head) < 2:
                continue
            if not head[1] & 0x80:
                return False
            size = head[1] & 0x7F
            extra = 2 if size == 126 else 8 if size == 127 else 0
            if len(head) < 2 + extra + 4:
                continue
            if extra:
                size = int.from_bytes(head[2 : 2 + extra], "big")
            self._skip = size
            head.clear()
        return True


def _remote(transport: asyncio.Transport) -> str:
    """The address at the other end of ``transport`` (``"?"`` if unknown)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return "?"


def _require_masking(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Put :class:`_MaskedFramesOnly` in front of the connection's frame parser (aiohttp
    has no setting for it). If this aiohttp keeps them elsewhere, log it once and go
    on without the check (docs/protocol.md "Limits")."""
    proto = request.protocol
    parser = getattr(proto, "_payload_parser", None)
    queue = getattr(ws, "_reader", None)
    if parser is None or not hasattr(queue, "set_exception"):
        global _MASK_CHECK_WARNED
        if not _MASK_CHECK_WARNED:
            _MASK_CHECK_WARNED = True
            log.warning("this aiohttp version does not let Ringline refuse unmasked client frames")
        return
    proto._payload_parser = _MaskedFramesOnly(parser, queue)


_MASK_CHECK_WARNED = False


def _rand() -> str:
    return secrets.token_hex(8)


def _uuid() -> str:
    """A new call id: a version 7 UUID (RFC 9562), time first.

    Calls are stored under their id (``calls``, ``live_calls``, ``user_calls``): with
    time-ordered ids, new keys land on the last page of those indexes, so the calls one
    transaction writes share pages instead of each touching a random one. 74 random
    bits keep ids unguessable within a millisecond."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))


def _room() -> int:
    return 1 + secrets.randbelow(2**31 - 2)
