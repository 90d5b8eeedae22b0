"""ringline.server.webhooks: signatures (against the `standardwebhooks` package), the
retry schedule (hypothesis), MemoryOutbox semantics, and the Deliverer against real
HTTP receivers: an in-process aiohttp server scripted per request, and the
examples/webhook_receiver.py process. No sleeps as synchronisation: tests await
outbox or receiver conditions."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as hst
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as LibVerificationError

from ringline.server.webhooks import (
    Deliverer,
    Delivery,
    DeliveryState,
    MemoryOutbox,
    RetrySchedule,
    WebhookCredentials,
    WebhookVerificationError,
    encode_body,
    generate_secret,
    new_delivery,
    new_event_id,
    next_attempt,
    sign_standard,
    standard_headers,
    tencent_query,
    tencent_sign,
    verify_standard,
    verify_tencent,
)
from ringline.server.webhooks.signing import decode_secret
from serverproc import free_port

APP = 1400000001
TOKEN = "ringline-token"
SECRET = generate_secret()
CREDS = WebhookCredentials(APP, TOKEN, (SECRET,))
FAST = RetrySchedule(delays=(0.01, 0.02, 0.05), then_every=0.05, give_up_after=60.0)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"

# -- signing ----------------------------------------------------------------------------

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's test vector


def test_standard_signature_matches_the_spec_vector() -> None:
    sig = sign_standard(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_standardwebhooks_package_accepts_our_signatures() -> None:
    body = json.dumps({"CallId": "c1", "Note": "héllo ☎"}, ensure_ascii=False).encode()
    headers = standard_headers(SECRET, "evt_1", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers) == {"CallId": "c1", "Note": "héllo ☎"}
    with pytest.raises(LibVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_we_accept_the_standardwebhooks_package_signatures() -> None:
    body = b'{"EventId":"evt_2","Sequence":3}'
    now = datetime.now(tz=UTC)
    sig = Webhook(SECRET).sign("evt_2", now, body.decode())
    stamp = str(int(now.timestamp()))
    headers = {"Webhook-Id": "evt_2", "Webhook-Timestamp": stamp, "Webhook-Signature": sig}
    assert verify_standard(SECRET, body, headers) == "evt_2"


@settings(max_examples=60, deadline=None)
@given(body=hst.binary(max_size=300), msg_id=hst.text("abcdefXYZ_0123", min_size=1, max_size=40))
def test_standard_round_trip_any_body(body: bytes, msg_id: str) -> None:
    stamp = 1_700_000_000
    headers = standard_headers(SECRET, msg_id, stamp, body)
    assert verify_standard(SECRET, body, headers, now=stamp + 10) == msg_id
    if body:
        with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
            verify_standard(SECRET, body[:-1], headers, now=stamp)


def test_key_rotation_both_sides() -> None:
    old, new = generate_secret(), generate_secret()
    body, stamp = b"{}", int(time.time())
    header = sign_standard([new, old], "evt_r", stamp, body)
    assert header.count("v1,") == 2 and " " in header
    headers = {"webhook-id": "evt_r", "webhook-timestamp": str(stamp), "webhook-signature": header}
    for receiver_secrets in ([old], [new], [generate_secret(), new]):
        assert verify_standard(receiver_secrets, body, headers) == "evt_r"
    # The lib (one secret) accepts a header carrying two signatures as well.
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verify_standard(generate_secret(), body, headers)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": ""}, "missing header.*webhook-id"),
        ({"webhook-timestamp": "12x"}, "not a unix time"),
        ({"webhook-timestamp": "1000"}, "old"),
        ({"webhook-timestamp": str(2_000_000_000 + 10**6)}, "future"),
        ({"webhook-signature": "v1a,AAAA"}, "no 'v1,<base64>'"),
        ({"webhook-signature": "v1,not-base64!!"}, "no webhook-signature matches"),
        ({"webhook-id": "evt_other"}, "no webhook-signature matches"),
    ],
)
def test_standard_verification_says_what_is_wrong(change: dict[str, str], message: str) -> None:
    stamp = 2_000_000_000
    headers = standard_headers(SECRET, "evt_x", stamp, b"{}") | change
    with pytest.raises(WebhookVerificationError, match=message):
        verify_standard(SECRET, b"{}", headers, now=stamp)


def test_secrets() -> None:
    s = generate_secret()
    assert s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 32
    assert decode_secret(s[6:]) == decode_secret(s)  # the prefix is optional
    assert generate_secret() != s
    with pytest.raises(ValueError, match="at least 24"):
        generate_secret(16)
    with pytest.raises(ValueError, match="at least 24"):
        decode_secret("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        decode_secret("whsec_%%%")
    with pytest.raises(ValueError):
        WebhookCredentials(APP, "", (SECRET,))
    with pytest.raises(ValueError):
        WebhookCredentials(APP, TOKEN, ())


def test_tencent_sign_vector_and_query_spelling() -> None:
    # hex(sha256("ringline-token" + "1700000000")), computed independently
    expected = "054939654cb843e46fa094f0a8a0912f29ae2e89095d3161ac4521d9e6559ffb"
    assert tencent_sign(TOKEN, 1700000000) == expected
    assert expected == hashlib.sha256(b"ringline-token1700000000").hexdigest()
    end = "Call.CallbackAfterEndCall"
    v4 = tencent_query(sdk_app_id=APP, command=end, token=TOKEN, request_time=1700000000)
    assert v4 == {
        "SdkAppid": str(APP),
        "CallbackCommand": end,
        "contenttype": "json",
        "Sign": expected,
        "RequestTime": "1700000000",
    }
    v1 = tencent_query(sdk_app_id=APP, command="caller_start_call", token=TOKEN, request_time=1700000000)
    assert list(v1) == ["sdkappid", "command", "contenttype", "Sign", "RequestTime"]
    assert v1["command"] == "caller_start_call"


def test_tencent_query_puts_who_caused_the_event_after_contenttype() -> None:
    extra = [("ClientIP", "192.0.2.1"), ("OptPlatform", "Web"), ("SdkAppid", "9"), ("Sign", "forged")]
    q = tencent_query(
        sdk_app_id=APP,
        command="Call.CallbackAfterStartCall",
        token=TOKEN,
        request_time=1700000000,
        extra=extra,
    )
    assert list(q) == [
        "SdkAppid",
        "CallbackCommand",
        "contenttype",
        "ClientIP",
        "OptPlatform",
        "Sign",
        "RequestTime",
    ]
    # extra parameters never replace the app id or the signature
    assert (q["SdkAppid"], q["Sign"]) == (str(APP), tencent_sign(TOKEN, 1700000000))
    assert (q["ClientIP"], q["OptPlatform"]) == ("192.0.2.1", "Web")


def test_verify_tencent() -> None:
    q = tencent_query(sdk_app_id=APP, command="normal_end", token=TOKEN, request_time=1700000000)
    verify_tencent(TOKEN, q, sdk_app_id=APP, now=1700000059)
    verify_tencent(TOKEN, q | {"Sign": q["Sign"].upper()}, now=1700000000)
    cases: list[tuple[dict[str, str], str, Any]] = [
        (q, "wrong token", {"token": "other"}),
        (q, "old", {"now": 1700000061}),
        (q, "future", {"now": 1699999900}),
        ({k: v for k, v in q.items() if k != "Sign"}, "missing query parameter.*Sign", {}),
        (q, "SdkAppid is '1400000001', expected 7", {"sdk_app_id": 7}),
        (q | {"RequestTime": "soon"}, "not a unix time", {}),
    ]
    for query, message, kw in cases:
        token = kw.pop("token", TOKEN)
        kw.setdefault("now", 1700000000)
        with pytest.raises(WebhookVerificationError, match=message):
            verify_tencent(token, query, **kw)


# -- retry schedule ---------------------------------------------------------------------

DAY = 24 * 3600.0


@given(seed=hst.integers(0, 2**32), start=hst.floats(0, 2e9))
def test_first_retries_come_within_seconds(seed: int, start: float) -> None:
    rng = random.Random(seed)
    t = start
    for attempt, cap in enumerate((1.0, 5.0, 30.0), start=1):
        nxt = next_attempt(attempt, t, rng, created_at=start)
        assert nxt is not None and t <= nxt <= t + cap
        t = nxt
    assert t - start <= 36.0


@given(
    seed=hst.integers(0, 2**32),
    attempt=hst.integers(1, 500),
    age=hst.floats(0, 2 * DAY),
    not_before=hst.none() | hst.floats(0, 3 * DAY),
)
def test_never_beyond_give_up_after(seed: int, attempt: int, age: float, not_before: float | None) -> None:
    created = 1_700_000_000.0
    now = created + age
    nb = None if not_before is None else created + not_before
    nxt = next_attempt(attempt, now, random.Random(seed), created_at=created, not_before=nb)
    if age >= DAY:
        assert nxt is None
    else:
        assert nxt is not None and now <= nxt <= created + DAY
        if nb is not None:
            assert nxt >= min(nb, created + DAY)


@given(a=hst.integers(1, 60), b=hst.integers(1, 60))
def test_monotone_in_expectation(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    schedule = RetrySchedule()
    assert schedule.expected_delay(lo) <= schedule.expected_delay(hi)
    assert schedule.cap(lo) <= schedule.cap(hi)


@settings(max_examples=30, deadline=None)
@given(seed=hst.integers(0, 2**32), a=hst.integers(1, 9), b=hst.integers(1, 9))
def test_sampled_mean_delays_grow(seed: int, a: int, b: int) -> None:
    schedule = RetrySchedule()
    lo, hi = sorted((a, b))
    if schedule.cap(hi) < 2 * schedule.cap(lo):
        return  # equal-ish caps: nothing to tell apart by sampling
    rng = random.Random(seed)

    def mean(attempt: int) -> float:
        return sum(schedule.next_attempt(attempt, 0.0, rng, created_at=0.0) or 0.0 for _ in range(400)) / 400

    assert mean(lo) < mean(hi)


@settings(max_examples=20, deadline=None)
@given(seed=hst.integers(0, 2**32))
def test_a_whole_day_of_retries(seed: int) -> None:
    """Retried right up to the deadline (the last attempt is at it), never after, at
    most an hour apart, in increasing time order."""
    rng, created = random.Random(seed), 1_000.0
    times, t, attempt = [created], created, 1
    while (nxt := next_attempt(attempt, t, rng, created_at=created)) is not None:
        assert nxt >= t and nxt - t <= 3600.0
        times.append(nxt)
        t, attempt = nxt, attempt + 1
    assert times[-1] == created + DAY
    assert 30 < len(times) < 200


def test_schedule_validation() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        RetrySchedule(delays=(5.0, 1.0))
    with pytest.raises(ValueError, match="must not decrease"):
        RetrySchedule(delays=(1.0, 7200.0))
    with pytest.raises(ValueError):
        RetrySchedule(give_up_after=0)
    with pytest.raises(ValueError, match="≥ 1"):
        RetrySchedule().cap(0)


# -- bodies and MemoryOutbox --------------------------------------------------------------


def test_new_delivery_body_carries_event_id_and_sequence() -> None:
    d = new_delivery(
        url="http://x/cb",
        command="Call.CallbackAfterStartCall",
        call_id="c1",
        sequence=4,
        payload={"CallbackCommand": "Call.CallbackAfterStartCall", "EventTime": 1, "Who": "ä"},
        created_at=10.0,
    )
    body = json.loads(d.body)
    assert body["EventId"] == d.event_id and d.event_id.startswith("evt_")
    assert body["Sequence"] == 4 and body["Who"] == "ä"
    assert (d.attempts, d.created_at) == (0, 10.0)
    assert encode_body({"Sequence": 4}, event_id="e", sequence=4) == b'{"Sequence":4,"EventId":"e"}'
    with pytest.raises(ValueError, match="Sequence"):
        encode_body({"Sequence": 3}, event_id="e", sequence=4)


def _d(call: str, seq: int, url: str = "http://r/a", at: float = 0.0) -> Delivery:
    return new_delivery(
        url=url, command="normal_end", call_id=call, sequence=seq, payload={"CallId": call}, created_at=at
    )


async def test_outbox_claims_only_the_lowest_unfinished_sequence_per_url_and_call() -> None:
    box = MemoryOutbox(lease=30)
    a1, a2, a3 = _d("A", 1), _d("A", 2), _d("A", 3)
    b1, other = _d("B", 1), _d("A", 1, url="http://r/other")
    for d in (a1, a2, a3, b1, other):
        await box.add(d)
    first = {d.event_id for d in await box.claim_due(now=1.0, limit=10)}
    assert first == {a1.event_id, b1.event_id, other.event_id}
    assert await box.claim_due(now=1.0, limit=10) == []  # a2 waits for a1
    await box.mark_failed(a1.event_id, 2.0, 500, "HTTP 500", next_at=5.0)
    assert await box.claim_due(now=4.0, limit=10) == []  # a1 waits for its retry; a2 still behind it
    [again] = await box.claim_due(now=5.0, limit=10)
    assert again.event_id == a1.event_id and again.attempts == 1
    await box.mark_failed(a1.event_id, 6.0, None, "timed out", next_at=None)  # given up frees a2
    [nxt] = await box.claim_due(now=6.0, limit=1)
    assert nxt.event_id == a2.event_id
    await box.mark_delivered(a2.event_id, 7.0, 200)
    assert [d.event_id for d in await box.claim_due(now=7.0, limit=10)] == [a3.event_id]
    entry = box.get(a1.event_id)
    assert (entry.state, entry.delivery.attempts) == (DeliveryState.GIVEN_UP, 2)
    assert entry.last_error == "timed out"
    assert [e.delivery.event_id for e in box.entries(DeliveryState.GIVEN_UP)] == [a1.event_id]


async def test_outbox_lease_release_and_guards() -> None:
    box = MemoryOutbox(lease=10)
    d1, d2 = _d("C", 1), _d("C", 2)
    await box.add(d1)
    await box.add(d2)
    with pytest.raises(ValueError, match="in the outbox already"):
        await box.add(d1)
    with pytest.raises(ValueError, match="order of their sequence"):
        await box.add(_d("C", 2))
    assert len(await box.claim_due(0.0, 5)) == 1
    assert await box.claim_due(9.0, 5) == []
    [stale] = await box.claim_due(10.0, 5)  # the claim expired (a crashed deliverer)
    assert stale.event_id == d1.event_id and stale.attempts == 0
    await box.release([d1.event_id, "unknown"])
    assert box.get(d1.event_id).state is DeliveryState.PENDING
    await box.mark_failed(d1.event_id, 11.0, 500, "x", 12.0)  # not in flight: ignored
    assert box.get(d1.event_id).delivery.attempts == 0
    assert await box.claim_due(10.0, 0) == []
    with pytest.raises(KeyError):
        box.get("nope")


async def test_outbox_endpoint_gone_and_revive() -> None:
    box = MemoryOutbox()
    gone, kept = "http://r/gone", "http://r/kept"
    for d in (_d("G", 1, gone), _d("G", 2, gone), _d("H", 1, gone), _d("G", 1, kept)):
        await box.add(d)
    claimed = await box.claim_due(0.0, 10)
    assert await box.mark_endpoint_gone(gone, 1.0) == 3
    assert box.gone_endpoints() == {gone: 1.0}
    late = await box.add(_d("G", 3, gone))
    assert late.state is DeliveryState.GONE
    assert [e.delivery.url for e in box.entries(DeliveryState.PENDING, DeliveryState.IN_FLIGHT)] == [kept]
    # A request to the gone url that still succeeds is recorded as delivered.
    await box.mark_delivered(claimed[0].event_id, 1.5, 200)
    assert box.get(claimed[0].event_id).state is DeliveryState.DELIVERED
    assert box.revive_endpoint(gone) and not box.revive_endpoint(gone)
    assert (await box.add(_d("G", 4, gone))).state is DeliveryState.PENDING


# -- a scripted in-process receiver -----------------------------------------------------------


@dataclass
class Hit:
    path: str
    event_id: str
    call_id: str
    seq: int
    body: bytes
    query: dict[str, str]
    headers: dict[str, str]
    acked_before: list[int]
    error: str = ""
    status: int = 0


Script = Callable[[Hit], Awaitable[web.StreamResponse]]


def ok() -> web.Response:
    return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})


@dataclass
class Receiver:
    """Records every request (and whether both signatures verify) and answers as
    ``script`` says (200 by default)."""

    script: Script | None = None
    hits: list[Hit] = field(default_factory=list)
    acked: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    active: int = 0
    peak: int = 0
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        event = json.loads(body)
        call_id = event.get("CallId") or event.get("CallInfo", {}).get("CallId", "?")
        hit = Hit(
            request.path,
            request.headers.get("webhook-id", ""),
            call_id,
            int(event.get("Sequence", -1)),
            body,
            dict(request.query),
            dict(request.headers),
            list(self.acked[(request.path, call_id)]),
        )
        try:
            verify_tencent(TOKEN, request.query, sdk_app_id=APP)
            Webhook(SECRET).verify(body, hit.headers)
            assert event["EventId"] == hit.event_id
        except Exception as exc:
            hit.error = f"{type(exc).__name__}: {exc}"
        self.hits.append(hit)
        self.active += 1
        self.peak = max(self.peak, self.active)
        self._notify()
        try:
            resp = await self.script(hit) if self.script else ok()
        finally:
            self.active -= 1
        hit.status = resp.status
        if 200 <= resp.status < 300:
            self.acked[(request.path, call_id)].append(hit.seq)
        self._notify()
        return resp

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


@pytest.fixture
async def receiver() -> Any:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


def deliverer(box: MemoryOutbox, **kw: Any) -> Deliverer:
    kw.setdefault("schedule", FAST)
    kw.setdefault("poll_interval", 0.05)
    return Deliverer(box, CREDS, rng=random.Random(7), **kw)


def all_done(box: MemoryOutbox, n: int) -> Callable[[], bool]:
    return lambda: box.settled and len(box.entries()) == n


async def test_every_delivery_arrives_signed_both_ways(receiver: Receiver) -> None:
    box = MemoryOutbox()
    sent: list[Delivery] = []
    for call in ("c1", "c2", "c3"):
        for seq, command in enumerate(("Call.CallbackAfterStartCall", "callee_accept_call", "normal_end"), 1):
            d = new_delivery(
                url=f"{receiver.url}/hook?tenant=7",
                command=command,
                call_id=call,
                sequence=seq,
                payload={"CallbackCommand": command, "CallId": call, "EventTime": 1},
                created_at=time.time(),
            )
            sent.append(d)
            await box.add(d)
    async with deliverer(box) as worker:
        worker.wake()
        await box.wait_until(all_done(box, len(sent)))
        assert worker.stats.delivered == len(sent) and worker.stats.failed_attempts == 0
    assert box.counts()[DeliveryState.DELIVERED] == len(sent)
    assert sorted(h.event_id for h in receiver.hits) == sorted(x.event_id for x in sent)
    for hit in receiver.hits:
        assert hit.error == "", hit.error
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.query["tenant"] == "7" and hit.query["contenttype"] == "json"
        if hit.seq == 1:
            assert hit.query["CallbackCommand"] == "Call.CallbackAfterStartCall"
            assert hit.query["SdkAppid"] == str(APP)
        else:
            assert hit.query["sdkappid"] == str(APP) and "command" in hit.query


async def test_per_call_order_holds_under_concurrency(receiver: Receiver) -> None:
    """40 calls x 8 events, ~30% of requests answered 500, random latency: every call's
    events reach the receiver in sequence order, each only after the previous one was
    acknowledged, while different calls go in parallel."""
    chaos = random.Random(11)

    async def flaky(hit: Hit) -> web.StreamResponse:
        await asyncio.sleep(chaos.random() * 0.004)  # latency, not synchronisation
        return web.Response(status=500) if chaos.random() < 0.3 else ok()

    receiver.script = flaky
    box = MemoryOutbox()
    calls, per_call = 40, 8
    now = time.time()
    for seq in range(1, per_call + 1):  # interleaved: call 0 #1, call 1 #1, …, call 0 #2, …
        for c in range(calls):
            await box.add(_d(f"call{c}", seq, f"{receiver.url}/order", now))
    async with deliverer(box, max_in_flight=16) as d:
        d.wake()
        await box.wait_until(all_done(box, calls * per_call), timeout=20)
        assert d.stats.failed_attempts > 0
    assert box.counts()[DeliveryState.DELIVERED] == calls * per_call
    for hit in receiver.hits:
        assert hit.error == ""
        assert hit.acked_before == list(range(1, hit.seq)), (hit.call_id, hit.seq, hit.acked_before)
    for c in range(calls):
        assert receiver.acked[("/order", f"call{c}")] == list(range(1, per_call + 1))
    assert receiver.peak > 1


async def test_receiver_down_then_back(tmp_path: Path) -> None:
    """Connection refused for a while, then the example receiver (its own signature
    checks) comes up on that port: everything arrives, in order, signatures valid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/cb"
    box = MemoryOutbox()
    now = time.time()
    deliveries = [_d(f"k{c}", seq, url, now) for seq in (1, 2, 3, 4) for c in range(3)]
    for x in deliveries:
        await box.add(x)
    firsts = [x.event_id for x in deliveries if x.sequence == 1]
    async with deliverer(box) as d:
        d.wake()
        await box.wait_until(lambda: all(box.get(e).delivery.attempts >= 3 for e in firsts))
        assert all("Connect" in box.get(e).last_error for e in firsts), box.get(firsts[0]).last_error
        async with ExampleReceiver(port) as lines:
            await box.wait_until(all_done(box, len(deliveries)), timeout=15)
            await lines.wait_for(lambda ls: sum(line.startswith("EVENT") for line in ls) == len(deliveries))
    events = [line.split() for line in lines.lines if line.startswith("EVENT")]
    assert not [line for line in lines.lines if line.startswith("REJECTED")]
    for c in range(3):
        seqs = [int(f[3].removeprefix("seq=")) for f in events if f[2] == f"call=k{c}"]
        assert seqs == [1, 2, 3, 4]
    assert box.counts()[DeliveryState.DELIVERED] == len(deliveries)


