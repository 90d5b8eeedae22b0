"""The admin REST API (v4 and v1) against real server processes.

Auth, envelopes and every error code; callback configuration; records of real calls
agreeing with what the clients saw (invariant I4); and paging and filters over 10,000
records written straight into a SQLite store before the server starts.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rawclient import Raw, logged_in
from ringline.core.enums import CallEndReason, CallRole, CallScene, MediaType
from ringline.core.records import CallRecord, CallResult, MemberRecord, call_result_for, result_type_for
from ringline.core.types import RoomId
from ringline.core.usersig import gen_user_sig
from ringline.server.formats import record_to_v1, record_to_v4
from ringline.server.openapi import ENDPOINTS
from ringline.server.rest_contract import V1_CALLBACK_ACTIONS, V4_CALLBACK_COMMANDS
from ringline.server.store import FinishedCallWrite, SqliteStore
from serverproc import SDK_APP_ID, SECRET, ServerProcess, unique

ADMIN = "administrator"


# --------------------------------------------------------------------------- helpers


def auth(srv: ServerProcess, **override: str) -> dict[str, str]:
    q = {
        "sdkappid": str(SDK_APP_ID),
        "identifier": ADMIN,
        "usersig": srv.sig(ADMIN),
        "random": "12345",
        "contenttype": "json",
    }
    q.update(override)
    return {k: v for k, v in q.items() if v is not None}


async def post(
    srv: ServerProcess,
    path: str,
    body: Any = None,
    *,
    data: Any = None,
    query: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Send one request; return (status, JSON body, headers)."""
    kw: dict[str, Any] = {"params": auth(srv) if query is None else query}
    if data is not None:
        kw["data"] = data
    elif body is not None:
        kw["json"] = body
    async with aiohttp.ClientSession() as http, http.request(method, srv.url + path, **kw) as r:
        assert r.content_type == "application/json", await r.text()
        return r.status, dict(await r.json()), dict(r.headers)


async def v4(srv: ServerProcess, command: str, body: Any = None, **kw: Any) -> dict[str, Any]:
    """A v4 command that must succeed; its ``Response``."""
    status, res, _ = await post(srv, f"/v4/{command}", {} if body is None else body, **kw)
    assert status == 200 and res["ActionStatus"] == "OK" and res["ErrorCode"] == 0, res
    assert res["RequestId"].startswith("r_") and res["ErrorInfo"] == ""
    return dict(res["Response"])


async def v4_fail(srv: ServerProcess, command: str, body: Any = None, **kw: Any) -> tuple[int, str]:
    """A v4 command that must fail with HTTP 200; (ErrorCode, ErrorInfo)."""
    status, res, _ = await post(srv, f"/v4/{command}", body, **kw)
    assert status == 200, res
    assert res["ActionStatus"] == "FAIL" and res["ErrorCode"] != 0 and "Response" not in res, res
    assert res["ErrorInfo"]
    return int(res["ErrorCode"]), str(res["ErrorInfo"])


async def v1(srv: ServerProcess, command: str, body: Any = None, **kw: Any) -> Any:
    """A v1 command that must succeed; its ``data``."""
    status, res, _ = await post(srv, f"/v1/{command}", {} if body is None else body, **kw)
    assert status == 200 and res["errorCode"] == 0 and res["errorMessage"] == "Success", res
    assert len(res["requestId"]) == 32
    return res["data"]


async def v1_fail(srv: ServerProcess, command: str, body: Any = None, **kw: Any) -> tuple[int, str]:
    status, res, _ = await post(srv, f"/v1/{command}", body, **kw)
    assert status == 200, res
    assert res["errorCode"] != 0 and res["data"] is None and res["errorMessage"], res
    return int(res["errorCode"]), str(res["errorMessage"])


def sig_with_version(version: str) -> str:
    """A well-formed admin sig whose ``TLS.ver`` is ``version``."""
    doc = {
        "TLS.ver": version,
        "TLS.identifier": ADMIN,
        "TLS.sdkappid": SDK_APP_ID,
        "TLS.expire": 3600,
        "TLS.time": int(time.time()),
        "TLS.sig": base64.b64encode(b"x" * 32).decode(),
    }
    raw = base64.b64encode(zlib.compress(json.dumps(doc).encode())).decode()
    return raw.replace("+", "*").replace("/", "-").replace("=", "_")


# --------------------------------------------------------------------------- auth and envelopes

SOME_V4 = "call_config/get_callback"
SOME_V1 = "records/get_record_by_callId"


@pytest.mark.parametrize(
    ("override", "code", "hint"),
    [
        (lambda s: {"usersig": ""}, 70002, "the usersig query parameter is missing or empty: mint one for"),
        (lambda s: {"usersig": "not-a-sig!"}, 70003, "the usersig query parameter is malformed"),
        (
            lambda s: {"usersig": gen_user_sig(SDK_APP_ID, "wrong-key", ADMIN, 3600, now=int(time.time()))},
            70009,
            "the usersig query parameter signature does not match",
        ),
        (
            lambda s: {"usersig": s.sig("alice")},
            70013,
            "was made for user 'alice', not the admin identifier 'administrator': mint one for",
        ),
        (
            lambda s: {"usersig": gen_user_sig(SDK_APP_ID, SECRET, ADMIN, 10, now=1_600_000_000)},
            70001,
            "the usersig query parameter has expired at 2020-09-13T12:26:50Z: mint a new one for the admin"
            " identifier 'administrator' (`ringline usersig administrator`",
        ),
        (
            lambda s: {"usersig": gen_user_sig(SDK_APP_ID + 1, SECRET, ADMIN, 3600, now=int(time.time()))},
            70014,
            f"the usersig query parameter was made for sdkappid {SDK_APP_ID + 1}, not {SDK_APP_ID}",
        ),
        (lambda s: {"usersig": sig_with_version("1.0")}, 70015, "2.0"),
        (lambda s: {"sdkappid": ""}, 70014, "SDKAppID"),
        (lambda s: {"sdkappid": "abc"}, 70014, "SDKAppID"),
        (lambda s: {"sdkappid": str(SDK_APP_ID + 1)}, 70014, str(SDK_APP_ID)),
        (lambda s: {"identifier": "alice", "usersig": s.sig("alice")}, 60011, "sign as 'administrator'"),
        (lambda s: {"identifier": ""}, 60011, "missing"),
    ],
    ids=[
        "empty-sig",
        "malformed-sig",
        "bad-signature",
        "sig-of-another-user",
        "expired-sig",
        "sig-of-another-app",
        "sig-version",
        "no-sdkappid",
        "sdkappid-not-a-number",
        "other-sdkappid",
        "not-admin",
        "no-identifier",
    ],
)
async def test_bad_auth_gets_its_own_code_on_v4_and_v1(
    server: ServerProcess, override: Callable[[ServerProcess], dict[str, str]], code: int, hint: str
) -> None:
    query = auth(server, **override(server))
    got, info = await v4_fail(server, SOME_V4, {}, query=query)
    assert (got, hint in info) == (code, True), info
    got, info = await v1_fail(server, SOME_V1, {"callId": "x"}, query=query)
    assert (got, hint in info) == (code, True), info
    # REST answers speak of REST, not of the SDK's login calls.
    assert not any(sdk in info for sdk in ("init()", "renew_user_sig", "user_id", "USER_ID")), info


