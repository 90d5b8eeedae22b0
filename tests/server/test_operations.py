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
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from rawclient import Raw
from restclient import admin_post
from ringline.server.logs import redact
from serverproc import SECRET, ServerProcess, free_port, unique

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
def ops_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server with metrics; ``--callback-workers`` is the test's parameter (indirect),
    by default ``auto`` (one worker process delivers, started with the first callbacks)."""
    workers = str(getattr(request, "param", "auto"))
    srv = ServerProcess(
        tmp_path / "srv",
        heartbeat_grace=30.0,  # a client below pings once only, so that nothing is acked
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
            "--callback-workers",
            workers,
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


# auto: a worker process delivers and reports its attempts to the server; 0: in-process
@pytest.mark.parametrize("ops_server", ["auto", "0"], indirect=True)
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
    # a pings (and so acknowledges pushes) only once, at connect: its pushes stay
    # unacknowledged and a resume with ack 0 gets them all again.
    a, b = Raw(ops_server, heartbeat=60.0), Raw(ops_server)
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
        await a.drop()
        await a.connect()
        resumed = await a.ok("resume", v=1, session=a.session, ack=0)
        assert resumed["resumed"] is True
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
        assert sample(text, "ringline_request_duration_seconds_count", op="calls") == 1
        assert sample(text, "ringline_request_duration_seconds_count", op="accept") == 2
        code = str(refused["code"])
        assert sample(text, "ringline_requests_refused_total", op="accept", code=code) == 1
        assert sample(text, "ringline_resumes_total", outcome="resumed") == 1
        assert sample(text, "ringline_replayed_events_total") >= 1  # the call's events, not acked
        assert sample(text, "ringline_connections_closed_total") >= 1
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


async def test_json_logs_name_each_refusal_and_drop_once_and_hold_no_secret(
    ops_server: ServerProcess,
) -> None:
    c, d = Raw(ops_server), Raw(ops_server)
    user = unique("log")
    sig = ops_server.sig(user)
    await c.login(user, device_id="phone")
    r = await c.request("accept", call_id="no-such-call")
    assert not r["ok"]
    code = r["code"]
    await c.drop()
    # a bad sig: refused, and the connection closed
    await d.connect()
    bad = ops_server.sig(user)[:-4] + "AAAA"
    r = await d.request("login", v=1, sdk_app_id=1400000001, user_id=user, user_sig=bad)
    assert not r["ok"]
    await d.wait_closed()
    # a REST call with a wrong sig in its query
    async with aiohttp.ClientSession() as http:
        q = {
            "sdkappid": "1400000001",
            "identifier": "administrator",
            "usersig": bad,
            "random": "1",
            "contenttype": "json",
        }
        async with http.post(ops_server.url + "/v4/call_config/get_callback", params=q, data="{}") as resp:
            assert (await resp.json())["ErrorCode"] != 0
    await d.close()
    await c.close()
    assert ops_server.stop() == 0
    text = ops_server.log_path.read_text()
    # stderr is the log, one JSON object a line; stdout (the same file here) has the banner
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert "Traceback" not in text
    events = [json.loads(ln) for ln in lines]
    assert all({"ts", "level", "logger", "event"} <= e.keys() for e in events)
    assert all(e.get("node_id") == "node-a" for e in events)

    def find(**match: Any) -> list[dict[str, Any]]:
        return [e for e in events if all(e.get(k) == v for k, v in match.items())]

    refused = find(op="accept", user_id=user)
    assert len(refused) == 1 and refused[0]["code"] == code, refused
    drops = [e for e in find(user_id=user) if "close_code" in e]
    assert len(drops) == 2, drops  # the dropped connection and the refused login
    assert any(e.get("device_id") == "phone" and e["cause"] == "closed by the client" for e in drops)
    assert any(e["close_code"] == 4003 and "device_id" not in e for e in drops)  # the refused login
    assert find(command="v4/call_config/get_callback")
    for secret in (sig, bad, SECRET, WHSEC, TOKEN):
        assert secret not in text


@pytest.mark.parametrize(
    "text",
    [
        "POST /v4/x?sdkappid=1&identifier=admin&usersig="
        "eJyrVkrOSSxSslIqSS0uMTQwMDAyNdEzMDDQM7BUqgUAh-YIkA__&random=1",
        'login {"user_sig": "abc.def", "user_id": "alice"}',
        "secret_key=0123456789abcdef token: tok-123",
        "webhook secret whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=",
        "Authorization: Bearer metrics-token-for-tests",
        "the sig eJyrVkrOSSxSslIqSS0uMTQwMDAyNdEzMDDQM7BUqgUAh-YIkA__ expired",
    ],
)
def test_credentials_are_scrubbed_from_log_text(text: str) -> None:
    cleaned = redact(text)
    assert "[redacted]" in cleaned
    for secret in (
        "eJyrVkrOSSxSslIqSS0uMTQw",
        "abc.def",
        "0123456789abcdef",
        "tok-123",
        "whsec_",
        "metrics-token",
    ):
        assert secret not in cleaned
    assert redact("alice called bob: call c1 ended (Hangup)") == "alice called bob: call c1 ended (Hangup)"
