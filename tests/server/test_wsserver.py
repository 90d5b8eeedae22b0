"""Ringline's own WebSocket (``ringline.server.wsserver``): the frame parser, the frame
encoder and the handshake reader on their own (bytes in, messages out), then ``/v1/ws``
of a real ``ringline serve`` over a raw TCP stream with hand-made handshakes and frames,
and the hand-off of every other request to aiohttp on the same port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ringline.server.wsserver import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameParser,
    accept_key,
    encode_frame,
    read_upgrade,
    unmask,
)
from serverproc import ServerProcess

CONTINUATION = 0x0
MASK = b"\x37\xfa\x21\x3d"
#: The server's limit for one message: max(max_frame_bytes * 16, 1 MiB), max_frame_bytes
#: being 64 KiB by default.
SERVER_MAX_MESSAGE = max(64 * 1024 * 16, 1 << 20)
#: Failure guards only: how long a test waits for something before it fails.
WAIT = 15.0


def client_frame(
    op: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    mask: bytes = MASK,
) -> bytes:
    """A client's frame (masked unless ``masked`` is False) with the shortest length encoding."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def frame_error(parser: FrameParser, data: bytes) -> FrameError:
    """The FrameError ``parser`` raises on ``data`` (the test fails if none is raised)."""
    with pytest.raises(FrameError) as info:
        parser.feed(data)
    return info.value


# =========================================================================== pure parts


def test_one_masked_text_frame_is_one_message() -> None:
    p = FrameParser(1 << 20)
    assert p.feed(client_frame(TEXT, b'{"op":"ping"}')) == [(TEXT, '{"op":"ping"}')]
    assert p.feed(b"") == []


def test_a_frame_fed_byte_by_byte_comes_out_with_its_last_byte() -> None:
    p = FrameParser(1 << 20)
    data = client_frame(TEXT, "héllo wörld".encode())
    for i in range(len(data) - 1):
        assert p.feed(data[i : i + 1]) == [], i
    assert p.feed(data[-1:]) == [(TEXT, "héllo wörld")]
    # Nothing is left over: the next frame parses on its own.
    assert p.feed(client_frame(TEXT, b"next")) == [(TEXT, "next")]


@pytest.mark.parametrize("size", [126, 1000, 65535], ids=["126", "1000", "65535"])
def test_16_bit_lengths_byte_by_byte(size: int) -> None:
    payload = os.urandom(size)
    data = client_frame(BINARY, payload)
    assert data[1] & 0x7F == 126
    p = FrameParser(1 << 20)
    # Stop inside the extended length, then inside the mask, then inside the payload.
    assert p.feed(data[:3]) == []
    assert p.feed(data[3:6]) == []
    assert p.feed(data[6:-1]) == []
    assert p.feed(data[-1:]) == [(BINARY, payload)]


@pytest.mark.parametrize("size", [65536, 300_000], ids=["65536", "300000"])
def test_64_bit_lengths(size: int) -> None:
    payload = os.urandom(size)
    data = client_frame(BINARY, payload)
    assert data[1] & 0x7F == 127
    p = FrameParser(1 << 20)
    assert p.feed(data) == [(BINARY, payload)]
    p = FrameParser(1 << 20)
    assert p.feed(data[:9]) == []  # inside the 8-byte length
    assert p.feed(data[9:12]) == []  # inside the mask
    assert p.feed(data[12:5000]) == []
    assert p.feed(data[5000:]) == [(BINARY, payload)]


def test_several_frames_in_one_chunk_come_out_in_order() -> None:
    p = FrameParser(1 << 20)
    big = os.urandom(70_000)
    chunk = (
        client_frame(TEXT, b"one")
        + client_frame(PING, b"p")
        + client_frame(BINARY, big)
        + client_frame(TEXT, b"two")
        + client_frame(PONG, b"")
    )
    assert p.feed(chunk) == [(TEXT, "one"), (PING, b"p"), (BINARY, big), (TEXT, "two"), (PONG, b"")]