async def test_410_gone_stops_that_endpoint(receiver: Receiver) -> None:
    async def script(hit: Hit) -> web.StreamResponse:
        return web.Response(status=410) if hit.path == "/gone" else ok()

    receiver.script = script
    box = MemoryOutbox()
    gone, fine = f"{receiver.url}/gone", f"{receiver.url}/fine"
    now = time.time()
    for x in [_d("X", s, gone, now) for s in (1, 2, 3)] + [_d("Y", s, gone, now) for s in (1, 2)]:
        await box.add(x)
    for s in (1, 2, 3):
        await box.add(_d("Z", s, fine, now))
    async with deliverer(box) as d:
        d.wake()
        await box.wait_until(all_done(box, 8))
        assert d.stats.endpoints_gone >= 1 and d.stats.failed_attempts == 0
    assert len(receiver.on("/gone")) <= 2  # at most the first of X and of Y, once each
    assert {h.seq for h in receiver.on("/gone")} == {1}
    assert [e.state for e in box.entries() if e.delivery.url == gone] == [DeliveryState.GONE] * 5
    # the attempt that got the 410 is counted, with its status and error (a second
    # request in flight at once finds its delivery dropped already: not counted)
    answered = [e for e in box.entries() if e.delivery.url == gone and e.last_status == 410]
    assert 1 <= len(answered) <= len(receiver.on("/gone"))
    for e in answered:
        assert (e.delivery.attempts, e.last_attempt_at) == (1, e.finished_at)
        assert e.last_error.startswith("HTTP 410")
    assert receiver.acked[("/fine", "Z")] == [1, 2, 3]
    assert gone in box.gone_endpoints()
    assert (await box.add(_d("X", 9, gone, now))).state is DeliveryState.GONE


