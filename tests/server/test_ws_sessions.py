"""Sessions against a real server process, with the raw client: device ids scoped to
their user, connection limits, rate-limit refusals and floods, a stalled server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from rawclient import Raw, logged_in
from ringline import CallEngine
from ringline.core.errors import ErrorCode, RemoteCallError
from ringline.server.ws import FLOOD_REFUSALS
from serverproc import SDK_APP_ID, ServerProcess, unique


async def new(server: ServerProcess, clients: list[Raw]) -> Raw:
    c = await Raw(server).connect()
    clients.append(c)
    return c


# ---------------------------------------------------------------- device ids (per user)


async def test_another_users_login_with_my_device_id_does_not_kick_me(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, m = await new(server, clients), await new(server, clients), await new(server, clients)
    ua, ub, um = unique("a"), unique("b"), unique("mallory")
    dev = unique("shared-dev")
    res = await a.login(ua, device_id=dev)
    await b.login(ub)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    mres = await m.login(um, device_id=dev)
    assert mres["device_id"] == res["device_id"] == dev
    assert mres["session"] != res["session"]
    # A's session and call go on: a push still reaches A, and A's request is served.
    await b.ok("close_microphone", call_id=cid)
    await a.event("on_user_audio_available", call_id=cid, user_id=ub)
    state = (await a.ok("get_state"))["call"]
    assert state is not None and state["call_id"] == cid
    assert a.closed is not None and not a.closed.done()
    # Mallory sees nothing of A's call.
    assert (await m.ok("get_state"))["call"] is None
    assert m.names(cid) == []


async def test_another_users_login_with_my_device_id_gets_none_of_my_owed_events(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, m = await new(server, clients), await new(server, clients), await new(server, clients)
    ua, ub, um = unique("a"), unique("b"), unique("mallory")
    dev = unique("shared-dev")
    await a.login(ua, device_id=dev)
    await b.login(ub)
    secret = "user-data-only-alice-and-bob-may-read"
    cid = (await b.ok("calls", user_ids=[ua], media_type=1, params={"user_data": secret}))["call_id"]
    await a.event("on_call_received", call_id=cid)
    await a.ok("accept", call_id=cid)
    await b.event("on_call_begin", call_id=cid)
    await a.drop()  # A goes silent: after the grace its on_call_end waits in its mailbox
    await b.event("on_call_end", call_id=cid)
    await m.login(um, device_id=dev)
    a2 = await new(server, clients)
    await a2.login(ua, device_id=dev)
    end = (await a2.event("on_call_end", call_id=cid))["args"]
    assert end["info"]["user_data"] == secret
    # Mallory logged in first, yet got none of it.
    await m.ok("get_state")  # everything sent to Mallory before this answer has arrived
    assert m.names(cid) == []
    assert all(secret not in str(e) for e in m.events)


async def test_another_users_login_with_my_device_id_leaves_my_session_resumable(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, m = await new(server, clients), await new(server, clients), await new(server, clients)
    ua, ub, um = unique("a"), unique("b"), unique("mallory")
    dev = unique("shared-dev")
    await a.login(ua, device_id=dev)
    await b.login(ub)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    acked = a.last_seq
    await a.drop()  # between connections, within the grace
    await m.login(um, device_id=dev)
    await b.ok("close_microphone", call_id=cid)
    a2 = await new(server, clients)
    res = await a2.ok("resume", v=1, session=a.session, ack=acked)
    assert res["resumed"] is True and res["device_id"] == dev and res["user_id"] == ua
    await a2.event("on_user_audio_available", call_id=cid, user_id=ub)
    assert (await a2.ok("get_state"))["call"]["call_id"] == cid
    assert m.names(cid) == []


# ---------------------------------------------------------------- connection limits

LOGIN_TIMEOUT = 1.0
MAX_UNAUTHENTICATED = 3
MAX_UNACKED = 20


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short connection limits, given by the flags under test."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("limited"),
        extra_args=[
            "--login-timeout",
            str(LOGIN_TIMEOUT),
            "--max-unauthenticated",
            str(MAX_UNAUTHENTICATED),
            "--header-timeout",
            "1",
            "--max-unacked",
            str(MAX_UNACKED),
        ],
    ).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.log()


async def test_a_socket_that_never_logs_in_is_closed_4010_after_the_login_timeout(
    limited: ServerProcess, clients: list[Raw]
) -> None:
    loop = asyncio.get_running_loop()
    opened = loop.time()  # before connecting: the server's timer starts later
    idle = await new(limited, clients)
    code, _ = await idle.wait_closed(timeout=15)
    assert code == 4010
    assert loop.time() - opened >= LOGIN_TIMEOUT  # not before the timeout
    # A socket that logs in in time stays: the timer stops at login.
    user = await new(limited, clients)
    await user.login(unique("u"))
    await idle_past(limited, clients)
    assert user.closed is not None and not user.closed.done()
    await user.ok("get_state")


async def idle_past(srv: ServerProcess, clients: list[Raw]) -> None:
    """Wait until a login timeout has surely run out: that of a later socket fires."""
    probe = await new(srv, clients)
    code, _ = await probe.wait_closed(timeout=15)
    assert code == 4010


async def test_sockets_without_a_login_are_capped_per_address(
    limited: ServerProcess, clients: list[Raw]
) -> None:
    # From an address of this test's own, so no other test's sockets count.
    addr = f"127.0.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 2}"

    async def from_addr() -> Raw:
        c = Raw(limited, local_addr=addr)
        clients.append(c)
        return await c.connect()

    waiting = [await from_addr() for _ in range(MAX_UNAUTHENTICATED)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await from_addr()
    assert refused.value.status == 429
    # Another address is not affected.
    await new(limited, clients)
    # Logging in frees a place at once.
    await waiting[0].login(unique("u"))
    more = await from_addr()
    await more.login(unique("u"))
    # Closed sockets free theirs once the server has seen them close: retry the real
    # connection until it is let in (each try is a round trip, not a timed wait).
    for c in waiting[1:]:
        await c.close()
    for _ in range(MAX_UNAUTHENTICATED):
        for _attempt in range(200):
            try:
                await from_addr()
                break
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 429
        else:
            raise AssertionError("closed sockets never freed their places")


async def test_slow_request_headers_are_cut_off(limited: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the rest never comes
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 15) == b""  # closed by the server
    finally:
        writer.close()


# ---------------------------------------------------------------- rate limit and floods


async def test_a_refusal_for_the_rate_limit_answers_the_request_by_its_id(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await new(server, clients)
    await c.login(unique("flood"))
    first = 10_000_000 + next(c.ids)
    frames = [json.dumps({"id": first + i, "op": "get_state"}) for i in range(150)]
    assert c.ws is not None
    for f in frames:
        await c.ws.send_str(f)
    refused = [r for i in range(len(frames)) for r in [await c.response(first + i)] if not r["ok"]]
    assert refused, "no request over the limit was refused"
    assert {r["code"] for r in refused} == {-1413}
    assert "slow down" in refused[0]["message"]
    assert c.responses.get(None, []) == []  # none answered with re: null


async def test_a_sustained_flood_is_closed_with_4008(server: ServerProcess, clients: list[Raw]) -> None:
    a, b = await new(server, clients), await new(server, clients)
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    await b.login(ub)
    f = await new(server, clients)
    await f.login(unique("flood"))
    assert f.ws is not None and f.closed is not None
    closed = f.closed
    # Frames far over the limit, in rounds that end with a request: its answer (or
    # the close) shows the server has read the round, so no unread frames are left
    # when it closes (closing a socket with unread data resets it: no close code).
    while not closed.done():
        rid = next(f.ids)
        try:
            for _ in range(99):
                await f.ws.send_str('{"op": "ping"}')
            await f.send({"id": rid, "op": "get_state"})
        except ConnectionError:
            break  # the close came in the middle of the round
        async with f.cond:
            await asyncio.wait_for(
                f.cond.wait_for(lambda: bool(f.responses.get(rid)) or closed.done()),  # noqa: B023
                10,
            )
    code, _ = await f.wait_closed()
    assert code == 4008
    refused = [r for rs in f.responses.values() for r in rs if r.get("code") == -1413]
    assert len(refused) == FLOOD_REFUSALS
    # Everyone else is served.
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)


async def test_a_device_that_never_acknowledges_is_closed_with_4009(
    limited: ServerProcess, clients: list[Raw]
) -> None:
    a, ua = await logged_in(limited, clients, "a")
    deaf = Raw(limited, heartbeat=0)  # pings by hand, never acknowledging
    await deaf.connect()
    clients.append(deaf)
    ub = unique("deaf")
    await deaf.login(ub)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await deaf.event("on_call_received", call_id=cid)
    await deaf.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    on = True
    while not deaf.closed.done():  # type: ignore[union-attr]
        on = not on
        await deaf.send({"op": "ping", "ack": 0})  # alive, acknowledging nothing
        r = await a.request("open_microphone" if on else "close_microphone", call_id=cid)
        if not r["ok"]:
            assert r["code"] == 8010  # the call ended: the deaf device was dropped
            break
        assert len(deaf.events) <= MAX_UNACKED + 1
    code, _ = await deaf.wait_closed()
    assert code == 4009
    # Treated as gone: its leg ends OFFLINE, and what it is owed waits for its next login.
    end = (await a.event("on_call_end", call_id=cid))["args"]
    assert end["reason"] == 4 and end["user_id"] == ub
    back = await new(limited, clients)
    await back.login(ub)
    await back.event("on_call_end", call_id=cid)


async def test_the_sdk_raises_a_rate_limit_refusal_at_once(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, extra_args=["--rate-limit", "4"]).start()
    user = unique("eager")
    engine = CallEngine(srv.url, request_timeout=120.0)
    try:
        await engine.init(SDK_APP_ID, user, srv.sig(user))
        calls = [engine.set_self_info(f"name {i}", "") for i in range(20)]
        # Without an answer to its own id, a refused request would wait request_timeout.
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert refused, "20 requests at once on a limit of 4/s: some must be refused"
        for err in refused:
            assert isinstance(err, RemoteCallError) and err.code == ErrorCode.RATE_LIMITED, err
            assert "slow down" in err.message
    finally:
        await engine.uninit()
        srv.stop()


# ---------------------------------------------------------------- frame sizes


async def test_the_frame_limit_counts_utf8_bytes(server: ServerProcess, clients: list[Raw]) -> None:
    c = await new(server, clients)
    await c.login(unique("u"))
    rid = next(c.ids)
    # 40,000 characters, 80,000 bytes of UTF-8: over the 64 KiB limit.
    await c.send(json.dumps({"id": rid, "op": "set_self_info", "nickname": "é" * 40_000}, ensure_ascii=False))
    r = await c.response(rid)
    assert r["code"] == -1412 and "65536 bytes" in r["message"]
    assert await c.ok("get_state") == {"call": None}  # the connection stays


async def test_a_message_over_one_mebibyte_closes_with_1009(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await new(server, clients)
    await c.login(unique("u"))
    await c.send(json.dumps({"id": next(c.ids), "op": "get_state", "pad": "x" * (1 << 20)}))
    code, _ = await c.wait_closed()
    assert code == 1009


def test_limit_flags_must_be_positive(tmp_path: Path) -> None:
    for flag in (
        "--login-timeout",
        "--max-unauthenticated",
        "--header-timeout",
        "--rate-limit",
        "--max-unacked",
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ringline.cli", "serve", "--data-dir", str(tmp_path), flag, "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert f"{flag} must be a number > 0, got '0'" in done.stderr
        assert "Traceback" not in done.stderr
    # The same through the environment (RINGLINE_LOGIN_TIMEOUT, …).
    env = {**os.environ, "RINGLINE_LOGIN_TIMEOUT": "soon"}
    done = subprocess.run(
        [sys.executable, "-m", "ringline.cli", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "--login-timeout must be a number > 0, got 'soon'" in done.stderr


# ---------------------------------------------------------------- masking (RFC 6455 §5.1)


async def _handshake(srv: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


def _frame(text: str | bytes, *, masked: bool) -> bytes:
    payload = text.encode() if isinstance(text, str) else text
    assert len(payload) < 126
    if not masked:
        return bytes([0x81, len(payload)]) + payload
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(size)


async def test_an_unmasked_client_frame_closes_with_1002(server: ServerProcess) -> None:
    reader, writer = await _handshake(server)
    try:
        # Masked, as a client must: served (a bad frame gets its error, the socket stays).
        writer.write(_frame("{not json", masked=True))
        opcode, data = await asyncio.wait_for(_read_frame(reader), 10)
        assert opcode == 0x1 and json.loads(data)["code"] == -1410
        writer.write(_frame('{"id": 1, "op": "get_state"}', masked=False))
        opcode, data = await asyncio.wait_for(_read_frame(reader), 10)
        assert opcode == 0x8  # close
        assert int.from_bytes(data[:2], "big") == 1002
    finally:
        writer.close()


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(server: ServerProcess) -> None:
    reader, writer = await _handshake(server)
    try:
        writer.write(_frame(b'{"op": "ping", "x": "\xff\xfe"}', masked=True))
        opcode, data = await asyncio.wait_for(_read_frame(reader), 10)
        assert opcode == 0x8  # close
        assert int.from_bytes(data[:2], "big") == 1007
    finally:
        writer.close()
