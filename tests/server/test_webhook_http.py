"""ringline.server.webhooks.http: the response parser (pure, byte by byte too) and the
keep-alive client against real servers on 127.0.0.1: an aiohttp app, raw asyncio
servers that answer chunked, close idle connections, close after each answer, never
answer or answer garbage, and a TLS server with a certificate made here."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from ringline.server.webhooks.http import MAX_BODY, HttpClient, Response, parse_response

# -- parse_response


def parse_whole(raw: bytes, eof: bool = False) -> tuple[Response, int]:
    got = parse_response(raw, eof)
    assert got is not None
    return got


def test_content_length_response_and_the_bytes_it_took() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusyNEXT"
    resp, used = parse_whole(raw)
    assert (resp.status, resp.reason, resp.body) == (503, "Service Unavailable", b"busy")
    assert resp.keep_alive
    assert resp.headers["retry-after"] == "7"
    assert raw[used:] == b"NEXT"


def test_every_prefix_of_a_response_needs_more_bytes() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for cut in range(len(raw)):
        assert parse_response(raw[:cut]) is None, cut
    assert parse_whole(raw)[0].body == b"hello"


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    for cut in range(len(raw)):
        assert parse_response(raw[:cut]) is None, cut
    resp, used = parse_whole(raw)
    assert resp.body == b"hello world" and used == len(raw) and resp.keep_alive


def test_informational_answers_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    resp, used = parse_whole(raw)
    assert resp.status == 204 and used == len(raw)


def test_connection_close_and_http10_are_not_kept_alive() -> None:
    assert not parse_whole(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")[0].keep_alive
    assert not parse_whole(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[0].keep_alive
    resp = parse_whole(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")[0]
    assert resp.keep_alive


def test_body_delimited_by_the_close() -> None:
    raw = b"HTTP/1.1 500 Oops\r\n\r\nsomething broke"
    assert parse_response(raw) is None
    resp, _ = parse_whole(raw, eof=True)
    assert resp.body == b"something broke" and not resp.keep_alive


def test_a_long_body_is_cut_and_the_connection_not_reused() -> None:
    big = b"x" * (MAX_BODY + 10)
    raw = b"HTTP/1.1 500 Big\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    resp, _ = parse_whole(raw)
    assert len(resp.body) == MAX_BODY and not resp.keep_alive


@pytest.mark.parametrize(
    ("raw", "eof", "words"),
    [
        (b"SIP/2.0 200 OK\r\n\r\n", False, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 OK\r\n\r\n", False, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", False, "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", False, "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", False, "CRLF"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, False, "longer than"),
        (b"HTTP/1.1 200 OK\r\nX: y", True, "closed before a whole response head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True, "closed inside the body"),
    ],
)
def test_malformed_answers_are_named(raw: bytes, eof: bool, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_response(raw, eof)


# -- HttpClient against real servers

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body off a raw connection (None at EOF)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(user_agent="test-agent/1", connect_timeout=2.0)
    yield c
    await c.close()


async def test_posts_reuse_one_kept_alive_connection(client: HttpClient) -> None:
    seen: list[tuple[str, str, str, bytes, str]] = []
    peers: set[object] = set()

    async def handle(req: web.Request) -> web.Response:
        peers.add(req.transport.get_extra_info("peername") if req.transport else None)
        h = req.headers
        seen.append((req.path_qs, h["Host"], h["User-Agent"], await req.read(), h["X-A"]))
        return web.Response(status=202, text="accepted")

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for i in range(5):
            url = f"http://127.0.0.1:{port}/cb?a=1&b=%20x"
            resp = await client.post(url, b'{"i":%d}' % i, {"X-A": str(i)})
            assert (resp.status, resp.body) == (202, b"accepted")
    finally:
        await runner.cleanup()
    assert [s[3] for s in seen] == [b'{"i":%d}' % i for i in range(5)]
    assert seen[0][:3] == ("/cb?a=1&b=%20x", f"127.0.0.1:{port}", "test-agent/1")
    assert [s[4] for s in seen] == ["0", "1", "2", "3", "4"]
    assert len(peers) == 1  # one connection for all five


async def test_concurrent_posts_each_get_a_connection_and_their_own_answer(client: HttpClient) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (got := await read_request(reader)) is not None:
            body = got[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    server = RawServer(echo)
    async with server as base:
        answers = await asyncio.gather(*(client.post(base + "/", b"n%d" % i, {}) for i in range(8)))
        assert [a.body for a in answers] == [b"n%d" % i for i in range(8)]
        again = await asyncio.gather(*(client.post(base + "/", b"m%d" % i, {}) for i in range(8)))
        assert [a.body for a in again] == [b"m%d" % i for i in range(8)]
    assert server.connections == 8  # the second round reused the first round's


async def test_chunked_answers_and_close_after_each(client: HttpClient) -> None:
    async def chunked_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        writer.write(
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"4\r\nslow\r\n5\r\n down\r\n0\r\n\r\n"
        )
        await writer.drain()

    server = RawServer(chunked_then_close)
    async with server as base:
        for _ in range(3):
            resp = await client.post(base + "/x", b"{}", {})
            assert (resp.status, resp.body, resp.headers["retry-after"]) == (429, b"slow down", "3")
    assert server.connections == 3


async def test_an_idle_connection_closed_by_the_receiver_is_retried_on_a_new_one(client: HttpClient) -> None:
    """The receiver answers (keep-alive by HTTP/1.1) and then closes: the next request
    finds the old connection gone and goes out again on a fresh one, unseen by the caller."""
    bodies: list[bytes] = []

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await read_request(reader)
        if got is not None:
            bodies.append(got[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    server = RawServer(answer_then_close)
    async with server as base:
        for i in range(4):
            assert (await client.post(base + "/", b"%d" % i, {})).status == 200
    assert bodies == [b"0", b"1", b"2", b"3"]  # each delivered exactly once


async def test_errors_are_raised_and_name_the_problem(client: HttpClient, unused_tcp_port: int) -> None:
    with pytest.raises(OSError):
        await client.post(f"http://127.0.0.1:{unused_tcp_port}/", b"", {})
    with pytest.raises(ValueError, match="not an http"):
        await client.post("ftp://example.invalid/", b"", {})
    with pytest.raises(ValueError, match="line break"):
        await client.post("http://127.0.0.1:1/", b"", {"X-Evil": "a\r\nInjected: 1"})

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async with RawServer(garbage) as base:
        with pytest.raises(ValueError, match=r"not an HTTP/1\.x status line"):
            await client.post(base, b"", {})

    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()

    async with RawServer(silent) as base:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(base, b"", {})
        release.set()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_with_a_trusted_certificate_and_a_refused_one(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await asyncio.start_server(ok, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = HttpClient(user_agent="t", ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = HttpClient(user_agent="t")
    try:
        for _ in range(2):
            assert (await trusting.post(f"https://localhost:{port}/cb", b"{}", {})).body == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError):
            await default.post(f"https://localhost:{port}/cb", b"{}", {})
    finally:
        await trusting.close()
        await default.close()
        server.close()


def test_the_same_under_uvloop() -> None:
    """The server's loop is uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def both() -> None:
        c = HttpClient(user_agent="t")
        try:
            await test_concurrent_posts_each_get_a_connection_and_their_own_answer(c)
            await test_an_idle_connection_closed_by_the_receiver_is_retried_on_a_new_one(c)
        finally:
            await c.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(both())
