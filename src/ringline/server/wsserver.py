"""Ringline's own server side of RFC 6455 for ``/v1/ws`` (``ringline serve`` on one node).

A device's WebSocket is the server's busiest and most numerous object: one per device,
open for hours, a few frames a minute when idle and a burst per call. Served by aiohttp,
each one holds a handler task, a request, a response, a reader queue and a parser
(~14 KB), and every frame wakes its task. Here, once the handshake is read, the
connection is one small :class:`asyncio.Protocol` (:class:`WsConnection`): a frame is
parsed where its bytes arrive and handed to the :class:`~.ws.WsHandler` at once, with no
task and no queue.

:class:`FrontDoor` is the protocol of every accepted connection. It reads the first
request's head: a WebSocket upgrade of ``/v1/ws`` that asks for nothing unusual is
answered here (``101``) and becomes a :class:`WsConnection`; anything else (every other
path, a handshake it would refuse, a head it cannot read) is handed, bytes and all, to
aiohttp, which answers it exactly as before. The frames follow RFC 6455 as aiohttp does
(docs/protocol.md "Limits"): client frames must be masked, no extension is negotiated,
fragments are joined, a message may hold up to ``max_message`` bytes (1009 beyond), text
must be UTF-8 (1007), a ping gets a pong, a close gets a close.

:class:`FrameParser` and :func:`encode_frame` are pure (bytes in, messages out) and
tested on their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, cast

__all__ = [
    "BINARY",
    "CLOSE",
    "CLOSE_TIMEOUT",
    "MAX_HEAD",
    "PING",
    "PONG",
    "TEXT",
    "FrameError",
    "FrameParser",
    "FrontDoor",
    "WsConnection",
    "WsHandler",
    "accept_key",
    "encode_frame",
    "read_upgrade",
    "text_frames",
]

log = logging.getLogger("ringline.server")

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: The longest request head (request line and headers) read for an upgrade; a longer one
#: goes to aiohttp, which applies its own limits.
MAX_HEAD: Final = 8192
#: How long a closing connection may take to write what is left before it is cut off.
CLOSE_TIMEOUT: Final = 5.0

#: An HTTP header name (RFC 9110 "token").
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Close codes a client may send (RFC 6455 section 7.4; 3000-4999 are the applications').
_VALID_CLOSE: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
#: The header of an unmasked, final text frame (a server's) of 0..125 bytes.
_SHORT_TEXT: Final = tuple(bytes((0x81, n)) for n in range(126))


class WsHandler(Protocol):
    """What serves the connections (``ws.WsHandler``): it decides whether an upgrade is
    taken, makes the connection, and gets its messages and its end."""

    def lean_accepts(self, transport: asyncio.Transport) -> bool:
        """True if a WebSocket from ``transport``'s address may open now."""

    def attach(self, transport: asyncio.Transport) -> WsConnection:
        """Serve ``transport`` (its upgrade answered) as a :class:`WsConnection`."""

    def _frame(self, conn: Any, data: str) -> None:
        """A text message came on ``conn``."""

    def _binary(self, conn: Any) -> None:
        """A binary message came on ``conn``."""

    def _protocol_error(self, conn: Any, code: int, reason: str) -> None:
        """The client broke RFC 6455; ``conn`` closes with ``code``."""

    def _lean_lost(self, conn: Any) -> None:
        """``conn`` ended."""


