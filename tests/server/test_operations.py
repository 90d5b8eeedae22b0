"""Operations against real server processes: Prometheus metrics at ``/metrics``
(off by default, behind a token when one is set) that count what really happened, and
structured JSON logs that log every refusal and every dropped connection once, with
its cause, and never a secret or a sig."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from rawclient import Raw
from restclient import admin_post
from serverproc import ServerProcess, free_port, unique

TOKEN = "metrics-token-for-tests"
WHSEC = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


async def scrape(srv: ServerProcess, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/metrics", headers=headers) as r:
        return r.status, await r.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` (0 if absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` (a scrape: Prometheus itself polls, there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[bytes], asyncio.Event]]:
    """An HTTP callback receiver answering 200; (url, bodies, set at the 2nd body)."""
    bodies: list[bytes] = []
    two = asyncio.Event()

    async def hit(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        if len(bodies) >= 2:
            two.set()
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})

    app = web.Application()
    app.router.add_post("/cb", hit)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/cb", bodies, two
    finally:
        await runner.cleanup()


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path / "srv",
        extra_args=[
            "--metrics-token",
            TOKEN,
            "--log-format",
            "json",
            "--log-level",
            "INFO",
            "--node-id",
            "node-a",
            "--webhook-secret",
            WHSEC,
        ],
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


async def test_metrics_are_off_unless_asked_for(server: ServerProcess) -> None:
    status, _ = await scrape(server, None)
    assert status == 404


async def test_metrics_need_the_token_when_one_is_set(ops_server: ServerProcess) -> None:
    assert (await scrape(ops_server, None))[0] == 401
    assert (await scrape(ops_server, "wrong"))[0] == 401
    status, text = await scrape(ops_server)
    assert status == 200
    assert sample(text, "ringline_node_info", node_id="node-a") == 1
    assert sample(text, "process_resident_memory_bytes") > 0


async def test_metrics_count_calls_requests_commits_and_callbacks(
    ops_server: ServerProcess, receiver: tuple[str, list[bytes], asyncio.Event]
) -> None:
    url, bodies, two = receiver
    status, answer = await admin_post(
        ops_server,
        "/v4/call_config/set_callback",
        json.dumps(
            {"Url": url, "CallbackCommandList": ["Call.CallbackAfterStartCall", "Call.CallbackAfterEndCall"]}
        ),
    )
    assert status == 200 and answer["ErrorCode"] == 0, answer
    a, b = Raw(ops_server), Raw(ops_server)
    try:
        ua, ub = unique("a"), unique("b")
        await a.login(ua)
        await b.login(ub)
        _, before = await scrape(ops_server)
        assert sample(before, "ringline_connections") == 2
        assert sample(before, "ringline_devices") == 2
        cid = (await a.ok("calls", user_ids=[ub], media_type=2))["call_id"]
        await b.event("on_call_received", call_id=cid)
        _, ringing = await scrape(ops_server)
        assert sample(ringing, "ringline_live_calls") == 1
        refused = await b.request("accept", call_id="no-such-call")
        assert not refused["ok"]
        await b.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        await a.ok("hangup", call_id=cid)
        await b.event("on_call_end", call_id=cid)
        await asyncio.wait_for(two.wait(), 30)

        async def counted() -> bool:
            _, text = await scrape(ops_server)
            return sample(text, "ringline_callback_responses_total", status="200") >= 2

        await eventually(counted, "both callbacks counted as delivered")
        _, text = await scrape(ops_server)
        assert sample(text, "ringline_calls_started_total", media_type="video", kind="1v1") == 1
        assert sample(text, "ringline_calls_ended_total", reason="HANGUP", result="NormalEnd") == 1
        assert sample(text, "ringline_live_calls") == 0
        assert sample(text, "ringline_store_commit_seconds_count") >= 3
        assert sample(text, "ringline_store_batch_writes_sum") >= 3
        assert sample(text, "ringline_callback_lag_seconds_count") >= 2
        assert sample(text, "ringline_outbox_callbacks", state="delivered") == 2
        assert sample(text, "ringline_callback_oldest_pending_seconds") == 0
        assert (
            sample(
                text,
                "ringline_rest_request_duration_seconds_count",
                command="v4/call_config/set_callback",
                status="200",
            )
            == 1
        )
        assert len(bodies) == 2
    finally:
        await a.close()
        await b.close()
