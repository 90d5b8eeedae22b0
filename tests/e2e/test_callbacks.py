"""Callbacks end to end: a real server process, real SDK clients, and a real receiver
process (tests/callback_receiver.py) that checks signatures with the PyPI package
``standardwebhooks``.

What must hold: every callback the server planned arrives, signed both ways, in
per-call order; a receiver that is down and comes back gets everything; a server
killed with SIGKILL mid-delivery and restarted sends everything, duplicates only with
the same event id (and body); ``410 Gone`` stops an endpoint until it is set again;
``redeliver`` sends a callback again; records agree with what the clients saw (I4).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from callbackkit import WHSEC, Admin, Receiver, Users, log_in, server_args, talk

from rawclient import Raw
from ringline import CallEndReason, CallEngine, CallParams, MediaType
from ringline.server.rest_contract import V1_CALLBACK_ACTIONS, V4_CALLBACK_COMMANDS
from serverproc import ServerProcess, free_port, unique


async def day_of_calls(users: Users, admin: Admin) -> dict[str, str]:
    """Calls of every kind; returns call id -> the CallResult each must have."""
    (a, ra, ua), (b, rb, ub), (c, rc, uc), (d, rd, ud) = await users(4)
    expected: dict[str, str] = {}

    # 1v1: accept, talk, hang up.
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await a.hangup()
    await rb.wait_for("on_call_end", call_id=cid)
    expected[cid] = "NormalEnd"
    # rejected
    cid = await a.calls([ub], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.reject()
    await ra.wait_for("on_call_not_connected", call_id=cid)
    expected[cid] = "Reject"
    # cancelled by the caller
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await a.hangup()
    await rb.wait_for("on_call_not_connected", call_id=cid)
    expected[cid] = "Cancel"
    # nobody answers
    cid = await a.calls([ub], MediaType.AUDIO, CallParams(timeout=1))
    await ra.wait_for("on_call_not_connected", call_id=cid)
    await rb.wait_for("on_call_not_connected", call_id=cid)
    expected[cid] = "NotAnswer"
    # busy: b is in a call with c
    busy = await c.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=busy)
    await b.accept()
    await rc.wait_for("on_call_begin", call_id=busy)
    cid = await a.calls([ub], MediaType.AUDIO)
    await ra.wait_for("on_call_not_connected", call_id=cid)
    expected[cid] = "CallBusy"
    await c.hangup()
    await rb.wait_for("on_call_end", call_id=busy)
    expected[busy] = "NormalEnd"
    # a group call: one accepts, one rejects, an invitee joins, the server ends it
    cid = await a.calls([ub, uc], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=cid)
    await rc.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await c.reject()
    await ra.wait_for("on_user_reject", call_id=cid)
    await b.invite_user([ud])
    await rd.wait_for("on_call_received", call_id=cid)
    await d.accept()
    await ra.wait_for("on_user_join", call_id=cid, user_id=ud)
    await admin.v4("call_engine_http_srv/end_call", {"CallId": cid})
    for rec in (ra, rb, rd):
        got = await rec.wait_for("on_call_end", call_id=cid)
        assert got["reason"] is CallEndReason.END_BY_SERVER
    expected[cid] = "EndByServer"
    return expected


def check_order_and_signatures(hits: list[dict[str, Any]]) -> None:
    """Both signatures valid on every request; per (url, call): first arrivals come in
    Sequence order; a repeated event id always carries the same body."""
    assert hits and all(h["std_ok"] and h["tencent_ok"] for h in hits), [h for h in hits if not h["std_ok"]][
        :1
    ]
    body_of: dict[str, str] = {}
    seen: set[str] = set()
    last: dict[tuple[str, str], int] = defaultdict(lambda: -1)
    slot: dict[tuple[str, str, int], str] = {}
    for h in hits:
        ev = h["event"]
        assert body_of.setdefault(h["id"], h["body"]) == h["body"], (
            "a duplicate must be byte for byte the same"
        )
        assert ev["EventId"] == h["id"]
        call = ev.get("CallId") or ev.get("CallInfo", {}).get("CallId") or ev["CallRecord"]["CallId"]
        key = (h["path"], call)
        assert slot.setdefault((h["path"], call, ev["Sequence"]), h["id"]) == h["id"], "one event, one id"
        if h["id"] in seen:
            continue
        seen.add(h["id"])
        assert ev["Sequence"] > last[key], f"out of order for {key}: {ev['Sequence']} after {last[key]}"
        last[key] = ev["Sequence"]


async def test_a_day_of_calls_every_callback_arrives_signed_and_in_order(
    srv: ServerProcess, users: Users, session: aiohttp.ClientSession
) -> None:
    admin = Admin(srv, session)
    receiver = await Receiver(free_port()).start()
    try:
        await admin.subscribe(receiver.url)
        expected = await day_of_calls(users, admin)
        planned = await admin.deliveries()
        ids = {d["EventId"] for d in planned}
        await receiver.wait_until(lambda: ids <= receiver.ids(), "every planned callback")
        check_order_and_signatures(receiver.hits)
        assert len(receiver.hits) == len(ids)  # nothing failed, so nothing was sent twice
        await admin.eventually(
            lambda: _all_delivered(admin, len(ids)), "every delivery recorded as Delivered"
        )
        by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for h in receiver.hits:
            ev = h["event"]
            call = ev.get("CallId") or ev.get("CallInfo", {}).get("CallId") or ev["CallRecord"]["CallId"]
            by_call[call].append(h)
        assert set(by_call) == set(expected)
        for cid, result in expected.items():
            hits = by_call[cid]
            v4 = [h for h in hits if h["path"] == "/v4"]
            assert v4[0]["command"] == "Call.CallbackAfterStartCall"
            assert v4[-1]["command"] == "Call.CallbackAfterEndCall"
            record = (await admin.v4("call_record_http_srv/get_record_by_callid", {"CallId": cid}))[
                "CallRecord"
            ]
            assert v4[-1]["event"]["CallRecord"] == record  # the callback and REST agree
            assert record["CallResult"] == result  # and both agree with what the clients saw (I4)
            statuses = {
                h["event"]["UserId"]: h["command"]
                for h in hits
                if h["path"] == "/v1" and "Event" not in h["event"]
            }
            assert set(statuses) == {m["User_Account"] for m in record["MemberList"]}
            if result in ("Reject", "Cancel", "NotAnswer"):
                assert set(statuses.values()) == {
                    {"Reject": "reject", "Cancel": "cancel"}.get(result, "not_answer")
                }
    finally:
        await receiver.stop()


async def _all_delivered(admin: Admin, n: int) -> bool:
    counts = await admin.counts()
    return counts["Delivered"] == n and counts["Pending"] == counts["InFlight"] == 0


async def test_a_receiver_down_for_a_while_gets_everything_when_back(
    srv: ServerProcess, users: Users, session: aiohttp.ClientSession
) -> None:
    admin = Admin(srv, session)
    receiver = Receiver(free_port())  # not started: connections are refused
    await admin.subscribe(receiver.url)
    (a, ra, ua), (b, rb, ub) = await users(2)
    calls = []
    for _ in range(3):
        calls.append(await talk(a, ra, b, rb, ub))

    async def retried() -> bool:
        pending = await admin.deliveries(["Pending"])
        return any(d["Attempts"] >= 2 and d["LastError"] for d in pending)

    await admin.eventually(retried, "a failed attempt retried")
    waiting = await admin.deliveries(["Pending", "InFlight"])
    assert {d["CallId"] for d in waiting} == set(calls)
    failed = [d for d in waiting if d["Attempts"]]
    assert failed and all(d["LastStatus"] is None for d in failed)  # no HTTP answer: refused
    ids = {d["EventId"] for d in await admin.deliveries()}
    await receiver.start()
    try:
        await receiver.wait_until(lambda: ids <= receiver.ids(), "every callback after the outage")
        check_order_and_signatures(receiver.hits)
        await admin.eventually(lambda: _all_delivered(admin, len(ids)), "all delivered")
    finally:
        await receiver.stop()


async def test_server_killed_mid_delivery_sends_everything_after_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = ServerProcess(tmp_path / "srv", extra_args=server_args()).start()
    receiver = await Receiver(free_port()).start(delay=0.15)  # slow: requests stay in flight
    engines: list[CallEngine] = []
    try:
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)
        (a, ra, ua), (b, rb, ub) = await log_in(server, 2, engines)
        for _ in range(4):
            await talk(a, ra, b, rb, ub)
        before = {d["EventId"] for d in await admin.deliveries()}
        await receiver.wait_until(lambda: len(receiver.hits) >= 3, "the first callbacks")
        assert not before <= receiver.ids(), "the kill must come while callbacks are still waiting"
        for e in engines:
            await e.uninit()
        engines.clear()
        server.kill()  # SIGKILL, with requests in flight and callbacks pending
        server.start()
        planned = {d["EventId"] for d in await admin.deliveries()}
        assert planned == before  # the outbox survived the crash, unchanged
        await receiver.wait_until(lambda: planned <= receiver.ids(), "every callback after the restart")
        check_order_and_signatures(receiver.hits)
        await admin.eventually(lambda: _all_delivered(admin, len(planned)), "all delivered")
    finally:
        for e in engines:
            await e.uninit()
        await receiver.stop()
        server.kill()


async def test_410_gone_stops_an_endpoint_until_set_again_and_redeliver_sends_again(
    srv: ServerProcess, users: Users, session: aiohttp.ClientSession
) -> None:
    admin = Admin(srv, session)
    receiver = await _ScriptedReceiver(free_port()).start()
    base = receiver.url + "/hook"
    try:
        await admin.v4(
            "call_config/set_callback",
            {
                "Url": base,
                "CallbackCommandList": ["Call.CallbackAfterStartCall", "Call.CallbackAfterEndCall"],
            },
        )
        (a, ra, ua), (b, rb, ub) = await users(2)
        first = await a.calls([ub], MediaType.AUDIO)
        await rb.wait_for("on_call_received", call_id=first)
        await receiver.wait_until(lambda: len(receiver.hits) >= 1, "the first attempt")

        async def is_gone() -> bool:
            r = await admin.v4("call_callback_http_srv/get_deliveries", {"State": "Gone"})
            return r["TotalNum"] >= 1 and bool(r["GoneUrls"])

        await admin.eventually(is_gone, "the url marked gone")
        r = await admin.v4("call_callback_http_srv/get_deliveries", {"State": ["Gone"]})
        assert r["GoneUrls"][0]["Url"] == base
        dead = r["DeliveryList"][0]
        assert dead["LastStatus"] == 410 and dead["CallbackCommand"] == "Call.CallbackAfterStartCall"
        await a.hangup()
        await rb.wait_for("on_call_not_connected", call_id=first)
        # New events are not queued to a gone url: the end callback is gone at once.
        ends = await admin.deliveries(["Gone"], CallId=first)
        assert {d["CallbackCommand"] for d in ends} == {
            "Call.CallbackAfterStartCall",
            "Call.CallbackAfterEndCall",
        }
        assert len(receiver.hits) == 1
        # Redelivering to a gone url is refused with a hint.
        fail = await admin.v4_fail("call_callback_http_srv/redeliver", {"EventId": dead["EventId"]})
        assert fail["ErrorCode"] == 90005 and "set the callback url again" in fail["ErrorInfo"]
        unknown = await admin.v4_fail("call_callback_http_srv/redeliver", {"EventId": "evt_nope"})
        assert unknown["ErrorCode"] == 20001
        # The operator fixes the endpoint and sets the url again: it is alive again.
        await admin.v4(
            "call_config/set_callback", {"Url": base, "CallbackCommandList": list(V4_CALLBACK_COMMANDS)}
        )
        receiver.gone = False
        again = await admin.v4("call_callback_http_srv/redeliver", {"EventId": dead["EventId"]})
        assert again["Delivery"]["State"] == "Pending"
        await receiver.wait_until(
            lambda: sum(h["id"] == dead["EventId"] for h in receiver.hits) == 2, "the redelivered callback"
        )
        assert receiver.hits[-1]["body"] == receiver.hits[0]["body"]
        check_order_and_signatures(receiver.hits)
    finally:
        await receiver.stop()


@dataclass
class _ScriptedReceiver(Receiver):
    """In process, for the 410 test: answers 410 while ``gone`` is set (the test
    switches it), else 200; checks signatures with ``standardwebhooks`` like the
    receiver process does."""

    _runner: Any = None

    async def start(self, *, delay: float | None = None, hold_after: int = -1) -> Receiver:
        assert delay is None and hold_after < 0, "the scripted receiver neither delays nor holds"
        from aiohttp import web
        from standardwebhooks import Webhook

        hook = Webhook(WHSEC)
        self.gone = True

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                hook.verify(body, dict(request.headers))
                ok = True
            except Exception:
                ok = False
            self.add(
                {
                    "id": request.headers.get("webhook-id", ""),
                    "command": request.query.get("CallbackCommand", ""),
                    "path": request.path,
                    "body": body.decode(),
                    "event": json.loads(body),
                    "std_ok": ok,
                    "tencent_ok": True,
                }
            )
            return web.Response(status=410 if self.gone else 200)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_delivered_callbacks_are_purged_after_the_retention_time_failing_ones_stay(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """``--callback-retention`` on a real server: the purge loop drops delivered
    callbacks once they are older than the retention (here 2 s: the loop runs every
    half retention), while callbacks still failing (a v1 address that refuses
    connections) stay listed, retried."""
    receiver = await Receiver(free_port()).start()
    retention = 2.0  # seconds
    server = ServerProcess(
        tmp_path / "srv", extra_args=[*server_args(), "--callback-retention", str(retention / 3600)]
    ).start()
    a, b = Raw(server), Raw(server)
    try:
        admin = Admin(server, session)
        refused = f"http://127.0.0.1:{free_port()}"  # held by the test, never listening
        await admin.v4(
            "call_config/set_callback",
            {"Url": receiver.url + "/v4", "CallbackCommandList": list(V4_CALLBACK_COMMANDS)},
        )
        await admin.v1("callback/set", {"address": refused + "/v1", "actions": list(V1_CALLBACK_ACTIONS)})
        ua, ub = unique("a"), unique("b")
        await a.login(ua)
        await b.login(ub)
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=cid)
        await b.ok("accept", call_id=cid)
        await a.ok("hangup", call_id=cid)
        await b.event("on_call_end", call_id=cid)

        def v4_end_delivered() -> bool:
            return any(h["path"].startswith("/v4") and "EndCall" in h["command"] for h in receiver.hits)

        await receiver.wait_until(v4_end_delivered, "the call's end callback")

        async def purged_but_failing_kept() -> bool:
            listed = await admin.deliveries()
            mine = [d for d in listed if d["CallId"] == cid]
            delivered = [d for d in mine if d["State"] == "Delivered"]
            failing = [d for d in mine if d["Url"].startswith(refused) and d["Attempts"] >= 1]
            return not delivered and bool(failing)

        await admin.eventually(purged_but_failing_kept, "delivered callbacks purged, failing ones kept")
        mine = [d for d in await admin.deliveries() if d["CallId"] == cid]
        assert mine and all(d["Url"].startswith(refused) and d["State"] != "Delivered" for d in mine), mine
    finally:
        await a.close()
        await b.close()
        server.kill()
        await receiver.stop()