class FrameError(Exception):
    """The client broke the protocol: close the connection with :attr:`code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        #: the messages completed before the bad frame, in the same data (handle them first)
        self.messages: list[tuple[int, Any]] = []


def unmask(mask: bytes, data: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


#: What :meth:`FrameParser.feed` returns per message: its opcode and its payload (``str``
#: for TEXT, ``bytes`` for BINARY, PING and PONG, ``(code, reason)`` for CLOSE).
Message = tuple[int, Any]


class FrameParser:
    """Client frames in, whole messages out. Raises :class:`FrameError` on anything
    RFC 6455 forbids (the connection must then be closed with its code); keeps a
    partial frame until the rest of it comes."""

    __slots__ = ("_buf", "_frag_op", "_frag_size", "_frags", "max_message")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buf: bytearray | None = None  # a partial frame
        self._frag_op = -1  # the opcode of the fragmented message being joined
        self._frags: list[bytes] | None = None
        self._frag_size = 0

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by ``data`` (received after what came before). A
        :class:`FrameError` carries the messages completed before the bad frame."""
        out: list[Message] = []
        try:
            self._feed(data, out)
        except FrameError as e:
            e.messages = out
            raise
        return out

    def _feed(self, data: bytes, out: list[Message]) -> None:
        buf: bytes | bytearray
        if self._buf is not None:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise FrameError(
                    1002, "received a frame with non-zero reserved bits (no extension is negotiated)"
                )
            if not b1 & 0x80:
                raise FrameError(1002, "client frames must be masked (RFC 6455 section 5.1)")
            op = b0 & 0x0F
            fin = b0 & 0x80
            size = b1 & 0x7F
            head = 2
            if size == 126:
                if n - pos < 4:
                    break
                size = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif size == 127:
                if n - pos < 10:
                    break
                size = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if op >= 0x8:
                if op > PONG:
                    raise FrameError(1002, f"unknown opcode {op}")
                if not fin:
                    raise FrameError(1002, "a control frame must not be fragmented")
                if size > 125:
                    raise FrameError(1002, "a control frame's payload must be at most 125 bytes")
            elif op > BINARY:
                raise FrameError(1002, f"unknown opcode {op}")
            elif (op == CONTINUATION) != (self._frag_op >= 0):
                if op == CONTINUATION:
                    raise FrameError(1002, "a continuation frame came without a message to continue")
                raise FrameError(1002, "a new message began before the fragmented one ended")
            elif self._frag_size + size > self.max_message:
                raise FrameError(
                    1009,
                    f"a message of {self._frag_size + size}+ bytes is over the limit of {self.max_message}",
                )
            end = pos + head + 4 + size
            if n < end:
                break
            start = pos + head + 4
            payload = unmask(bytes(buf[start - 4 : start]), bytes(buf[start:end]))
            pos = end
            if op >= 0x8:
                out.append(_control(op, payload))
            elif not fin:
                if op != CONTINUATION:
                    self._frag_op, self._frags = op, []
                assert self._frags is not None
                self._frags.append(payload)
                self._frag_size += size
            else:
                if op == CONTINUATION:
                    assert self._frags is not None
                    self._frags.append(payload)
                    op, payload = self._frag_op, b"".join(self._frags)
                    self._frag_op, self._frags, self._frag_size = -1, None, 0
                if op == TEXT:
                    try:
                        out.append((TEXT, payload.decode("utf-8")))
                    except UnicodeDecodeError:
                        raise FrameError(1007, "a text message must be UTF-8") from None
                else:
                    out.append((BINARY, payload))
        if pos >= n:
            self._buf = None
        elif self._buf is None or pos:
            self._buf = bytearray(buf[pos:])


def _control(op: int, payload: bytes) -> Message:
    if op != CLOSE:
        return op, payload
    if not payload:
        return CLOSE, (1005, "")
    if len(payload) == 1:
        raise FrameError(1002, "a close frame's payload must be empty or hold a 2-byte code")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE and not 3000 <= code <= 4999:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(1007, "a close frame's reason must be UTF-8") from None
    return CLOSE, (code, reason)