def test_a_chunk_ending_inside_a_frame_keeps_the_rest_for_later() -> None:
    p = FrameParser(1 << 20)
    first, second = client_frame(TEXT, b"first"), client_frame(TEXT, b"second")
    assert p.feed(first + second[:4]) == [(TEXT, "first")]
    assert p.feed(second[4:] + first[:1]) == [(TEXT, "second")]
    assert p.feed(first[1:]) == [(TEXT, "first")]


def test_a_fragmented_text_message_is_joined_and_a_ping_between_comes_out_first() -> None:
    p = FrameParser(1 << 20)
    text = '{"op":"ping","note":"é"}'.encode()
    cut = text.index("é".encode()) + 1  # splits the two bytes of "é" across fragments
    chunk = (
        client_frame(TEXT, text[:5], fin=False)
        + client_frame(PING, b"between")
        + client_frame(CONTINUATION, text[5:cut], fin=False)
        + client_frame(CONTINUATION, text[cut:])
    )
    assert p.feed(chunk) == [(PING, b"between"), (TEXT, text.decode())]
    # The fragmented message is over: a new one may start, and a continuation may not.
    assert p.feed(client_frame(TEXT, b"after")) == [(TEXT, "after")]
    assert frame_error(p, client_frame(CONTINUATION, b"x")).code == 1002


def test_fragments_fed_one_at_a_time() -> None:
    p = FrameParser(1 << 20)
    assert p.feed(client_frame(BINARY, b"\x00\x01", fin=False)) == []
    assert p.feed(client_frame(CONTINUATION, b"", fin=False)) == []
    assert p.feed(client_frame(PONG, b"x")) == [(PONG, b"x")]
    assert p.feed(client_frame(CONTINUATION, b"\xff")) == [(BINARY, b"\x00\x01\xff")]


def test_binary_payload_is_returned_as_bytes() -> None:
    p = FrameParser(1 << 20)
    payload = bytes(range(256))
    [(op, data)] = p.feed(client_frame(BINARY, payload))
    assert op == BINARY and type(data) is bytes and data == payload
    [(op, data)] = p.feed(client_frame(PING, b"\xff\xfe"))
    assert op == PING and type(data) is bytes and data == b"\xff\xfe"