async def test_a_redirect_is_not_followed_and_counts_as_failure(receiver: Receiver) -> None:
    async def script(hit: Hit) -> web.StreamResponse:
        if hit.path == "/moved":
            return web.Response(status=302, headers={"Location": f"{receiver.url}/target"})
        return ok()

    receiver.script = script
    box = MemoryOutbox()
    x = _d("R", 1, f"{receiver.url}/moved", time.time())
    await box.add(x)
    async with deliverer(box) as d:
        d.wake()
        # Failed and tried again: a redirect is a failure, however long an attempt takes.
        await box.wait_until(lambda: box.get(x.event_id).delivery.attempts >= 2)
        assert d.stats.failed_attempts >= 2 and d.stats.delivered == 0
    entry = box.get(x.event_id)
    assert entry.state is not DeliveryState.DELIVERED
    assert entry.last_status == 302 and "redirect" in entry.last_error and "/target" in entry.last_error
    assert receiver.on("/target") == []


async def test_a_slow_receiver_times_out_and_is_retried_with_the_same_event_id(receiver: Receiver) -> None:
    release = asyncio.Event()
    seen: set[str] = set()

    async def slow_first(hit: Hit) -> web.StreamResponse:
        if hit.event_id not in seen:
            seen.add(hit.event_id)
            await release.wait()  # hangs past the deliverer's total timeout
        return ok()

    receiver.script = slow_first
    box = MemoryOutbox()
    x = _d("S", 1, f"{receiver.url}/slow", time.time())
    await box.add(x)
    try:
        async with deliverer(box, connect_timeout=0.5, total_timeout=1.0) as d:
            d.wake()
            await box.wait_until(lambda: box.get(x.event_id).state is DeliveryState.DELIVERED)
            failed = d.stats.failed_attempts
    finally:
        release.set()
    # The first attempt that arrives hangs and times out; on a loaded machine another
    # may time out too: every attempt carries the same event id and body, and one
    # finally gets through.
    hits = receiver.on("/slow")
    assert failed >= 1 and 2 <= len(hits) <= failed + 1
    assert {h.event_id for h in hits} == {x.event_id} and all(h.body == x.body for h in hits)
    assert box.get(x.event_id).delivery.attempts == failed + 1


