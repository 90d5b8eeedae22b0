"""A small keep-alive HTTP/1.1 client for callback delivery.

Callbacks are small POSTs to a handful of receivers, many per second: what they need
from HTTP is a kept-alive connection per request in flight, the status line, two
headers (``Location``, ``Retry-After``) and the start of an error body. This client
does just that on an :class:`asyncio.Protocol` per connection (TLS through
:mod:`ssl` for ``https``), at a fraction of a general client's cost per request.

Pure part: :func:`parse_response` (bytes in, a :class:`Response` or ``None`` for "need
more bytes" out; :class:`ValueError` for a malformed answer). I/O: :class:`HttpClient`.

Rules: no proxies, no redirects followed, no cookies, no compression asked for; a
response that is not whole within the caller's timeout is the caller's timeout; a
connection whose answer says ``Connection: close`` (or HTTP/1.0 without keep-alive), or
whose body is longer than :data:`MAX_BODY` is closed after it; a request on a kept-alive
connection that the receiver had closed meanwhile (no byte of an answer) is sent once
more on a new connection, as browsers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

__all__ = ["MAX_BODY", "HttpClient", "Response", "parse_response"]

#: Bytes of a response body kept (and read) at most; a longer body closes the connection.
MAX_BODY = 64 * 1024
#: Bytes of status line and headers accepted at most.
MAX_HEAD = 16 * 1024
#: Seconds an idle connection is kept for reuse.
IDLE_TIMEOUT = 15.0


@dataclass(slots=True)
class Response:
    """One HTTP answer: ``headers`` keys are lower case (the last of repeated ones wins);
    ``body`` is at most :data:`MAX_BODY` bytes; ``keep_alive`` says whether the
    connection may carry another request."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = True