def test_an_empty_close_is_1005_and_a_close_carries_its_code_and_reason() -> None:
    assert FrameParser(1 << 20).feed(client_frame(CLOSE, b"")) == [(CLOSE, (1005, ""))]
    assert FrameParser(1 << 20).feed(client_frame(CLOSE, close_payload(1000))) == [(CLOSE, (1000, ""))]
    got = FrameParser(1 << 20).feed(client_frame(CLOSE, close_payload(1001, "bye ü".encode())))
    assert got == [(CLOSE, (1001, "bye ü"))]
    for code in (1003, 1007, 1011, 1014, 3000, 4000, 4999):
        assert FrameParser(1 << 20).feed(client_frame(CLOSE, close_payload(code))) == [(CLOSE, (code, ""))]


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (client_frame(TEXT, b"x", rsv=0b100), 1002, "reserved bits"),
        (client_frame(TEXT, b"x", rsv=0b010), 1002, "reserved bits"),
        (client_frame(TEXT, b"x", rsv=0b001), 1002, "reserved bits"),
        (client_frame(TEXT, b"x", masked=False), 1002, "masked"),
        (client_frame(0x3, b"x"), 1002, "unknown opcode 3"),
        (client_frame(0x7, b"x"), 1002, "unknown opcode 7"),
        (client_frame(0xB, b"x"), 1002, "unknown opcode 11"),
        (client_frame(0xF, b""), 1002, "unknown opcode 15"),
        (client_frame(PING, b"x", fin=False), 1002, "must not be fragmented"),
        (client_frame(CLOSE, b"", fin=False), 1002, "must not be fragmented"),
        (client_frame(PING, b"x" * 126), 1002, "at most 125 bytes"),
        (client_frame(PONG, b"x" * 200), 1002, "at most 125 bytes"),
        (client_frame(CONTINUATION, b"x"), 1002, "continuation"),
        (client_frame(CONTINUATION, b"x", fin=False), 1002, "continuation"),
        (client_frame(TEXT, b"\xc3\x28"), 1007, "UTF-8"),
        (client_frame(TEXT, b"ok\xff"), 1007, "UTF-8"),
        (client_frame(TEXT, b"\xed\xa0\x80"), 1007, "UTF-8"),  # a surrogate
        (client_frame(CLOSE, b"\x03"), 1002, "2-byte code"),
        (client_frame(CLOSE, close_payload(999)), 1002, "invalid close code 999"),
        (client_frame(CLOSE, close_payload(1004)), 1002, "invalid close code 1004"),
        (client_frame(CLOSE, close_payload(1005)), 1002, "invalid close code 1005"),
        (client_frame(CLOSE, close_payload(1006)), 1002, "invalid close code 1006"),
        (client_frame(CLOSE, close_payload(1015)), 1002, "invalid close code 1015"),
        (client_frame(CLOSE, close_payload(2999)), 1002, "invalid close code 2999"),
        (client_frame(CLOSE, close_payload(5000)), 1002, "invalid close code 5000"),
        (client_frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007, "reason must be UTF-8"),
    ],
    ids=[
        "rsv1",
        "rsv2",
        "rsv3",
        "unmasked",
        "opcode-3",
        "opcode-7",
        "opcode-11",
        "opcode-15",
        "fragmented-ping",
        "fragmented-close",
        "ping-126",
        "pong-200",
        "continuation-without-start",
        "unfinished-continuation-without-start",
        "text-bad-utf8",
        "text-bad-utf8-at-end",
        "text-surrogate",
        "close-1-byte",
        "close-999",
        "close-1004",
        "close-1005",
        "close-1006",
        "close-1015",
        "close-2999",
        "close-5000",
        "close-reason-not-utf8",
    ],
)
def test_protocol_violations_raise_with_their_close_code(data: bytes, code: int, words: str) -> None:
    e = frame_error(FrameParser(1 << 20), data)
    assert e.code == code
    assert words in e.reason
    assert str(e) == e.reason


def test_messages_before_a_bad_frame_in_the_same_chunk_come_with_the_error() -> None:
    """A good request and a broken frame in one read: the request is still handled
    (the error carries it), then the connection closes."""
    p = FrameParser(1 << 20)
    e = frame_error(
        p, client_frame(TEXT, b'{"op":"ping"}') + client_frame(PING, b"p") + client_frame(TEXT, b"x", rsv=1)
    )
    assert e.code == 1002 and e.messages == [(TEXT, '{"op":"ping"}'), (PING, b"p")]


def test_a_new_data_frame_during_a_fragmented_message_is_1002() -> None:
    for op in (TEXT, BINARY):
        p = FrameParser(1 << 20)
        assert p.feed(client_frame(TEXT, b"part", fin=False)) == []
        e = frame_error(p, client_frame(op, b"other"))
        assert e.code == 1002 and "before the fragmented one ended" in e.reason


def test_a_text_message_split_into_invalid_utf8_fragments_is_1007_at_its_end() -> None:
    p = FrameParser(1 << 20)
    assert p.feed(client_frame(TEXT, b"ok \xc3", fin=False)) == []  # may still be completed
    assert frame_error(p, client_frame(CONTINUATION, b"(")).code == 1007


def test_a_message_over_the_limit_is_1009_as_soon_as_its_header_says_so() -> None:
    # Only the 64-bit header (no mask, no payload): the parser need not wait for 8 MiB.
    p = FrameParser(1 << 20)
    e = frame_error(p, bytes((0x81, 0x80 | 127)) + (8 << 20).to_bytes(8, "big"))
    assert e.code == 1009 and "over the limit of 1048576" in e.reason
    # A 16-bit length over a small limit, header only.
    e = frame_error(FrameParser(1000), bytes((0x82, 0x80 | 126)) + (1001).to_bytes(2, "big"))
    assert e.code == 1009
    # Exactly the limit is fine.
    assert FrameParser(1000).feed(client_frame(BINARY, b"x" * 1000)) == [(BINARY, b"x" * 1000)]