async def test_duplicates_only_ever_share_an_event_id(receiver: Receiver) -> None:
    """The receiver handles each event but the first answer is lost (500): every event
    arrives twice, both times with the same id and body; distinct events never share one."""
    answered: set[str] = set()

    async def lose_first_answer(hit: Hit) -> web.StreamResponse:
        if hit.event_id in answered:
            return ok()
        answered.add(hit.event_id)
        return web.Response(status=500)

    receiver.script = lose_first_answer
    box = MemoryOutbox()
    deliveries = [_d(f"D{c}", s, f"{receiver.url}/dup", time.time()) for s in (1, 2) for c in range(5)]
    for x in deliveries:
        await box.add(x)
    async with deliverer(box) as d:
        d.wake()
        await box.wait_until(all_done(box, len(deliveries)))
    by_id: dict[str, list[Hit]] = defaultdict(list)
    for h in receiver.hits:
        by_id[h.event_id].append(h)
    assert set(by_id) == {x.event_id for x in deliveries}
    for event_id, hits in by_id.items():
        assert len(hits) == 2
        assert {h.body for h in hits} == {hits[0].body}
        assert json.loads(hits[0].body)["EventId"] == event_id


async def test_retry_after_is_honoured(receiver: Receiver) -> None:
    async def busy(hit: Hit) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "30"}, text="slow down")

    receiver.script = busy
    box = MemoryOutbox()
    x = _d("T", 1, f"{receiver.url}/busy", time.time())
    await box.add(x)
    async with deliverer(box) as d:
        d.wake()
        await box.wait_until(lambda: box.get(x.event_id).delivery.attempts == 1)
    entry = box.get(x.event_id)
    assert entry.last_attempt_at is not None and entry.next_at - entry.last_attempt_at >= 30
    assert entry.last_status == 429 and "slow down" in entry.last_error