def _chunked_end(buf: bytes | bytearray, start: int, eof: bool) -> tuple[int, bytes] | None:
    """End offset and the (capped) data of a chunked body from ``start``; None: incomplete."""
    pos = start
    data = bytearray()
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            if len(buf) - pos > 1024:
                raise ValueError("chunk size line too long")
            return None
        size_text = bytes(buf[pos:nl]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise ValueError("negative chunk size")
        pos = nl + 2
        if size == 0:
            # trailers, then an empty line
            while True:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    return None
                line_empty = nl == pos
                pos = nl + 2
                if line_empty:
                    return pos, bytes(data)
        if len(buf) < pos + size + 2:
            return None
        if len(data) < MAX_BODY:
            data += buf[pos : pos + min(size, MAX_BODY - len(data))]
        pos += size
        if buf[pos : pos + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        pos += 2


def parse_response(buf: bytes | bytearray, eof: bool = False) -> tuple[Response, int] | None:
    """Parse one response at the start of ``buf``.

    Returns the response and how many bytes of ``buf`` it took, or None when more
    bytes are needed (``eof``: the peer closed, so a body delimited by the close is
    complete). Informational (1xx) answers before it are skipped. Raises
    :class:`ValueError` naming what is wrong with a malformed answer. A body longer
    than :data:`MAX_BODY` ends the parse early with ``keep_alive=False`` (the caller
    must close the connection).
    """
    start = 0
    while True:
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buf) - start > MAX_HEAD:
                raise ValueError(f"response head longer than {MAX_HEAD} bytes")
            if eof:
                raise ValueError("the connection closed before a whole response head")
            return None
        lines = bytes(buf[start:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        body_at = end + 4
        if 100 <= status < 200:
            start = body_at
            continue
        break

    def cut(keep: bool, end_at: int, length: int = MAX_BODY) -> tuple[Response, int]:
        return Response(status, reason, headers, bytes(buf[body_at : body_at + length]), keep), end_at

    conn = headers.get("connection", "").lower()
    keep_alive = "close" not in conn if version != "HTTP/1.0" else "keep-alive" in conn
    if status in (204, 304):
        return Response(status, reason, headers, b"", keep_alive), body_at
    if "chunked" in headers.get("transfer-encoding", "").lower():
        got = _chunked_end(buf, body_at, eof)
        if got is None:
            if len(buf) - body_at > MAX_BODY + MAX_HEAD:
                return cut(False, len(buf))
            if eof:
                raise ValueError("the connection closed inside a chunked body")
            return None
        end_at, data = got
        return Response(status, reason, headers, data, keep_alive), end_at
    length_text = headers.get("content-length")
    if length_text is not None:
        if not length_text.isdigit():
            raise ValueError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > MAX_BODY:
            if len(buf) - body_at >= MAX_BODY or eof:
                return cut(False, len(buf))
            return None
        if len(buf) - body_at < length:
            if eof:
                raise ValueError("the connection closed inside the body")
            return None
        return cut(keep_alive, body_at + length, length)
    # Delimited by the close of the connection.
    if eof or len(buf) - body_at >= MAX_BODY:
        return cut(False, len(buf))
    return None


class _Conn(asyncio.Protocol):
    """One connection: sends a request, collects its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.used = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check(False)

    def eof_received(self) -> bool | None:
        self._check(True)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            try:
                self._check(True)
            finally:
                if not waiter.done():
                    waiter.set_exception(
                        exc or ConnectionResetError("the receiver closed the connection without answering")
                    )

    def _check(self, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            if self.buf and not eof:
                self.close()  # bytes nobody asked for: do not reuse
            return
        if eof and not self.buf:
            waiter.set_exception(ConnectionResetError("the receiver closed the connection without answering"))
            return
        try:
            got = parse_response(self.buf, eof)
        except ValueError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if got is None:
            return
        resp, used = got
        del self.buf[:used]
        if not resp.keep_alive or self.buf:
            resp.keep_alive = False
            self.close()
        waiter.set_result(resp)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, data: bytes) -> Response:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.used = True
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            self.waiter = None


_Key = tuple[str, str, int]


class HttpClient:
    """POSTs over kept-alive HTTP/1.1 connections (``http`` and ``https`` urls).

    Call :meth:`post` as often as needed (concurrently too: each request in flight has a
    connection of its own; idle ones are kept ``IDLE_TIMEOUT`` s, ``max_idle`` per host),
    and :meth:`close` when done. Errors are raised as :class:`OSError` (connection
    refused, reset, TLS), :class:`TimeoutError` (``connect_timeout``) or
    :class:`ValueError` (a bad url, a malformed answer); the caller bounds the whole
    request with its own timeout.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout: float = 3.0,
        max_idle: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._ssl = ssl_context
        self._idle: dict[_Key, list[_Conn]] = {}
        self._busy: set[_Conn] = set()
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, key: _Key) -> _Conn:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                _Conn,
                host,
                port,
                ssl=self._ssl_context() if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
            )
        return conn

    def _take_idle(self, key: _Key) -> _Conn | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            if not conn.closed and now - conn.idle_since < IDLE_TIMEOUT:
                return conn
            conn.close()
        return None

    def _give_back(self, key: _Key, conn: _Conn) -> None:
        pool = self._idle.setdefault(key, [])
        if self._closed or conn.closed or len(pool) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        pool.append(conn)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url`` (query included) with ``headers`` (Host,
        Content-Length and User-Agent are added) and return the answer."""
        if self._closed:
            raise RuntimeError("this HttpClient is closed")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) url: {url[:200]!r}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        default_port = port == (443 if scheme == "https" else 80)
        host_header = f"[{host}]" if ":" in host else host
        if not default_port:
            host_header = f"{host_header}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [
            f"POST {target} HTTP/1.1",
            f"Host: {host_header}",
            f"User-Agent: {self._user_agent}",
            f"Content-Length: {len(body)}",
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            head.append(f"{name}: {value}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        key = (scheme, host, port)
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._send(key, conn, data)
            except OSError:
                if conn.buf:
                    raise
                # The receiver closed the idle connection as we sent: once more, fresh.
        return await self._send(key, await self._connect(key), data)

    async def _send(self, key: _Key, conn: _Conn, data: bytes) -> Response:
        self._busy.add(conn)
        try:
            resp = await conn.request(data)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if resp.keep_alive:
            self._give_back(key, conn)
        else:
            conn.close()
        return resp

    async def close(self) -> None:
        """Close every connection (idle and busy); later :meth:`post` calls raise."""
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