def test_a_fragmented_message_over_the_limit_is_1009_at_the_fragment_that_crosses_it() -> None:
    p = FrameParser(100)
    assert p.feed(client_frame(TEXT, b"a" * 60, fin=False)) == []
    assert p.feed(client_frame(CONTINUATION, b"b" * 40, fin=False)) == []  # 100: still fine
    e = frame_error(p, bytes((0x00, 0x80 | 1)))  # the header of one more byte
    assert e.code == 1009
    # Control frames between fragments do not count towards the message.
    p = FrameParser(100)
    assert p.feed(client_frame(TEXT, b"a" * 60, fin=False)) == []
    assert p.feed(client_frame(PING, b"p" * 125)) == [(PING, b"p" * 125)]
    assert p.feed(client_frame(CONTINUATION, b"b" * 40)) == [(TEXT, "a" * 60 + "b" * 40)]


def test_unmask_xors_the_repeated_mask_and_is_its_own_inverse() -> None:
    assert unmask(MASK, b"") == b""
    assert unmask(b"\x01\x02\x03\x04", b"\x00" * 6) == b"\x01\x02\x03\x04\x01\x02"
    for n in (1, 3, 4, 5, 125, 1000, 65537):
        data = os.urandom(n)
        masked = unmask(MASK, data)
        assert masked == bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
        assert unmask(MASK, masked) == data
    # Leading and trailing zero bytes survive (no integer round-trip losing them).
    assert unmask(b"\x00\x00\x00\x00", b"\x00\x00ab\x00") == b"\x00\x00ab\x00"


@pytest.mark.parametrize(
    ("size", "head"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
    ids=["0", "125", "126", "65535", "65536"],
)
def test_encode_frame_uses_the_shortest_length(size: int, head: bytes) -> None:
    payload = b"a" * size
    frame = encode_frame(TEXT, payload)
    assert frame == head + payload


def test_encode_frame_of_control_frames_is_final_and_unmasked() -> None:
    assert encode_frame(PONG, b"hi") == b"\x8a\x02hi"
    assert encode_frame(CLOSE, close_payload(1009)) == b"\x88\x02\x03\xf1"
    assert encode_frame(BINARY, b"") == b"\x82\x00"


def test_accept_key_of_rfc_6455s_example() -> None:
    # RFC 6455 section 1.3 (SHA-1 b37a4f2cc0624f1690f64606cf385945b2bec4ea).
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD_HEADERS = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
]


def head(target: str = "/v1/ws", headers: list[str] | None = None, line: str = "") -> bytes:
    """A request head (line and headers, no blank line), as read_upgrade gets it."""
    first = line or f"GET {target} HTTP/1.1"
    return "\r\n".join([first, *(GOOD_HEADERS if headers is None else headers)]).encode("latin-1")


def replaced(name: str, value: str | None) -> list[str]:
    """GOOD_HEADERS with header ``name`` given ``value`` (dropped when None)."""
    out = [h for h in GOOD_HEADERS if h.split(":")[0].lower() != name.lower()]
    if value is not None:
        out.append(f"{name}: {value}")
    return out


