"""A small TCP proxy in front of a Ringline server, standing in for one node of a cluster.

It forwards bytes both ways, and reads the server's WebSocket frames on the way back
(after the HTTP upgrade) so it can, between two frames, close the client's side with a
close code of its own (1012 "node leaving", 1013 "try again") while the server only
sees the socket drop. :meth:`Proxy.kill` closes the listener and aborts every open
connection (the client sees the connection lost); :attr:`Proxy.refuse` makes every new
WebSocket close with that code right after the upgrade.

In the test process::

    proxy = await Proxy(upstream_port).start()
    engine = CallEngine([proxy.url, ...])
    await proxy.close_clients(1012)
    await proxy.kill()

As a process (inside a network namespace, for the browser tests), standard library
only: ``python tests/wsproxy.py UPSTREAM_PORT N`` starts N proxies, prints
``ready PORT...``, then reads commands, one a line, and answers each with ``ok``:
``kill I``, ``close I CODE``, ``refuse I CODE`` (0: accept again), ``quit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

__all__ = ["Proxy"]


def close_frame(code: int, reason: str = "") -> bytes:
    """A server's (unmasked) WebSocket close frame."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return bytes([0x88, len(payload)]) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole WebSocket frame, as read (header and payload)."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    ext = b""
    if n == 126:
        ext = await reader.readexactly(2)
        n = int.from_bytes(ext, "big")
    elif n == 127:
        ext = await reader.readexactly(8)
        n = int.from_bytes(ext, "big")
    mask = await reader.readexactly(4) if head[1] & 0x80 else b""
    return head + ext + mask + await reader.readexactly(n)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.lock = asyncio.Lock()  # held while a whole frame is written to the client
        self.detached = False  # the proxy closed the client's side itself
        self.client_gone = asyncio.Event()

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            w.transport.abort()

    async def close_client(self, code: int, reason: str) -> None:
        """Send close ``code`` to the client between two frames, drop the upstream
        connection, and close the client's socket once it answered (or after 2 s)."""
        async with self.lock:
            if self.detached:
                return
            self.detached = True
            with contextlib.suppress(ConnectionError):
                self.client.write(close_frame(code, reason))
                await self.client.drain()
        self.upstream.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):  # the client answers with its close frame
                await self.client_gone.wait()
        self.client.transport.abort()


class Proxy:
    """Listens on 127.0.0.1 (``port`` 0: any free one) and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.upstream_port = upstream_port
        self.host = host
        self.port = port
        #: When set, every new WebSocket is closed with this code after the upgrade.
        self.refuse: int | None = None
        #: Connections accepted so far.
        self.accepted = 0
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def wait_accepted(self, n: int, timeout: float = 15.0) -> None:
        """Wait until ``n`` connections were accepted in all."""
        async with asyncio.timeout(timeout):
            while self.accepted < n:
                await self._changed.wait()

    async def kill(self) -> None:
        """Stop listening and abort every open connection, both sides."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in list(self._links):
            link.abort()

    async def close_clients(self, code: int, reason: str = "") -> None:
        """Close every open client connection with WebSocket close ``code`` (the server
        sees its socket drop); new connections are still accepted."""
        await asyncio.gather(*(link.close_client(code, reason) for link in list(self._links)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._changed.set()
        self._changed = asyncio.Event()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._up(link, reader), self._down(link, up_reader))
        finally:
            self._links.discard(link)
            link.abort()

    async def _up(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Client → server, bytes as they come (dropped once the proxy closed the client)."""
        try:
            while data := await reader.read(65536):
                if not link.detached:
                    link.upstream.write(data)
                    await link.upstream.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            link.client_gone.set()
            if not link.detached:
                link.upstream.transport.abort()

    async def _down(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Server → client: the HTTP answer, then whole WebSocket frames."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            link.client.write(head)
            await link.client.drain()
            upgraded = head.startswith(b"HTTP/1.1 101")
            if upgraded and self.refuse is not None:
                await link.close_client(self.refuse, "try again")
                return
            while True:
                chunk = await _read_frame(reader) if upgraded else await reader.read(65536)
                if not chunk:
                    break
                async with link.lock:
                    if link.detached:
                        return
                    link.client.write(chunk)
                    await link.client.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if not link.detached:
                link.client.transport.abort()


async def _main(upstream_port: int, n: int) -> None:
    proxies = [await Proxy(upstream_port).start() for _ in range(n)]
    print("ready", *(p.port for p in proxies), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd, *args = line.split()
        if cmd == "quit":
            break
        proxy = proxies[int(args[0])]
        if cmd == "kill":
            await proxy.kill()
        elif cmd == "close":
            await proxy.close_clients(int(args[1]), "node leaving")
        elif cmd == "refuse":
            proxy.refuse = int(args[1]) or None
        print("ok", flush=True)
    for p in proxies:
        await p.kill()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))