async def test_retry_after_as_an_http_date_is_honoured(receiver: Receiver) -> None:
    when = email.utils.formatdate(time.time() + 40, usegmt=True)  # whole seconds: 39-40 s

    async def busy(hit: Hit) -> web.StreamResponse:
        return web.Response(status=503, headers={"Retry-After": when})

    receiver.script = busy
    box = MemoryOutbox()
    x = _d("U", 1, f"{receiver.url}/busy", time.time())
    await box.add(x)
    async with deliverer(box) as d:
        d.wake()
        await box.wait_until(lambda: box.get(x.event_id).delivery.attempts == 1)
    entry = box.get(x.event_id)
    assert entry.last_attempt_at is not None and entry.next_at - entry.last_attempt_at >= 30
    assert entry.last_status == 503


def test_retry_after_parsing() -> None:
    from ringline.server.webhooks.delivery import _retry_after

    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None and _retry_after("-3") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0


async def test_close_is_idempotent_and_hands_in_flight_requests_back(receiver: Receiver) -> None:
    hold = asyncio.Event()

    async def hang(hit: Hit) -> web.StreamResponse:
        await hold.wait()
        return ok()

    receiver.script = hang
    box = MemoryOutbox()
    deliveries = [_d(f"Q{c}", 1, f"{receiver.url}/hang", time.time()) for c in range(3)]
    for x in deliveries:
        await box.add(x)
    d = deliverer(box)
    await d.start()
    await d.start()  # idempotent
    d.wake()
    try:
        await receiver.wait_until(lambda: receiver.active == 3)
        assert d.in_flight == 3 and d.running
        await asyncio.gather(d.close(), d.close())
        await d.close()
        assert not d.running and d.in_flight == 0
        with pytest.raises(RuntimeError, match="closed"):
            await d.start()
        for x in deliveries:  # released: pending again, no attempt counted
            entry = box.get(x.event_id)
            assert (entry.state, entry.delivery.attempts) == (DeliveryState.PENDING, 0)
    finally:
        hold.set()
        await d.close()
    receiver.script = None
    async with deliverer(box) as again:
        again.wake()
        await box.wait_until(all_done(box, 3))
    assert box.counts()[DeliveryState.DELIVERED] == 3