@pytest.mark.parametrize(
    "request_head",
    [
        head(),
        head("/v1/ws?token=abc&x=1"),
        head(headers=replaced("Connection", "keep-alive, Upgrade")),
        head(headers=replaced("Connection", "upgrade")),
        head(headers=replaced("Upgrade", "WebSocket")),
        head(headers=[h.lower() for h in GOOD_HEADERS[:-2]] + GOOD_HEADERS[-2:]),
        head(headers=[*GOOD_HEADERS, "Origin: http://example.com", "User-Agent: x"]),
        head(headers=[*GOOD_HEADERS, "Sec-WebSocket-Extensions: permessage-deflate"]),
        head(headers=[*GOOD_HEADERS, "Content-Length: 0"]),
        head(headers=[*GOOD_HEADERS, "Cookie: a=1", "Cookie: b=2"]),
    ],
    ids=[
        "plain",
        "query-string",
        "connection-keep-alive-upgrade",
        "connection-lower-case",
        "upgrade-mixed-case",
        "header-names-lower-case",
        "other-headers",
        "extension-offer-ignored",
        "content-length-0",
        "repeated-other-header",
    ],
)
def test_read_upgrade_accepts_a_plain_upgrade(request_head: bytes) -> None:
    assert read_upgrade(request_head, "/v1/ws") == KEY


