"""An answer lost with a dropped connection, end to end: the Python SDK against a real
server process, through a TCP proxy that cuts the link right after forwarding one
request (so its answer cannot reach the client), deterministically.

After a resume the SDK sends the request again and gets the answer of its first
run; when it has to start over (the server restarted, or the session expired and it
logs in again) the request fails with -1406 as the caller cannot know its effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from ringline import CallEndReason, CallEngine, MediaType
from ringline.core.errors import RemoteCallError
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess, unique


class CuttingProxy:
    """Forwards TCP from ``url`` to a server on ``upstream_port``.

    With :attr:`cut_op` set, the first WebSocket request of that op a client sends is
    forwarded, and then the link is cut at once, both ways (nothing more reaches the
    client, in particular not the answer); later connections are forwarded as usual.
    With :attr:`refuse` set, new connections are dropped at once.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_op: str | None = None
        self.cut = asyncio.Event()
        self.refuse = False
        self.connections = 0
        self.cut_frames: list[dict[str, Any]] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            if self.refuse:
                return
            try:
                sr, sw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                return  # the server is down: the client sees a dropped connection
            cut = [False]
            up = asyncio.create_task(self._up(cr, sw, cw, cut))
            down = asyncio.create_task(self._down(sr, cw, cut))
            try:
                await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
                sw.transport.abort()
        finally:
            cw.transport.abort()
            self._tasks.discard(task)

    async def _up(
        self, cr: asyncio.StreamReader, sw: asyncio.StreamWriter, cw: asyncio.StreamWriter, cut: list[bool]
    ) -> None:
        sw.write(await cr.readuntil(b"\r\n\r\n"))  # the HTTP upgrade request
        while True:
            head = await cr.readexactly(2)
            n = head[1] & 0x7F
            ext = b""
            if n == 126:
                ext = await cr.readexactly(2)
                n = int.from_bytes(ext, "big")
            elif n == 127:
                ext = await cr.readexactly(8)
                n = int.from_bytes(ext, "big")
            mask = await cr.readexactly(4) if head[1] & 0x80 else b""
            payload = await cr.readexactly(n)
            sw.write(head + ext + mask + payload)
            if head[0] & 0x0F != 1 or self.cut_op is None:
                continue
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            msg = json.loads(payload)
            if msg.get("op") == self.cut_op:
                # No await since the write: the answer cannot have been read yet.
                cut[0] = True
                cw.transport.abort()
                self.cut_op = None
                self.cut_frames.append(msg)
                self.cut.set()
                await sw.drain()
                sw.close()  # the server reads the request, then the end of the stream
                return

    async def _down(self, sr: asyncio.StreamReader, cw: asyncio.StreamWriter, cut: list[bool]) -> None:
        while True:
            data = await sr.read(65536)
            if not data or cut[0]:
                return
            cw.write(data)
            await cw.drain()


async def _engine(
    url: str, user: str, srv: ServerProcess, **options: Any
) -> tuple[CallEngine, RecordingObserver]:
    e = CallEngine(url, device_id=user + "-dev", **options)
    rec = RecordingObserver()
    e.add_observer(rec)
    await e.init(SDK_APP_ID, user, srv.sig(user))
    return e, rec


@pytest.fixture
async def proxy(server: ServerProcess) -> Any:
    p = await CuttingProxy(server.port).start()
    try:
        yield p
    finally:
        await p.close()


async def test_a_call_whose_answer_is_lost_in_a_drop_completes_after_the_resume(
    server: ServerProcess, proxy: CuttingProxy
) -> None:
    ua, ub = unique("a"), unique("b")
    a, ra = await _engine(proxy.url, ua, server)
    b, rb = await _engine(server.url, ub, server)
    try:
        proxy.cut_op = "calls"
        cid = await a.calls([ub], MediaType.AUDIO)
        assert proxy.cut.is_set() and proxy.cut_frames[0]["user_ids"] == [ub]
        assert proxy.connections == 2  # answered on the resumed connection
        assert a.call_id == cid
        await rb.wait_for("on_call_received", call_id=cid)
        await b.accept()
        await ra.wait_for("on_call_begin", call_id=cid)
        await rb.wait_for("on_call_begin", call_id=cid)
        assert rb.names().count("on_call_received") == 1  # placed once
        # The session goes on: a lost `hangup` answer is recovered the same way.
        proxy.cut_op = "hangup"
        await a.hangup()
        assert proxy.connections == 3
        end = await rb.wait_for("on_call_end", call_id=cid)
        assert end["user_id"] == ua
        assert [e.name for e in rb.events_for(cid)].count("on_call_end") == 1
    finally:
        await a.uninit()
        await b.uninit()


async def test_a_lost_answer_fails_with_1406_when_the_server_restarted(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, heartbeat_grace=20.0).start()
    proxy = await CuttingProxy(srv.port).start()
    a = b = None
    try:
        ua, ub = unique("a"), unique("b")
        a, _ = await _engine(proxy.url, ua, srv, request_timeout=20.0)
        b, rb = await _engine(srv.url, ub, srv)
        proxy.cut_op = "calls"
        placing = asyncio.create_task(a.calls([ub], MediaType.AUDIO))
        await proxy.cut.wait()
        await rb.wait_for("on_call_received")  # it did take effect
        assert await asyncio.to_thread(srv.stop) == 0
        await asyncio.to_thread(srv.start)
        # The session is resumed on the restarted server, which no longer knows the
        # answer: sending the request again could run it twice.
        with pytest.raises(RemoteCallError) as err:
            await placing
        assert err.value.code == -1406
        assert "may or may not have taken effect" in err.value.message
        assert "restarted" in err.value.message
        assert a.is_initialized  # and the engine goes on
    finally:
        for e in (a, b):
            if e is not None:
                await e.uninit()
        await proxy.close()
        srv.kill()


async def test_a_lost_answer_fails_with_1406_when_the_sdk_has_to_log_in_again(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, heartbeat_interval=0.2, heartbeat_grace=1.0).start()
    proxy = await CuttingProxy(srv.port).start()
    a = b = None
    try:
        ua, ub = unique("a"), unique("b")
        a, _ = await _engine(proxy.url, ua, srv, request_timeout=20.0)
        b, rb = await _engine(srv.url, ub, srv)
        cid = await a.calls([ub], MediaType.AUDIO)
        await rb.wait_for("on_call_received", call_id=cid)
        await b.accept()
        await rb.wait_for("on_call_begin", call_id=cid)
        proxy.cut_op = "set_self_info"
        proxy.refuse = True  # and no way back until the session has expired
        renaming = asyncio.create_task(a.set_self_info("A", ""))
        await proxy.cut.wait()
        # a's device is gone once its leg ends OFFLINE: its session can no longer resume.
        end = await rb.wait_for("on_call_end", call_id=cid)
        assert end["reason"] is CallEndReason.OFFLINE and end["user_id"] == ua
        proxy.refuse = False
        with pytest.raises(RemoteCallError) as err:
            await renaming
        assert err.value.code == -1406
        assert "may or may not have taken effect" in err.value.message
        assert "could not be resumed" in err.value.message
        await a.set_self_info("A", "")  # logged in again: the engine goes on
    finally:
        for e in (a, b):
            if e is not None:
                with contextlib.suppress(Exception):
                    await e.uninit()
        await proxy.close()
        srv.kill()