async def test_auth_is_checked_before_the_command(server: ServerProcess) -> None:
    query = auth(server, identifier="bob", usersig=server.sig("bob"))
    assert (await v4_fail(server, "nope/nothing", {}, query=query))[0] == 60011
    assert (await v1_fail(server, "nope/nothing", {}, query=query))[0] == 60011


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"null", "JSON object"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 32 levels"),
    ],
    ids=["not-json", "array", "string", "null", "not-utf8", "deeply-nested"],
)
async def test_a_body_that_is_not_a_json_object_is_90001(
    server: ServerProcess, data: bytes, hint: str
) -> None:
    code, info = await v4_fail(server, SOME_V4, data=data)
    assert code == 90001 and hint in info, info
    code, info = await v1_fail(server, SOME_V1, data=data)
    assert code == 90001 and hint in info, info


async def test_an_empty_body_counts_as_an_empty_object(server: ServerProcess) -> None:
    assert set(await v4(server, SOME_V4, data=b"")) == {"Url", "CallbackCommandList"}


async def test_a_body_over_1_mib_is_refused_with_and_without_content_length(server: ServerProcess) -> None:
    big = io.BytesIO(json.dumps({"CallId": "x" * (1 << 20)}).encode())
    code, info = await v4_fail(server, "call_record_http_srv/get_record_by_callid", data=big)
    assert code == 90001 and "1 MiB" in info

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536  # 1.25 MiB of JSON whitespace, no Content-Length

    status, res, _ = await post(server, f"/v1/{SOME_V1}", data=chunked())
    assert status == 200 and res["errorCode"] == 90001 and "1 MiB" in res["errorMessage"]
    # and the server is fine afterwards
    assert await v4(server, SOME_V4) is not None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405_with_the_envelope(server: ServerProcess, method: str) -> None:
    status, res, headers = await post(server, f"/v4/{SOME_V4}", method=method)
    assert status == 405 and headers["Allow"] == "POST"
    assert res["ActionStatus"] == "FAIL" and res["ErrorCode"] == 60002 and "POST" in res["ErrorInfo"]
    status, res, headers = await post(server, f"/v1/{SOME_V1}", method=method)
    assert status == 405 and headers["Allow"] == "POST"
    assert res["errorCode"] == 60002 and "POST" in res["errorMessage"] and res["data"] is None


@pytest.mark.parametrize(
    "path", ["/v4/nope/nothing", "/v4/call_config", "/v4/a/b/c", "/v1/callback/nope", "/v1/records", "/v1/ws"]
)
async def test_unknown_commands_get_60020_listing_the_commands(server: ServerProcess, path: str) -> None:
    status, res, _ = await post(server, path, {})
    assert status == 200
    if path.startswith("/v4/"):
        assert res["ErrorCode"] == 60020 and "call_config/set_callback" in res["ErrorInfo"], res
    else:
        assert res["errorCode"] == 60020 and "callback/set" in res["errorMessage"], res


async def test_the_websocket_route_still_upgrades(server: ServerProcess) -> None:
    c = await Raw(server).connect()
    try:
        await c.login(unique("ws"))
        assert await c.ok("get_state") == {"call": None}
    finally:
        await c.close()


async def test_every_documented_command_is_served(server: ServerProcess) -> None:
    """Each admin command of the table answers with its envelope (no 404, no 5xx)."""
    for e in ENDPOINTS:
        if e.api == "v4":
            status, res, _ = await post(server, e.path, e.example)
            assert status == 200 and res["ErrorCode"] != 60020, (e.path, res)
        elif e.api == "v1":
            status, res, _ = await post(server, e.path, e.example)
            assert status == 200 and res["errorCode"] != 60020, (e.path, res)


# --------------------------------------------------------------------------- v4 callback config