@pytest.mark.parametrize(
    "request_head",
    [
        head(line="POST /v1/ws HTTP/1.1"),
        head(line="GET /v1/ws HTTP/1.0"),
        head(line="GET /v1/ws HTTP/2"),
        head(line="GET /v1/ws"),
        head(line="GET  /v1/ws HTTP/1.1"),
        head("/v2/ws"),
        head("/"),
        head("/v1/wsx"),
        head("/v1/ws/"),
        head(headers=replaced("Sec-WebSocket-Key", None)),
        head(headers=replaced("Sec-WebSocket-Key", "")),
        head(headers=replaced("Sec-WebSocket-Key", "not base64!")),
        head(headers=replaced("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode())),
        head(headers=replaced("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode())),
        head(headers=replaced("Sec-WebSocket-Version", "8")),
        head(headers=replaced("Sec-WebSocket-Version", None)),
        head(headers=[*GOOD_HEADERS, "Sec-WebSocket-Protocol: x"]),
        head(headers=replaced("Host", None)),
        head(headers=[*GOOD_HEADERS, "Upgrade: websocket"]),
        head(headers=[*GOOD_HEADERS, f"Sec-WebSocket-Key: {KEY}"]),
        head(headers=[*GOOD_HEADERS, "Host: other.example"]),
        head(headers=[*GOOD_HEADERS, "Content-Length: 5"]),
        head(headers=[*GOOD_HEADERS, "Transfer-Encoding: chunked"]),
        head(headers=replaced("Upgrade", None)),
        head(headers=replaced("Upgrade", "h2c")),
        head(headers=replaced("Connection", None)),
        head(headers=replaced("Connection", "keep-alive")),
        head(headers=[*GOOD_HEADERS, "Host : x"]),
        head(headers=[*GOOD_HEADERS, "no colon here"]),
        head(headers=[*GOOD_HEADERS, " folded: continuation"]),
        head(headers=[*GOOD_HEADERS, "Bad Header: x"]),
        head(headers=[*GOOD_HEADERS, "Bad(Header): x"]),
    ],
    ids=[
        "post",
        "http-1.0",
        "http-2",
        "no-version",
        "two-spaces",
        "other-path",
        "root",
        "path-prefix-wsx",
        "path-trailing-slash",
        "no-key",
        "empty-key",
        "key-not-base64",
        "key-15-bytes",
        "key-17-bytes",
        "version-8",
        "no-version-header",
        "subprotocol",
        "no-host",
        "duplicated-upgrade",
        "duplicated-key",
        "duplicated-host",
        "body-content-length-5",
        "transfer-encoding",
        "no-upgrade",
        "upgrade-h2c",
        "no-connection",
        "connection-without-upgrade",
        "space-before-colon",
        "line-without-colon",
        "folded-line",
        "space-inside-a-name",
        "separator-in-a-name",
    ],
)
def test_read_upgrade_refuses_anything_else(request_head: bytes) -> None:
    assert read_upgrade(request_head, "/v1/ws") is None


# ================================================================ against ringline serve


class Wire:
    """One raw TCP connection to the server: hand-made requests and frames out, the
    server's answers (a response head, unmasked frames) in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response_head(self) -> tuple[int, dict[str, str]]:
        """The status and headers (names lower-case) of the server's next response head."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame: its opcode and payload (it must be final and unmasked)."""

        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            assert b0 & 0x70 == 0, f"reserved bits set by the server: {b0:#x}"
            assert b0 & 0x80, "the server sends no fragments"
            assert not b1 & 0x80, "server frames must not be masked"
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), WAIT)

    async def text(self) -> dict[str, Any]:
        """The server's next frame, which must be a JSON text frame."""
        op, payload = await self.frame()
        assert op == TEXT, (op, payload)
        data = json.loads(payload.decode("utf-8"))
        assert isinstance(data, dict)
        return data

    async def close_frame(self) -> tuple[int, str]:
        """The server's next frame, which must be a close frame: its code and reason."""
        op, payload = await self.frame()
        assert op == CLOSE, (op, payload)
        assert len(payload) >= 2
        return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")

    async def eof(self) -> None:
        """The server ends the connection with nothing more sent."""
        rest = await asyncio.wait_for(self.reader.read(), WAIT)
        assert rest == b""

    async def ping_op(self) -> None:
        """Send the protocol's ping request and get its pong answer."""
        await self.send(client_frame(TEXT, b'{"op":"ping"}'))
        answer = await self.text()
        assert "pong" in answer, answer


def by_aiohttp(headers: dict[str, str]) -> bool:
    """Whether a response was aiohttp's (it names itself in ``Server``; Ringline's own
    101 has no such header)."""
    return "aiohttp" in headers.get("server", "")


def upgrade_request(target: str = "/v1/ws", key: str = KEY, extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def tcp(server: ServerProcess) -> AsyncIterator[Wire]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), WAIT)
    try:
        yield Wire(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def websocket(server: ServerProcess, first: bytes = b"") -> AsyncIterator[Wire]:
    """A raw connection upgraded on ``/v1/ws`` (``first`` sent in the same write as the
    handshake), its 101 checked."""
    key = base64.b64encode(os.urandom(16)).decode()
    async with tcp(server) as w:
        await w.send(upgrade_request(key=key) + first)
        status, headers = await w.response_head()
        assert status == 101, (status, headers)
        assert headers["upgrade"].lower() == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert headers["sec-websocket-accept"] == accept_key(key)
        assert not by_aiohttp(headers)  # answered by Ringline's own WebSocket
        yield w


async def test_handshake_is_101_with_the_accept_key_and_a_ping_gets_its_pong(server: ServerProcess) -> None:
    async with tcp(server) as w:
        await w.send(upgrade_request(key=KEY))
        status, headers = await w.response_head()
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert not by_aiohttp(headers)  # answered by Ringline's own WebSocket
        assert "sec-websocket-protocol" not in headers and "sec-websocket-extensions" not in headers
        await w.send(client_frame(PING, b"are you there?"))
        assert await w.frame() == (PONG, b"are you there?")
        await w.send(client_frame(PING, b""))
        assert await w.frame() == (PONG, b"")
        await w.ping_op()


async def test_a_request_in_the_handshakes_packet_is_answered(server: ServerProcess) -> None:
    async with websocket(server, client_frame(TEXT, b'{"id":1,"op":"ping"}')) as w:
        op, payload = await w.frame()
        assert op == TEXT and b"pong" in payload, payload
        await w.ping_op()


async def test_a_request_in_three_fragments_is_answered_once(server: ServerProcess) -> None:
    async with websocket(server) as w:
        await w.send(
            client_frame(TEXT, b'{"id":5,', fin=False)
            + client_frame(CONTINUATION, b'"op":"pi', fin=False)
            + client_frame(CONTINUATION, b'ng"}')
        )
        assert "pong" in await w.text()
        # The next text frame answers the next request, not the fragments again.
        await w.send(client_frame(TEXT, b'{"id":6,"op":"get_state"}'))
        answer = await w.text()
        assert answer.get("re") == 6, answer


async def test_fragments_in_separate_writes_with_a_ping_between(server: ServerProcess) -> None:
    async with websocket(server) as w:
        await w.send(client_frame(TEXT, b'{"op":', fin=False))
        await w.send(client_frame(PING, b"mid"))
        assert await w.frame() == (PONG, b"mid")  # answered before the message is whole
        await w.send(client_frame(CONTINUATION, b'"ping"}'))
        assert "pong" in await w.text()


async def test_a_message_over_the_limit_is_closed_1009_and_others_keep_being_served(
    server: ServerProcess,
) -> None:
    async with websocket(server) as other, websocket(server) as w:
        await other.ping_op()
        claimed = 8 << 20
        assert claimed > SERVER_MAX_MESSAGE
        await w.send(bytes((0x81, 0x80 | 127)) + claimed.to_bytes(8, "big") + MASK)
        code, reason = await w.close_frame()
        assert code == 1009, reason
        assert str(SERVER_MAX_MESSAGE) in reason
        await w.eof()
        await other.ping_op()
        await other.send(client_frame(PING, b"still here"))
        assert await other.frame() == (PONG, b"still here")


async def test_a_message_at_the_limit_is_read(server: ServerProcess) -> None:
    # The largest message the WebSocket takes is read whole; the request is then refused
    # by the protocol's own limit per frame (an answer naming it), not closed 1009.
    async with websocket(server) as w:
        body = b'{"id":9,"op":"ping","pad":"' + b"x" * (SERVER_MAX_MESSAGE - 40) + b'"}'
        assert len(body) <= SERVER_MAX_MESSAGE
        await w.send(client_frame(TEXT, body))
        answer = await w.text()
        assert answer.get("re") == 9 and answer["ok"] is False, answer
        await w.ping_op()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(TEXT, b'{"op":"ping","x":"\xff"}'), 1007),
        (client_frame(TEXT, b'{"op":"ping"}', rsv=0b100), 1002),
        (client_frame(TEXT, b'{"op":"ping"}', masked=False), 1002),
        (client_frame(0x5, b"x"), 1002),
        (client_frame(CLOSE, close_payload(1005)), 1002),
    ],
    ids=["invalid-utf8", "reserved-bits", "unmasked", "unknown-opcode", "close-code-1005"],
)
async def test_a_protocol_violation_is_closed_with_its_code(
    server: ServerProcess, frame: bytes, code: int
) -> None:
    async with websocket(server) as w:
        await w.ping_op()
        await w.send(frame)
        got, reason = await w.close_frame()
        assert got == code, reason
        await w.eof()