def encode_frame(op: int, payload: bytes) -> bytes:
    """A server's frame (final, unmasked) of ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | op, n)) + payload
    if n < 65536:
        return bytes((0x80 | op, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | op, 127)) + n.to_bytes(8, "big") + payload


def _close_payload(code: int, message: bytes) -> bytes:
    return code.to_bytes(2, "big") + message[:123]


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WS_GUID).digest()).decode("ascii")


def read_upgrade(head: bytes, path: str) -> str | None:
    """The ``Sec-WebSocket-Key`` of ``head`` (a request's line and headers, without the
    blank line) if it is a plain WebSocket upgrade of ``path``: ``GET`` over HTTP/1.1,
    version 13, a valid key, no subprotocol, no extension that must be answered. None
    for anything else (aiohttp answers those)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any bytes
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    target = parts[1]
    if target != path and not target.startswith(path + "?"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            return None
        low = name.lower()
        if low in headers:
            if low in ("upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "host"):
                return None
            headers[low] += "," + value.strip()
        else:
            headers[low] = value.strip()
    if "host" not in headers or "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        return None
    if headers.get("upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
        return None
    if headers.get("sec-websocket-version") != "13" or "sec-websocket-protocol" in headers:
        return None
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return key


class WsConnection(asyncio.Protocol):
    """One device's WebSocket after the handshake. It is the ``ws`` and the frame
    writer of the handler's connection (``ws._Conn``): :attr:`closed`,
    :attr:`close_code`, :meth:`close`; :meth:`write`, :meth:`paused`, :meth:`drain`."""

    __slots__ = (
        "_close_sent",
        "_drain",
        "_lost",
        "_paused",
        "_timer",
        "close_code",
        "conn",
        "handler",
        "hook",
        "parser",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        handler: WsHandler,
        max_message: int,
        hook: Callable[[str], None] | None,
    ) -> None:
        self.transport = transport
        self.handler = handler
        #: None once the client's close came or it broke the protocol: nothing more is read
        self.parser: FrameParser | None = FrameParser(max_message)
        self.hook = hook
        #: the close code: the server's, the client's, or None while open (1006 once lost)
        self.close_code: int | None = None
        self._close_sent = False
        self._lost = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.conn: Any = None  # the handler's _Conn, set by WsHandler.attach

    # ------------------------------------------------------------ what _Conn uses

    @property
    def closed(self) -> bool:
        """True once a close frame went out or the connection is gone: nothing more is sent."""
        return self._close_sent or self._lost

    def write(self, texts: Sequence[str]) -> None:
        """Write ``texts`` as text frames with one write; ConnectionResetError once the
        connection is closing."""
        if self._close_sent or self._lost or self.transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        self.transport.write(text_frames(texts, self.hook))

    def paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return self._paused

    async def drain(self) -> None:
        """Wait until the transport takes more (ConnectionResetError once it is gone)."""
        if self._lost:
            raise ConnectionResetError("the connection is gone")
        if not self._paused:
            return
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain)
        if self._lost:
            raise ConnectionResetError("the connection is gone")

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close now: see :meth:`send_close`. True if this call sent the close frame."""
        return self.send_close(code, message)

    def send_close(self, code: int, message: bytes = b"") -> bool:
        """Send a close frame after the frames written before it, then close the socket
        (as aiohttp's server does: it does not wait for the client's close, so a
        server stopping with many devices is not held by the slow ones). A client that
        reads nothing for :data:`CLOSE_TIMEOUT` seconds is cut off. False if a close
        frame went out already."""
        if self._close_sent or self._lost:
            return False
        self._close_sent = True
        if self.close_code is None:
            self.close_code = code
        self.transport.write(encode_frame(CLOSE, _close_payload(code, message)))
        self._shut()
        return True

    def _shut(self) -> None:
        """Close the socket once what is buffered is written, or after
        :data:`CLOSE_TIMEOUT` seconds whatever is left."""
        self.transport.close()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    # ------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return  # the client's close came: nothing after it counts
        try:
            messages = parser.feed(data)
        except FrameError as e:
            self._handle(e.messages)
            if self.parser is None:
                return  # the client closed before its bad frame
            self.parser = None
            if self.close_code is None:
                self.close_code = e.code
            self.handler._protocol_error(self.conn, e.code, e.reason)
            if not self._close_sent:
                self._close_sent = True
                self.transport.write(encode_frame(CLOSE, _close_payload(e.code, e.reason.encode()[:120])))
            self._shut()
            return
        self._handle(messages)

    def _handle(self, messages: list[Message]) -> None:
        handler, conn = self.handler, self.conn
        for op, payload in messages:
            if op == TEXT:
                if not self._close_sent:
                    handler._frame(conn, payload)
            elif op == PING:
                if not self._close_sent:
                    self.transport.write(encode_frame(PONG, payload))
            elif op == CLOSE:
                self._client_closed(payload[0])
                return
            elif op == BINARY and not self._close_sent:
                handler._binary(conn)
            # a PONG: nothing to do (the server sends no pings)

    def _client_closed(self, code: int) -> None:
        self.parser = None
        if self._close_sent:
            self._shut()  # the client's answer to our close
            return
        self.close_code = code
        self._close_sent = True
        self.transport.write(encode_frame(CLOSE, _close_payload(1000, b"")))
        self._shut()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.parser = None
        if self.close_code is None:
            self.close_code = 1006
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.handler._lean_lost(self.conn)


def text_frames(texts: Sequence[str], hook: Callable[[str], None] | None = None) -> bytes:
    """``texts`` as a server's text frames, ready for one write. ``hook`` sees each text
    first (and may raise)."""
    parts: list[bytes] = []
    for text in texts:
        if hook is not None:
            hook(text)
        try:
            data = text.encode()
        except UnicodeEncodeError:
            # Cannot happen: every value is checked on the way in (inbound.py).
            log.error("a frame held text UTF-8 cannot encode; sent it escaped")
            data = text.encode("utf-8", "backslashreplace")
        n = len(data)
        parts.append(_SHORT_TEXT[n] + data if n < 126 else encode_frame(TEXT, data))
    return parts[0] if len(parts) == 1 else b"".join(parts)


class FrontDoor(asyncio.Protocol):
    """The first protocol of every accepted connection: reads the first request's head
    and either upgrades it to a :class:`WsConnection` (a plain WebSocket upgrade of
    :attr:`path`) or hands the connection, with every byte read so far, to aiohttp's
    protocol (``fallback()``). A head not complete within ``header_timeout`` seconds
    closes the connection, as aiohttp does."""

    __slots__ = ("_buf", "_prefix", "_timer", "fallback", "handler", "header_timeout", "path", "transport")

    def __init__(
        self,
        fallback: Callable[[], asyncio.Protocol],
        handler: WsHandler,
        *,
        header_timeout: float,
        path: str = "/v1/ws",
    ) -> None:
        self.fallback = fallback
        self.handler = handler
        self.header_timeout = header_timeout
        self.path = path
        self._prefix = b"GET " + path.encode()
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._timer = asyncio.get_running_loop().call_later(self.header_timeout, self.transport.close)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        prefix = self._prefix
        if buf[: len(prefix)] != prefix[: len(buf)]:
            self._hand_off(buf)
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._hand_off(buf)
            else:
                self._buf = buf
            return
        key = read_upgrade(buf[:end], self.path)
        transport = self.transport
        if key is None or transport is None or not self.handler.lean_accepts(transport):
            self._hand_off(buf)
            return
        self._stop_timer()
        self._buf = b""
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        conn = self.handler.attach(transport)
        rest = buf[end + 4 :]
        if rest:
            conn.data_received(rest)

    def _hand_off(self, buf: bytes) -> None:
        self._stop_timer()
        self._buf = b""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        proto = self.fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if buf:
            proto.data_received(buf)

    def eof_received(self) -> bool | None:
        self._stop_timer()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._buf = b""

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
