"""How the engine reaches the server: one WebSocket of text frames per connection.

:class:`~ringline.client.CallEngine` only needs the two small protocols below, so a
test or an embedding app can swap the network out (``CallEngine(url, transport=...)``),
the way httpx takes a transport. :class:`AiohttpTransport` is the real one and the
default.

A :class:`Connection` is used by one reader task and any number of writers; it must
release every resource (socket, HTTP session) on :meth:`Connection.close`, which may
be called more than once and from any task.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

__all__ = [
    "AiohttpTransport",
    "Connection",
    "ConnectionClosed",
    "Transport",
]

#: How long closing a WebSocket waits for the server's close frame before dropping it.
_CLOSE_TIMEOUT = 2.0
#: Largest frame accepted from the server. Requests are limited to 64 KiB by the
#: protocol; answers (a page of call records) may be larger, so be generous.
_MAX_INCOMING = 4 * 1024 * 1024


class ConnectionClosed(ConnectionError):
    """The connection is gone. ``code`` is the WebSocket close code, if one arrived.

    ``code`` is ``None`` or 1006 when the connection dropped without a close frame. The
    connection cannot be used any more: the caller must open a new one.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed (code {code}){': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason


class Connection(Protocol):
    """One open WebSocket. Frames are JSON text (the engine encodes and decodes)."""

    async def send(self, text: str) -> None:
        """Send one text frame. Raises :class:`ConnectionClosed` if the socket is gone."""
        ...

    async def receive(self) -> str:
        """Return the next text frame. Raises :class:`ConnectionClosed` at the end.

        Only one task may wait in ``receive`` at a time. Cancelling it leaves the
        connection unusable; close it afterwards.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (idempotent) and release everything the connection holds."""
        ...


class Transport(Protocol):
    """Opens connections. Stateless from the engine's point of view."""

    async def connect(self, url: str) -> Connection:
        """Open a WebSocket to ``url`` (``ws://`` or ``wss://``).

        Raises :class:`ConnectionError` (or another :class:`OSError`) if the server
        cannot be reached or refuses the upgrade; the engine retries or reports it.
        """
        ...


class _AiohttpConnection:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws

    async def send(self, text: str) -> None:
        if self._ws.closed:
            raise ConnectionClosed(self._ws.close_code, "the WebSocket is closed")
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise ConnectionClosed(self._ws.close_code, str(exc)) from exc

    async def receive(self) -> str:
        while True:
            msg = await self._ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                return str(msg.data)
            if msg.type is aiohttp.WSMsgType.BINARY:
                # The protocol only has text frames; be lenient with UTF-8 binary.
                try:
                    return bytes(msg.data).decode("utf-8")
                except UnicodeDecodeError:
                    continue
            if msg.type is aiohttp.WSMsgType.CLOSE:
                raise ConnectionClosed(int(msg.data), str(msg.extra or ""))
            if msg.type is aiohttp.WSMsgType.ERROR:
                raise ConnectionClosed(self._ws.close_code or 1006, str(msg.data))
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                raise ConnectionClosed(self._ws.close_code or 1006)
            # PING/PONG are answered by aiohttp (autoping); nothing else is expected.

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            if not self._ws.closed:
                await self._ws.close(code=code, message=reason.encode("utf-8"))
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        finally:
            await self._http.close()


class AiohttpTransport:
    """The default transport: one :class:`aiohttp.ClientSession` per connection.

    A session per connection keeps ownership trivial (closing the connection releases
    everything) and costs nothing that matters for one long-lived socket per engine.
    """

    def __init__(self, *, max_message_size: int = _MAX_INCOMING) -> None:
        self._max_message_size = max_message_size

    async def connect(self, url: str) -> Connection:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                url,
                autoclose=True,
                autoping=True,
                max_msg_size=self._max_message_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT),
            )
        except aiohttp.ClientError as exc:
            await http.close()
            raise ConnectionError(f"cannot open a WebSocket to {url}: {exc}") from exc
        except BaseException:
            await http.close()
            raise
        return _AiohttpConnection(http, ws)