async def test_v4_callback_config_set_get_overwrite_delete(server: ServerProcess) -> None:
    await v4(server, "call_config/delete_callback")
    assert await v4(server, "call_config/get_callback") == {"Url": "", "CallbackCommandList": []}
    await v4(
        server,
        "call_config/set_callback",
        {"Url": "https://hooks.example.com/a?x=1", "CallbackCommandList": ["Call.CallbackAfterEndCall"] * 2},
    )
    assert await v4(server, "call_config/get_callback") == {
        "Url": "https://hooks.example.com/a?x=1",
        "CallbackCommandList": ["Call.CallbackAfterEndCall"],  # duplicates dropped
    }
    await v4(
        server,
        "call_config/set_callback",
        {"Url": "HTTP://127.0.0.1:9/b", "CallbackCommandList": list(reversed(V4_CALLBACK_COMMANDS)), "X": 1},
    )
    assert await v4(server, "call_config/get_callback") == {
        "Url": "HTTP://127.0.0.1:9/b",
        "CallbackCommandList": list(reversed(V4_CALLBACK_COMMANDS)),
    }
    await v4(server, "call_config/delete_callback")
    assert await v4(server, "call_config/get_callback") == {"Url": "", "CallbackCommandList": []}
    await v4(server, "call_config/delete_callback")  # idempotent


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "Url"),
        ({"Url": "ftp://x.example/", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "http"),
        ({"Url": "https://", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "host"),
        ({"Url": "x.example/cb", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "http"),
        ({"Url": "http://a b/", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "http"),
        ({"Url": "http://[::1/", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "http"),
        ({"Url": "http://x:99999/", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "http"),
        ({"Url": "http://x/" + "a" * 2048, "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "2048"),
        ({"Url": 5, "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, "Url"),
        ({"Url": "http://x/"}, "CallbackCommandList is missing"),
        ({"Url": "http://x/", "CallbackCommandList": "Call.CallbackAfterEndCall"}, "list"),
        ({"Url": "http://x/", "CallbackCommandList": []}, "empty"),
        ({"Url": "http://x/", "CallbackCommandList": ["Call.Nope", 3]}, "Call.CallbackAfterStartCall"),
    ],
)
async def test_v4_set_callback_refuses_bad_fields(
    server: ServerProcess, body: dict[str, Any], hint: str
) -> None:
    code, info = await v4_fail(server, "call_config/set_callback", body)
    assert code == 90005 and hint in info, info


# --------------------------------------------------------------------------- v1 callback config


async def test_v1_callback_config_lifecycle_and_error_codes(server: ServerProcess) -> None:
    status, res, _ = await post(server, "/v1/callback/delete", {})
    assert res["errorCode"] in (0, 999)  # start clean whatever ran before
    for cmd in ("callback/get", "callback/delete"):
        code, info = await v1_fail(server, cmd, {})
        assert code == 999 and "callback/set" in info
    code, info = await v1_fail(server, "callback/update", {"address": "http://x/", "actions": ["reject"]})
    assert code == 999 and "callback/set" in info

    for bad in ("www.example.com/cb", "ftp://example.com", "", "https://", 7, None):
        code, info = await v1_fail(server, "callback/set", {"address": bad, "actions": ["reject"]})
        assert code == 70001 and "http" in info, (bad, info)
    for actions in (None, "reject", [], ["reject", "caller_call_nope"], [1]):
        body: dict[str, Any] = {"address": "http://x/"}
        if actions is not None:
            body["actions"] = actions
        code, info = await v1_fail(server, "callback/set", body)
        assert code == 90005 and "actions" in info, (actions, info)

    address = "http://www.example.com/callback"
    assert (
        await v1(server, "callback/set", {"address": address, "actions": ["call_busy", "normal_end"]})
        == address
    )
    assert await v1(server, "callback/get") == {"actions": ["call_busy", "normal_end"], "address": address}
    # set again: the last call wins
    assert (
        await v1(server, "callback/set", {"address": address, "actions": list(V1_CALLBACK_ACTIONS)})
        == address
    )
    assert (await v1(server, "callback/get"))["actions"] == list(V1_CALLBACK_ACTIONS)
    # every action the vendor lists is accepted, also one Ringline never sends
    assert "caller_call_failed" in V1_CALLBACK_ACTIONS and "callee_ignore_call" in V1_CALLBACK_ACTIONS
    vendor_list = ["caller_call_failed", "callee_ignore_call", "interrupt"]
    assert await v1(server, "callback/set", {"address": address, "actions": vendor_list}) == address
    assert (await v1(server, "callback/get"))["actions"] == vendor_list
    new = "https://example.org/v1?k=v"
    assert await v1(server, "callback/update", {"address": new, "actions": ["invite_user"]}) == new
    assert await v1(server, "callback/get") == {"actions": ["invite_user"], "address": new}
    code, _ = await v1_fail(server, "callback/update", {"address": "nope", "actions": ["invite_user"]})
    assert code == 70001
    assert await v1(server, "callback/delete") == ""
    assert (await v1_fail(server, "callback/get", {}))[0] == 999


async def test_v4_and_v1_configs_are_kept_apart(server: ServerProcess) -> None:
    await v4(
        server,
        "call_config/set_callback",
        {"Url": "http://four/", "CallbackCommandList": ["Call.CallbackAfterStartCall"]},
    )
    await v1(server, "callback/set", {"address": "http://one/", "actions": ["reject"]})
    await v4(server, "call_config/delete_callback")
    assert await v1(server, "callback/get") == {"actions": ["reject"], "address": "http://one/"}
    await v4(
        server,
        "call_config/set_callback",
        {"Url": "http://four/", "CallbackCommandList": ["Call.CallbackAfterStartCall"]},
    )
    await v1(server, "callback/delete")
    assert (await v4(server, "call_config/get_callback"))["Url"] == "http://four/"
    await v4(server, "call_config/delete_callback")


async def test_callback_configs_survive_a_restart(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv").start()
    try:
        await v4(
            srv,
            "call_config/set_callback",
            {"Url": "https://a/", "CallbackCommandList": ["Call.CallbackAfterEndCall"]},
        )
        await v1(srv, "callback/set", {"address": "https://b/", "actions": ["cancel"]})
        assert srv.stop() == 0
        srv.start()
        assert await v4(srv, "call_config/get_callback") == {
            "Url": "https://a/",
            "CallbackCommandList": ["Call.CallbackAfterEndCall"],
        }
        assert await v1(srv, "callback/get") == {"actions": ["cancel"], "address": "https://b/"}
    finally:
        srv.stop()


# --------------------------------------------------------------------------- records of real calls (I4)


def members_of(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for x in rec["MemberList"]:
        assert x["User_Account"] not in out, "one stint per user in these calls"
        out[x["User_Account"]] = x
    return out


def between(server_s: int, before: float, after: float) -> bool:
    """A whole-second (truncated) server time of something that happened after the
    client read ``before`` and before it read ``after`` (same clock, any load)."""
    return int(before) <= server_s <= after


async def both_records(server: ServerProcess, cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    rec = (await v4(server, "call_record_http_srv/get_record_by_callid", {"CallId": cid}))["CallRecord"]
    rec1 = await v1(server, "records/get_record_by_callId", {"callId": cid})
    assert rec1["callId"] == rec["CallId"] == cid and rec1["sdkAppId"] == SDK_APP_ID
    assert (rec1["startCallTs"], rec1["acceptTs"], rec1["endTs"]) == (
        rec["StartTime"],
        rec["AcceptTime"],
        rec["EndTime"],
    )
    # v4: the member list, caller first (as the vendor documents it); v1: the callees only
    assert (
        rec1["caller"] == rec["Caller_Account"]
        and [rec1["caller"], *rec1["callees"]] == rec["CalleeList_Account"]
    )
    assert rec1["roomId"] == rec["RoomId"]
    assert rec1["totalUserNumber"] == len({rec["Caller_Account"], *rec["CalleeList_Account"]})
    assert rec1["mediaType"] == rec["MediaType"].lower()
    assert rec1["callType"] == {"SingleCall": "single", "MultiCall": "group"}[rec["CallType"]]
    return rec, rec1


async def test_answered_1v1_record_matches_what_both_sides_saw(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    t_call = time.time()
    cid = (await a.ok("calls", user_ids=[ub], media_type=2))["call_id"]
    t_called = time.time()
    await b.event("on_call_received", call_id=cid)
    t_accept = time.time()
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    t_begin = time.time()
    await a.ok("hangup", call_id=cid)
    end_a = (await a.event("on_call_end", call_id=cid))["args"]
    end_b = (await b.event("on_call_end", call_id=cid))["args"]
    t_end = time.time()

    rec, rec1 = await both_records(server, cid)
    assert (rec["Caller_Account"], rec["CalleeList_Account"], rec["MediaType"], rec["CallType"]) == (
        ua,
        [ua, ub],
        "Video",
        "SingleCall",
    )
    assert rec["CallResult"] == "NormalEnd" and rec1["callResult"] == "normal_end"
    assert between(rec["StartTime"], t_call, t_called)
    assert between(rec["AcceptTime"], t_accept, t_begin) and between(rec["EndTime"], t_begin, t_end)
    assert rec["RoomIdType"] in (1, 2) and rec["RoomId"]
    ms = members_of(rec)
    assert set(ms) == {ua, ub}
    assert (ms[ua]["Role"], ms[ua]["Result"], ms[ua]["EndReason"]) == ("Caller", "Hangup", 1)
    assert (ms[ub]["Role"], ms[ub]["Result"], ms[ub]["EndReason"]) == ("Callee", "Accept", 1)
    assert end_a["reason"] == end_b["reason"] == 1 and end_a["user_id"] == end_b["user_id"] == ua
    for m, end in ((ms[ua], end_a), (ms[ub], end_b)):
        assert abs((m["LeaveTime"] - m["AcceptTime"]) - end["total_time"]) <= 1
        assert m["LeaveTime"] == rec["EndTime"] and between(m["AcceptTime"], t_accept, t_begin)


@pytest.mark.parametrize(
    ("how", "result", "v1_result", "callee_result", "reason"),
    [
        ("reject", "Reject", "reject", "Reject", CallEndReason.REJECT),
        ("timeout", "NotAnswer", "not_answer", "NotAnswer", CallEndReason.NO_RESPONSE),
        ("cancel", "Cancel", "cancel", "Cancel", CallEndReason.CANCELED),
    ],
)
async def test_unanswered_1v1_records(
    server: ServerProcess,
    clients: list[Raw],
    how: str,
    result: str,
    v1_result: str,
    callee_result: str,
    reason: CallEndReason,
) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    t_call = time.time()
    cid = (await a.ok("calls", user_ids=[ub], media_type=1, params={"timeout": 1}))["call_id"]
    await b.event("on_call_received", call_id=cid)
    if how == "reject":
        await b.ok("reject", call_id=cid)
    elif how == "cancel":
        await a.ok("hangup", call_id=cid)
    nc_a = (await a.event("on_call_not_connected", call_id=cid, timeout=5))["args"]
    nc_b = (await b.event("on_call_not_connected", call_id=cid, timeout=5))["args"]
    t_ended = time.time()
    assert nc_a["reason"] == nc_b["reason"] == int(reason)

    rec, rec1 = await both_records(server, cid)
    assert rec["CallResult"] == result and rec1["callResult"] == v1_result
    assert rec["AcceptTime"] == 0 and rec1["acceptTs"] == 0 and rec["MediaType"] == "Audio"
    ms = members_of(rec)
    assert (ms[ub]["Result"], ms[ub]["EndReason"], ms[ub]["AcceptTime"]) == (callee_result, int(reason), 0)
    assert (ms[ua]["Result"], ms[ua]["EndReason"], ms[ua]["AcceptTime"]) == (result, int(reason), 0)
    if how == "timeout":
        # Rang for the whole 1 s timeout (never less), ended before the client heard of it.
        assert ms[ub]["LeaveTime"] - ms[ub]["InviteTime"] >= 1
        assert all(between(ms[ub][k], t_call, t_ended) for k in ("InviteTime", "LeaveTime"))


async def test_busy_callee_record(server: ServerProcess, clients: list[Raw]) -> None:
    x, ux = await logged_in(server, clients, "x")
    y, uy = await logged_in(server, clients, "y")
    a, ua = await logged_in(server, clients, "a")
    busy_cid = (await x.ok("calls", user_ids=[uy], media_type=1))["call_id"]
    await y.event("on_call_received", call_id=busy_cid)
    await y.ok("accept", call_id=busy_cid)
    cid = (await a.ok("calls", user_ids=[uy], media_type=1))["call_id"]
    await a.event("on_user_line_busy", call_id=cid, user_id=uy)
    await a.event("on_call_not_connected", call_id=cid)
    rec, rec1 = await both_records(server, cid)
    assert (rec["CallResult"], rec1["callResult"]) == ("CallBusy", "call_busy")
    ms = members_of(rec)
    assert (ms[uy]["Result"], ms[uy]["EndReason"]) == ("LineBusy", 5)
    await x.ok("hangup", call_id=busy_cid)


async def test_group_call_record_has_each_members_outcome(server: ServerProcess, clients: list[Raw]) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    c, uc = await logged_in(server, clients, "c")
    d, ud = await logged_in(server, clients, "d")
    cid = (await a.ok("calls", user_ids=[ub, uc, ud], media_type=1, params={"timeout": 2}))["call_id"]
    for cl in (b, c, d):
        await cl.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_user_join", call_id=cid, user_id=ub)
    await c.ok("reject", call_id=cid)
    await a.event("on_user_reject", call_id=cid, user_id=uc)
    await a.event("on_user_no_response", call_id=cid, user_id=ud, timeout=5)
    await b.ok("hangup", call_id=cid)
    end_a = (await a.event("on_call_end", call_id=cid))["args"]
    assert (end_a["reason"], end_a["user_id"]) == (1, ub)

    rec, rec1 = await both_records(server, cid)
    assert (rec["CallType"], rec["CallResult"], rec1["callType"]) == ("MultiCall", "NormalEnd", "group")
    assert rec["CalleeList_Account"] == [ua, ub, uc, ud] and rec1["callees"] == [ub, uc, ud]
    assert rec1["totalUserNumber"] == 4
    ms = members_of(rec)
    assert {u: (x["Result"], x["EndReason"]) for u, x in ms.items()} == {
        ua: ("Accept", 1),  # stayed until B's hangup ended the call
        ub: ("Hangup", 1),
        uc: ("Reject", 2),
        ud: ("NotAnswer", 3),
    }
    assert ms[uc]["AcceptTime"] == ms[ud]["AcceptTime"] == 0
    assert ms[ua]["AcceptTime"] == ms[ub]["AcceptTime"] == rec["AcceptTime"] > 0
    assert abs((ms[ua]["LeaveTime"] - ms[ua]["AcceptTime"]) - end_a["total_time"]) <= 1
    assert [x["Role"] for x in rec["MemberList"]] == ["Caller", "Callee", "Callee", "Callee"]


async def test_offline_member_and_admin_end_records(server: ServerProcess, clients: list[Raw]) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    await b.drop()  # silent past the 2 s grace: OFFLINE
    end = (await a.event("on_call_end", call_id=cid, timeout=10))["args"]
    assert (end["reason"], end["user_id"]) == (4, ub)
    rec, rec1 = await both_records(server, cid)
    assert (rec["CallResult"], rec1["callResult"]) == ("Offline", "offline")
    ms = members_of(rec)
    assert (ms[ua]["Result"], ms[ua]["EndReason"]) == ("Accept", 4)
    assert (ms[ub]["Result"], ms[ub]["EndReason"]) == ("Offline", 4)

    c, uc = await logged_in(server, clients, "c")
    cid2 = (await a.ok("calls", user_ids=[uc], media_type=1))["call_id"]
    await c.event("on_call_received", call_id=cid2)
    await c.ok("accept", call_id=cid2)
    await a.event("on_call_begin", call_id=cid2)
    assert await v4(server, "call_engine_http_srv/end_call", {"CallId": cid2}) == {}
    for cl in (a, c):
        assert (await cl.event("on_call_end", call_id=cid2))["args"]["reason"] == 9
    rec, rec1 = await both_records(server, cid2)
    assert (rec["CallResult"], rec1["callResult"]) == ("EndByServer", "end_by_server")
    assert {x["Result"] for x in rec["MemberList"]} == {"EndByServer"}
    assert {x["EndReason"] for x in rec["MemberList"]} == {9}
    code, info = await v4_fail(server, "call_engine_http_srv/end_call", {"CallId": cid2})
    assert code == 20001 and info


async def test_get_call_info_shows_a_live_call_as_it_changes(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    c, uc = await logged_in(server, clients, "c")
    t0 = int(time.time())
    room = {"str_room_id": "room-info"}
    cid = (await a.ok("calls", user_ids=[ub, uc], media_type=2, params={"room_id": room}))["call_id"]
    await b.event("on_call_received", call_id=cid)
    info = await v4(server, "call_engine_http_srv/get_call_info", {"CallId": cid})
    assert info["CallInfo"] == {
        "CallId": cid,
        "CallMediaType": "Video",
        "ChatGroupId": "",
        "RoomId": "room-info",
        "RoomIdType": 2,
        "Caller_Account": ua,
        "CallType": "MultiCall",
        "CallStatus": "Ringing",
        "StartTime": info["CallInfo"]["StartTime"],
        "AcceptTime": 0,
    }
    assert t0 <= info["CallInfo"]["StartTime"] <= time.time()
    assert info["UserList"] == [
        {"User_Account": ua, "Status": "Calling"},
        {"User_Account": ub, "Status": "Waiting"},
        {"User_Account": uc, "Status": "Waiting"},
    ]
    await b.ok("accept", call_id=cid)
    await c.event("on_call_received", call_id=cid)
    await c.ok("reject", call_id=cid)
    info = await v4(server, "call_engine_http_srv/get_call_info", {"CallId": cid})
    assert info["CallInfo"]["CallStatus"] == "Connected" and info["CallInfo"]["AcceptTime"] >= t0
    assert info["UserList"] == [
        {"User_Account": ua, "Status": "Calling"},
        {"User_Account": ub, "Status": "Calling"},
    ]
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_end", call_id=cid)
    code, info_text = await v4_fail(server, "call_engine_http_srv/get_call_info", {"CallId": cid})
    assert code == 20001 and "get_record_by_callid" in info_text
    for body, want in (({}, 90005), ({"CallId": 7}, 90005), ({"CallId": "x" * 129}, 90005)):
        assert (await v4_fail(server, "call_engine_http_srv/get_call_info", body))[0] == want, body


async def test_get_nodes_lists_this_server_with_its_devices_and_calls_for_admins_only(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    before = time.time()
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    nodes = await v4(server, "call_engine_http_srv/get_nodes", {})
    after = time.time()
    assert nodes["Mode"] == "Single"
    (node,) = nodes["NodeList"]
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
        health = await r.json()
    assert node["NodeId"] == health["node_id"] and node["NodeId"].endswith(f":{server.port}")
    assert node["Version"] == health["version"]
    assert node["Lease"] == "Single" and node["CallbackWorkers"] == 0
    # the shared server has other tests' devices and calls too: at least ours
    assert node["Devices"] >= 2 and node["Sessions"] >= 2 and node["LiveCalls"] >= 1
    assert before - 1 <= node["Since"] + node["UptimeSeconds"] <= after + 1  # the server's now
    user_query = auth(server, identifier=ua, usersig=server.sig(ua))
    code, _ = await v4_fail(server, "call_engine_http_srv/get_nodes", {}, query=user_query)
    assert code != 0
    await a.ok("hangup", call_id=cid)


async def test_get_live_calls_lists_calls_and_member_states_as_they_change(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    c, uc = await logged_in(server, clients, "c")
    d, ud = await logged_in(server, clients, "d")
    t0 = int(time.time())
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)

    def states(page: dict[str, Any], call_id: str) -> dict[str, tuple[str, str]]:
        (entry,) = [x for x in page["CallList"] if x["CallInfo"]["CallId"] == call_id]
        return {x["User_Account"]: (x["Role"], x["State"]) for x in entry["MemberList"]}

    page = await v4(server, "call_engine_http_srv/get_live_calls", {})
    (entry,) = [x for x in page["CallList"] if x["CallInfo"]["CallId"] == cid]
    assert page["TotalNum"] >= 1 and page["Page"] == 1
    # The same call as get_call_info answers it, plus the members' states.
    info = await v4(server, "call_engine_http_srv/get_call_info", {"CallId": cid})
    assert {k: entry[k] for k in ("CallInfo", "UserList")} == info
    assert entry["CallInfo"]["CallType"] == "SingleCall" and entry["CallInfo"]["CallMediaType"] == "Audio"
    assert entry["MemberList"] == [
        {
            "User_Account": ua,
            "Role": "Caller",
            "State": "Dialing",
            "InviteTime": entry["MemberList"][0]["InviteTime"],
            "AcceptTime": 0,
        },
        {
            "User_Account": ub,
            "Role": "Callee",
            "State": "Ringing",
            "InviteTime": entry["MemberList"][1]["InviteTime"],
            "AcceptTime": 0,
        },
    ]
    assert all(t0 <= x["InviteTime"] <= time.time() for x in entry["MemberList"])

    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    page = await v4(server, "call_engine_http_srv/get_live_calls", {})
    assert states(page, cid) == {ua: ("Caller", "Connected"), ub: ("Callee", "Connected")}

    # A newer call is listed first; User_Account keeps the calls of one member.
    cid2 = (await c.ok("calls", user_ids=[ud], media_type=2))["call_id"]
    await d.event("on_call_received", call_id=cid2)
    page = await v4(server, "call_engine_http_srv/get_live_calls", {"User_Account": ud})
    assert [x["CallInfo"]["CallId"] for x in page["CallList"]] == [cid2] and page["TotalNum"] == 1
    both = await v4(server, "call_engine_http_srv/get_live_calls", {"NumberPerPage": 100})
    ids = [x["CallInfo"]["CallId"] for x in both["CallList"]]
    assert ids.index(cid2) < ids.index(cid) or (
        both["CallList"][ids.index(cid2)]["CallInfo"]["StartTime"]
        == both["CallList"][ids.index(cid)]["CallInfo"]["StartTime"]
    )
    one = await v4(server, "call_engine_http_srv/get_live_calls", {"NumberPerPage": 1, "Page": 2})
    assert one["TotalNum"] == both["TotalNum"] and len(one["CallList"]) == 1
    assert one["CallList"][0]["CallInfo"]["CallId"] == ids[1]

    # Ended calls leave the list.
    assert await v4(server, "call_engine_http_srv/end_call", {"CallId": cid}) == {}
    await b.event("on_call_end", call_id=cid)
    await c.ok("hangup", call_id=cid2)
    await d.event("on_call_cancelled", call_id=cid2)
    page = await v4(server, "call_engine_http_srv/get_live_calls", {"NumberPerPage": 100})
    assert not {cid, cid2} & {x["CallInfo"]["CallId"] for x in page["CallList"]}
    for body in ({"User_Account": "no spaces"}, {"User_Account": 7}, {"NumberPerPage": 0}, {"Page": "1"}):
        assert (await v4_fail(server, "call_engine_http_srv/get_live_calls", body))[0] == 90005, body


async def test_record_lookups_refuse_bad_ids(server: ServerProcess) -> None:
    for body, code in (
        ({"CallId": "no-such-call"}, 20001),
        ({}, 90005),
        ({"CallId": 42}, 90005),
        ({"CallId": ""}, 90005),
        ({"CallId": "x" * 129}, 90005),
    ):
        got, info = await v4_fail(server, "call_record_http_srv/get_record_by_callid", body)
        assert got == code, (body, info)
    got, info = await v4_fail(server, "call_record_http_srv/get_record_by_callid", {"CallId": "no-such-call"})
    assert "ended" in info
    assert (await v1_fail(server, "records/get_record_by_callId", {"callId": "nope"}))[0] == 20001
    assert (await v1_fail(server, "records/get_record_by_callId", {"CallId": "nope"}))[0] == 90005
    assert (await v4_fail(server, "call_engine_http_srv/end_call", {"CallId": 5}))[0] == 90005


async def test_live_records_show_up_in_filters(server: ServerProcess, clients: list[Raw]) -> None:
    a, ua = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    since = int(time.time()) - 1
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("reject", call_id=cid)
    await a.event("on_call_not_connected", call_id=cid)
    page = await v4(
        server,
        "call_record_http_srv/get_record_by_filter",
        {"StartTime": since, "CallResult": ["Reject"], "CallType": "SingleCall", "NumberPerPage": 100},
    )
    assert cid in [r["CallId"] for r in page["CallRecordList"]]
    # Ringline's User_Account: the calls one member was in.
    for user, found in ((ua, True), (ub, True), (unique("nobody"), False)):
        page = await v4(
            server, "call_record_http_srv/get_record_by_filter", {"StartTime": since, "User_Account": user}
        )
        assert (cid in [r["CallId"] for r in page["CallRecordList"]]) is found, user
        assert all(user in r["CalleeList_Account"] for r in page["CallRecordList"])
    for bad in ("no spaces", 7, None):
        body = {"User_Account": bad}
        assert (await v4_fail(server, "call_record_http_srv/get_record_by_filter", body))[0] == 90005
    data = await v1(
        server, "records/get_records_by_filter", {"startTimestamp": since, "callResult": "reject"}
    )
    assert cid in [r["callId"] for r in data["callRecordList"]]
    page = await v4(
        server, "call_record_http_srv/get_record_by_filter", {"StartTime": since, "CallResult": "NormalEnd"}
    )
    assert cid not in [r["CallId"] for r in page["CallRecordList"]]


# --------------------------------------------------------------------------- filter validation


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"NumberPerPage": 0}, "NumberPerPage"),
        ({"NumberPerPage": 101}, "1..100"),
        ({"NumberPerPage": "10"}, "integer"),
        ({"NumberPerPage": True}, "integer"),
        ({"NumberPerPage": 2.5}, "integer"),
        ({"Page": 0}, "Page"),
        ({"Page": -3}, "Page"),
        ({"Page": 2**31}, "Page"),
        ({"Page": None}, "integer"),
        ({"StartTime": -1}, "StartTime"),
        ({"StartTime": 2**32}, "StartTime"),
        ({"StartTime": float("inf")}, "StartTime"),
        ({"EndTime": "yesterday"}, "EndTime"),
        ({"StartTime": 20, "EndTime": 10}, "after"),
        ({"CallResult": "Nope"}, "NormalEnd"),
        ({"CallResult": ["Reject", "Nope"]}, "Nope"),
        ({"CallResult": 3}, "CallResult"),
        ({"CallResult": [3]}, "CallResult"),
        ({"CallType": "GroupCall"}, "MultiCall"),
        ({"CallType": ["SingleCall"]}, "CallType"),
    ],
)
async def test_v4_filter_refuses_bad_fields(server: ServerProcess, body: dict[str, Any], hint: str) -> None:
    code, info = await v4_fail(server, "call_record_http_srv/get_record_by_filter", body)
    assert code == 90005 and hint in info, info


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({}, "startTimestamp is missing"),
        ({"startTimestamp": "0"}, "startTimestamp"),
        ({"startTimestamp": 0, "numberPerPage": 101}, "numberPerPage"),
        ({"startTimestamp": 0, "page": 0}, "page"),
        ({"startTimestamp": 0, "callResult": "NormalEnd"}, "normal_end"),
        ({"startTimestamp": 0, "callType": "SingleCall"}, "single"),
        ({"startTimestamp": 9, "endTimestamp": 8}, "after"),
    ],
)
async def test_v1_filter_refuses_bad_fields(server: ServerProcess, body: dict[str, Any], hint: str) -> None:
    code, info = await v1_fail(server, "records/get_records_by_filter", body)
    assert code == 90005 and hint in info, info


# --------------------------------------------------------------------------- groups


async def test_group_commands_and_their_errors(server: ServerProcess) -> None:
    gid = unique("g")
    assert await v4(
        server,
        "group_open_http_svc/create_group",
        {"GroupId": gid, "MemberList": ["u1", {"Member_Account": "u2"}]},
    ) == {"GroupId": gid}
    res = await v4(
        server,
        "group_open_http_svc/add_group_member",
        {"GroupId": gid, "MemberList": [{"Member_Account": "u3"}]},
    )
    assert res == {"MemberList": [{"Member_Account": "u3", "Result": 1}]}
    res = await v4(server, "group_open_http_svc/get_group_member_info", {"GroupId": gid})
    assert res == {"MemberNum": 3, "MemberList": [{"Member_Account": u} for u in ("u1", "u2", "u3")]}
    await v4(
        server, "group_open_http_svc/delete_group_member", {"GroupId": gid, "MemberToDel_Account": ["u1"]}
    )
    assert (await v4(server, "group_open_http_svc/get_group_member_info", {"GroupId": gid}))["MemberNum"] == 2
    await v4(server, "group_open_http_svc/destroy_group", {"GroupId": gid})
    assert (await v4(server, "group_open_http_svc/get_group_member_info", {"GroupId": gid}))["MemberNum"] == 0
    code, info = await v4_fail(
        server, "group_open_http_svc/delete_group_member", {"GroupId": gid, "MemberToDel_Account": ["u2"]}
    )
    assert code == 20001 and "create_group" in info
    for body in (
        {},
        {"GroupId": ""},
        {"GroupId": "g" * 65},
        {"GroupId": 3},
        {"GroupId": "g", "MemberList": "u1"},
        {"GroupId": "g", "MemberList": ["bad id!"]},
    ):
        code, info = await v4_fail(server, "group_open_http_svc/create_group", body)
        assert code == 90005, (body, info)


# --------------------------------------------------------------------------- 10,000 records

T0 = 1_700_000_000
N_SEEDED = 10_000
OUTCOMES = ("answered", "answered", "rejected", "no_answer", "canceled", "busy", "offline", "admin")


def seeded_record(i: int) -> CallRecord:
    """Record ``i`` of the seeded store: starts every 0.7 s, so several share a second."""
    start = T0 + i * 0.7
    outcome = OUTCOMES[i % len(OUTCOMES)]
    callees = tuple(f"u{(i + k) % 40 + 1}" for k in range(3 if i % 5 == 0 else 1))
    caller = f"u{i % 40 + 100}"
    connected = outcome in ("answered", "offline", "admin")
    accept = start + 3.25 if connected else 0.0
    end = start + (61.5 if connected else 9.5)
    reason = {
        "answered": CallEndReason.HANGUP,
        "rejected": CallEndReason.REJECT,
        "no_answer": CallEndReason.NO_RESPONSE,
        "canceled": CallEndReason.CANCELED,
        "busy": CallEndReason.LINE_BUSY,
        "offline": CallEndReason.OFFLINE,
        "admin": CallEndReason.END_BY_SERVER,
    }[outcome]
    members = (
        MemberRecord(caller, CallRole.CALLER, start, accept, end, reason),
        *(MemberRecord(u, CallRole.CALLED, start, accept, end, reason, caller) for u in callees),
    )
    scene = CallScene.MULTI_CALL if len(callees) > 1 else CallScene.SINGLE_CALL
    return CallRecord(
        call_id=f"seed-{i:05d}",
        sdk_app_id=SDK_APP_ID,
        caller=caller,
        media_type=MediaType.VIDEO if i % 3 == 0 else MediaType.AUDIO,
        scene=scene,
        chat_group_id="",
        room_id=RoomId(int_room_id=i + 1) if i % 2 else RoomId(str_room_id=f"room-{i}"),
        start_time=start,
        accept_time=accept,
        end_time=end,
        result=call_result_for(ever_connected=connected, end_reason=reason),
        end_reason=reason,
        ended_by=caller,
        callees=callees,
        members=members,
    )


async def _seed(path: Path, records: list[CallRecord]) -> None:
    store = SqliteStore(str(path))
    await store.open()
    try:
        for k in range(0, len(records), 1000):
            await store.apply(
                [
                    FinishedCallWrite(r, tuple((u, result_type_for(r, u)) for u in r.users()))
                    for r in records[k : k + 1000]
                ]
            )
    finally:
        await store.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, list[CallRecord]]]:
    """A server over a store holding :data:`N_SEEDED` records and nothing else."""
    data = tmp_path_factory.mktemp("seeded")
    records = [seeded_record(i) for i in range(N_SEEDED)]
    asyncio.run(_seed(data / "ringline.db", records))
    srv = ServerProcess(data).start()
    try:
        yield srv, records
    finally:
        assert srv.stop() == 0, srv.log()


def newest_first(records: list[CallRecord]) -> list[CallRecord]:
    return sorted(records, key=lambda r: (r.start_time, r.call_id), reverse=True)


async def v4_pages(
    srv: ServerProcess, per_page: int, **filters: Any
) -> tuple[set[int], list[dict[str, Any]]]:
    """Every page of a v4 filter; (the TotalNums seen, the records in order)."""
    totals: set[int] = set()
    got: list[dict[str, Any]] = []
    page = 1
    while True:
        res = await v4(
            srv,
            "call_record_http_srv/get_record_by_filter",
            {**filters, "NumberPerPage": per_page, "Page": page},
        )
        assert res["Page"] == page
        totals.add(res["TotalNum"])
        rows = res["CallRecordList"]
        assert len(rows) <= per_page
        if not rows:
            break
        got.extend(rows)
        page += 1
    assert page == math.ceil(min(totals) / per_page) + 1
    return totals, got


async def test_paging_10000_records_exact_total_disjoint_newest_first(
    seeded: tuple[ServerProcess, list[CallRecord]],
) -> None:
    srv, records = seeded
    want = newest_first(records)
    totals, got = await v4_pages(srv, 100)
    assert totals == {N_SEEDED}
    assert [r["CallId"] for r in got] == [r.call_id for r in want]  # disjoint, complete, ordered
    assert all(a["StartTime"] >= b["StartTime"] for a, b in itertools.pairwise(got))
    assert got[:25] == [record_to_v4(r) for r in want[:25]]
    # the default page is the first 10
    first = await v4(srv, "call_record_http_srv/get_record_by_filter", {})
    assert first["TotalNum"] == N_SEEDED and first["Page"] == 1
    assert [r["CallId"] for r in first["CallRecordList"]] == [r.call_id for r in want[:10]]
    # an odd page, and a page past the end
    res = await v4(srv, "call_record_http_srv/get_record_by_filter", {"NumberPerPage": 37, "Page": 7})
    assert [r["CallId"] for r in res["CallRecordList"]] == [r.call_id for r in want[6 * 37 : 7 * 37]]
    res = await v4(srv, "call_record_http_srv/get_record_by_filter", {"NumberPerPage": 100, "Page": 101})
    assert (res["TotalNum"], res["Page"], res["CallRecordList"]) == (N_SEEDED, 101, [])


async def test_filters_over_10000_records(seeded: tuple[ServerProcess, list[CallRecord]]) -> None:
    srv, records = seeded
    lo, hi = T0 + 1000, T0 + 2500  # whole seconds: a record counts by its truncated StartTime

    def secs(r: CallRecord) -> int:
        return int(r.start_time)

    cases: list[tuple[dict[str, Any], Callable[[CallRecord], bool]]] = [
        ({"StartTime": lo}, lambda r: secs(r) >= lo),
        ({"EndTime": hi}, lambda r: secs(r) <= hi),
        ({"StartTime": lo, "EndTime": hi}, lambda r: lo <= secs(r) <= hi),
        ({"StartTime": lo, "EndTime": lo}, lambda r: secs(r) == lo),
        ({"CallResult": "Reject"}, lambda r: r.result is CallResult.REJECT),
        (
            {"CallResult": ["NotAnswer", "CallBusy", "EndByServer"]},
            lambda r: r.result in (CallResult.NOT_ANSWER, CallResult.CALL_BUSY, CallResult.END_BY_SERVER),
        ),
        ({"CallResult": []}, lambda r: True),
        ({"CallType": "MultiCall"}, lambda r: r.call_type == "MultiCall"),
        (
            {"CallType": "SingleCall", "CallResult": "NormalEnd", "StartTime": lo, "EndTime": hi},
            lambda r: (
                r.call_type == "SingleCall" and r.result is CallResult.NORMAL_END and lo <= secs(r) <= hi
            ),
        ),
        ({"CallResult": "Interrupt"}, lambda r: False),
    ]
    for filters, keep in cases:
        want = newest_first([r for r in records if keep(r)])
        totals, got = await v4_pages(srv, 100, **filters)
        assert totals == {len(want)}, filters
        assert [r["CallId"] for r in got] == [r.call_id for r in want], filters
    assert sum(1 for r in records if secs(r) == lo) >= 1


async def test_v1_filter_over_10000_records(seeded: tuple[ServerProcess, list[CallRecord]]) -> None:
    srv, records = seeded
    lo = T0 + 3000
    want = newest_first([r for r in records if int(r.start_time) >= lo and r.call_type == "MultiCall"])
    got: list[dict[str, Any]] = []
    page = 1
    while True:
        data = await v1(
            srv, "records/get_records_by_filter", {"startTimestamp": lo, "callType": "group", "page": page}
        )
        assert data["totalNum"] == len(want) and data["page"] == page
        assert len(data["callRecordList"]) <= 100  # the v1 default page size
        if not data["callRecordList"]:
            break
        got.extend(data["callRecordList"])
        page += 1
    assert got == [record_to_v1(r) for r in want]
    data = await v1(
        srv,
        "records/get_records_by_filter",
        {
            "startTimestamp": 0,
            "endTimestamp": T0 + 100,
            "callResult": ["offline", "cancel"],
            "numberPerPage": 5,
        },
    )
    want = newest_first(
        [
            r
            for r in records
            if int(r.start_time) <= T0 + 100 and r.result in (CallResult.OFFLINE, CallResult.CANCEL)
        ]
    )
    assert data["totalNum"] == len(want) and [r["callId"] for r in data["callRecordList"]] == [
        r.call_id for r in want[:5]
    ]


def test_record_to_v4_shape_of_a_seeded_record() -> None:
    r = seeded_record(5)  # three callees, an integer room, busy
    v = record_to_v4(r)
    assert v["RoomId"] == "6" and v["RoomIdType"] == 1 and v["CallType"] == "MultiCall"
    assert v["StartTime"] == int(r.start_time) and v["AcceptTime"] == 0
    assert [m["Result"] for m in v["MemberList"]] == ["LineBusy"] * 4
    r = seeded_record(0)  # answered, string room
    v = record_to_v4(r)
    assert v["RoomId"] == "room-0" and v["RoomIdType"] == 2 and v["MediaType"] == "Video"
    assert [m["Result"] for m in v["MemberList"]] == ["Hangup", "Accept", "Accept", "Accept"]
    assert record_to_v1(r)["totalUserNumber"] == 4


# --------------------------------------------------------------------------- callback deliveries


async def test_deliveries_listing_shape_and_bad_fields(server: ServerProcess) -> None:
    got = await v4(server, "call_callback_http_srv/get_deliveries", {})
    assert set(got) == {"TotalNum", "Page", "DeliveryList", "Counts", "GoneUrls"}
    assert set(got["Counts"]) == {"Pending", "InFlight", "Delivered", "GivenUp", "Gone"}
    assert got["Page"] == 1 and got["TotalNum"] == len(got["DeliveryList"]) <= 20
    one = await v4(server, "call_callback_http_srv/get_deliveries", {"State": "GivenUp", "CallId": "x"})
    assert one["TotalNum"] == 0 and one["DeliveryList"] == []
    for body, hint in (
        ({"State": "Lost"}, "Pending"),
        ({"State": ["Pending", 3]}, "State"),
        ({"NumberPerPage": 101}, "NumberPerPage"),
        ({"NumberPerPage": 0}, "NumberPerPage"),
        ({"Page": 0}, "Page"),
        ({"Page": "2"}, "Page"),
        ({"CallId": ""}, "CallId"),
        ({"Url": 7}, "Url"),
    ):
        code, info = await v4_fail(server, "call_callback_http_srv/get_deliveries", body)
        assert code == 90005 and hint in info, (body, info)


async def test_redeliver_refuses_unknown_and_bad_ids(server: ServerProcess) -> None:
    code, info = await v4_fail(server, "call_callback_http_srv/redeliver", {"EventId": "evt_none"})
    assert code == 20001 and "get_deliveries" in info
    for body in ({}, {"EventId": 5}, {"EventId": ""}, {"EventId": "e" * 65}):
        code, info = await v4_fail(server, "call_callback_http_srv/redeliver", body)
        assert code == 90005 and "EventId" in info, (body, info)


async def test_recording_commands_on_a_server_without_an_sfu_say_so(server: ServerProcess) -> None:
    for command, body in (
        ("start_recording", {"CallId": "c1"}),
        ("stop_recording", {"CallId": "c1"}),
        ("get_recordings", {}),
        ("download_recording", {"RecordingId": "c1"}),
    ):
        code, info = await v4_fail(server, f"call_record_http_srv/{command}", body)
        assert code == 20010 and "--sfu" in info, (command, info)