async def test_the_clients_close_is_answered_with_a_close_then_eof(server: ServerProcess) -> None:
    async with websocket(server) as w:
        await w.ping_op()
        await w.send(client_frame(CLOSE, close_payload(1000, b"done")))
        code, _ = await w.close_frame()
        assert code == 1000
        await w.eof()


async def test_an_empty_close_is_answered_too(server: ServerProcess) -> None:
    async with websocket(server) as w:
        # A request and the close in one write: the request is served before the close.
        await w.send(client_frame(TEXT, b'{"op":"ping"}') + client_frame(CLOSE, b""))
        assert "pong" in await w.text()
        code, _ = await w.close_frame()
        assert code == 1000
        await w.eof()


async def test_a_binary_frame_gets_the_json_error_and_the_connection_keeps_serving(
    server: ServerProcess,
) -> None:
    async with websocket(server) as w:
        await w.send(client_frame(BINARY, b'{"id":3,"op":"ping"}'))
        answer = await w.text()
        assert answer["ok"] is False and answer["code"] == -1410, answer
        assert "binary frames are not used" in answer["message"]
        await w.ping_op()
        await w.send(client_frame(BINARY, b"\x00\x01\x02", fin=False) + client_frame(CONTINUATION, b"\x03"))
        assert (await w.text())["code"] == -1410
        await w.ping_op()