async def test_closing_a_deliverer_that_never_started() -> None:
    d = deliverer(MemoryOutbox())
    await d.close()
    await d.close()
    assert not d.running


# -- the example receiver as a process ---------------------------------------------------------


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.lines):
                self.changed.clear()
                await self.changed.wait()


class ExampleReceiver:
    """``examples/webhook_receiver.py`` as a subprocess; yields its stdout lines once it
    listens; SIGTERM on exit."""

    def __init__(self, port: int, secrets: tuple[str, ...] = (SECRET,), token: str = TOKEN) -> None:
        self.args = [sys.executable, str(EXAMPLE), "--port", str(port), "--token", token]
        for s in secrets:
            self.args += ["--secret", s]
        self.lines = Lines()

    async def __aenter__(self) -> Lines:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.reader = asyncio.create_task(self._read())
        await self.lines.wait_for(lambda ls: any("listening" in line for line in ls))
        return self.lines

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.lines.append(line.decode().rstrip())
            self.lines.changed.set()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        assert await self.proc.wait() == 0, self.lines.lines
        await self.reader


async def test_the_example_receiver_checks_both_signatures_and_drops_duplicates() -> None:
    """The example's own verification (no ringline imports) against what ringline signs."""
    old, new = generate_secret(), generate_secret()
    port = free_port()
    base = f"http://127.0.0.1:{port}/cb"

    def request(body: bytes, *, event_id: str = "evt_ex1", token: str = TOKEN, secrets: Any = (new,)) -> Any:
        stamp = int(time.time())
        query = tencent_query(
            sdk_app_id=APP, command="Call.CallbackAfterStartCall", token=token, request_time=stamp
        )
        headers = standard_headers(secrets, event_id, stamp, body) | {"Content-Type": "application/json"}
        return {"params": query, "headers": headers, "data": body}

    body = encode_body({"CallInfo": {"CallId": "ex-call"}}, event_id="evt_ex1", sequence=5)
    async with ExampleReceiver(port, secrets=(new,)) as lines, aiohttp.ClientSession() as http:

        async def status(**kw: Any) -> int:
            async with http.post(base, **kw) as resp:
                return resp.status

        assert await status(**request(body)) == 200
        assert await status(**request(body)) == 200  # a retry: acknowledged, not processed again
        assert await status(**request(body, event_id="evt_ex2", secrets=(new, old))) == 200  # rotation
        assert await status(**request(body, token="wrong")) == 401
        assert await status(**request(body, secrets=(old,))) == 401
        tampered = request(body)
        tampered["data"] = body.replace(b"ex-call", b"ex-cal1")
        assert await status(**tampered) == 401
        await lines.wait_for(lambda ls: sum(line.startswith("REJECTED") for line in ls) == 3)
    events = [line for line in lines.lines if line.startswith("EVENT")]
    assert events == [
        "EVENT command=Call.CallbackAfterStartCall call=ex-call seq=5 id=evt_ex1",
        "EVENT command=Call.CallbackAfterStartCall call=ex-call seq=5 id=evt_ex2",
    ]
    assert [line for line in lines.lines if line.startswith("DUPLICATE")] == ["DUPLICATE id=evt_ex1"]


def test_deliverer_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="lease"):
        Deliverer(MemoryOutbox(lease=5), CREDS, total_timeout=10)
    with pytest.raises(ValueError, match="timeout"):
        Deliverer(MemoryOutbox(), CREDS, connect_timeout=5, total_timeout=2)
    with pytest.raises(ValueError, match="max_in_flight"):
        Deliverer(MemoryOutbox(), CREDS, max_in_flight=0)


def test_event_ids_are_unique_well_formed_and_new_after_a_fork() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not continue the parent's sequence
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[4:20] != ids[-1][4:20], "a forked process must not share its parent's id prefix"
    assert child not in ids