# ------------------------------------------------------------- every other request: aiohttp


async def test_healthz_on_the_same_port_is_served_by_aiohttp(server: ServerProcess) -> None:
    async with tcp(server) as w:
        await w.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, headers = await w.response_head()
        assert status == 200 and by_aiohttp(headers), headers
        body = await asyncio.wait_for(w.reader.read(), WAIT)
        assert json.loads(body)["status"] == "ok"


async def test_v1_ws_without_upgrade_headers_gets_an_http_4xx(server: ServerProcess) -> None:
    async with tcp(server) as w:
        await w.send(b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, headers = await w.response_head()
        assert status != 101 and 400 <= status <= 499, (status, headers)
        assert by_aiohttp(headers), headers


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (upgrade_request(key="c2hvcnQ="), 400, b"Handshake error"),  # a key of 5 bytes
        (upgrade_request().replace(b"Version: 13", b"Version: 12"), 400, b"Unsupported version"),
        (upgrade_request("/v1/wsx"), 200, b"unknown command /v1/wsx"),  # the REST API's answer
        (upgrade_request().replace(b"GET", b"POST", 1), 200, b"unknown command /v1/ws"),
    ],
    ids=["short-key", "version-12", "path-wsx", "post"],
)
async def test_a_handshake_refused_here_gets_aiohttps_answer(
    server: ServerProcess, request_bytes: bytes, status: int, words: bytes
) -> None:
    async with tcp(server) as w:
        await w.send(request_bytes)
        got, headers = await w.response_head()
        assert got == status, (got, headers)
        assert by_aiohttp(headers), headers
        body = await asyncio.wait_for(w.reader.readexactly(int(headers["content-length"])), WAIT)
        assert words in body, body


@pytest.mark.parametrize(
    "extra",
    ["Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Protocol: x\r\n"],
    ids=["version-8", "subprotocol"],
)
async def test_an_upgrade_left_to_aiohttp_is_a_working_websocket(server: ServerProcess, extra: str) -> None:
    # Ringline's own WebSocket takes only version 13 without a subprotocol; aiohttp also
    # takes version 8 and ignores the subprotocol it was not asked for.
    request = upgrade_request(extra=extra)
    if "Version: 8" in extra:
        request = request.replace(b"Sec-WebSocket-Version: 13\r\n", b"")
    async with tcp(server) as w:
        await w.send(request)
        status, headers = await w.response_head()
        assert status == 101 and by_aiohttp(headers), (status, headers)
        assert headers["sec-websocket-accept"] == accept_key(KEY)
        await w.ping_op()
        await w.send(client_frame(PING, b"aiohttp"))
        assert await w.frame() == (PONG, b"aiohttp")


async def test_an_upgrade_with_a_subprotocol_is_a_websocket_served_by_aiohttp(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await asyncio.wait_for(http.ws_connect(server.url + "/v1/ws", protocols=("x",)), WAIT)
        try:
            await ws.send_str(json.dumps({"op": "ping"}))
            msg = await asyncio.wait_for(ws.receive(), WAIT)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            assert "pong" in json.loads(msg.data)
        finally:
            await ws.close()


async def send_byte_by_byte(w: Wire, data: bytes) -> None:
    """``data`` one byte per write. The short pauses only make it likely that the server
    reads the head in pieces; the answer is asserted either way."""
    for i in range(len(data)):
        await w.send(data[i : i + 1])
        await asyncio.sleep(0.002)


async def test_a_request_head_sent_byte_by_byte_is_answered(server: ServerProcess) -> None:
    async with tcp(server) as w:
        await send_byte_by_byte(w, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, headers = await w.response_head()
        assert status == 200 and by_aiohttp(headers), headers
    async with tcp(server) as w:
        await send_byte_by_byte(w, upgrade_request(key=KEY))
        status, headers = await w.response_head()
        assert status == 101 and not by_aiohttp(headers), headers
        assert headers["sec-websocket-accept"] == accept_key(KEY)
        await w.ping_op()
