"""Values no client may send, refused at the edge (WebSocket and REST) with the field named.

Lone UTF-16 surrogates and NUL characters in any string, NaN/Infinity, integers outside
64 bits or a field's range, and JSON nested deeper than 32 levels: each gets an error
answer (-1202 / -1410 on the WebSocket, 90005 / 90001 on REST), the connection keeps
serving, and nothing of it reaches the store or another user's socket
(docs/protocol.md "Limits on values", docs/rest.md "Error codes").
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rawclient import Raw, logged_in
from restclient import admin_post, fail_of
from ringline.server.inbound import MAX_DEPTH
from serverproc import ServerProcess

SURROGATE = "\ud800"  # json.dumps sends it as the escape "\ud800", as an attacker would


async def assert_alive(c: Raw) -> None:
    """The session still answers requests."""
    r = await c.request("get_state")
    assert r["ok"], r


def raw(rid: int, rest: str) -> str:
    """The text of a request frame with id ``rid`` and the members ``rest``, as typed."""
    return '{"id": ' + str(rid) + ", " + rest + "}"


async def refused(c: Raw, frame: dict[str, Any] | str, rid: int, code: int = -1202) -> str:
    await c.send(frame)
    r = await c.response(rid)
    assert not r["ok"] and r["code"] == code, r
    return str(r["message"])


# --------------------------------------------------------------------------- WebSocket: text


def _calls(callee: str, **params: Any) -> dict[str, Any]:
    return {"op": "calls", "user_ids": [callee], "media_type": 1, "params": params}


STRING_CASES: list[tuple[str, Any, str]] = [
    ("str_room_id", lambda u: _calls(u, room_id={"int_room_id": 0, "str_room_id": "r" + SURROGATE}),
     "params.room_id.str_room_id"),
    ("chat_group_id", lambda u: _calls(u, chat_group_id=SURROGATE), "params.chat_group_id"),
    ("user_data", lambda u: _calls(u, user_data="hi " + SURROGATE), "params.user_data"),
    ("push_title", lambda u: _calls(u, offline_push_info={"title": SURROGATE}),
     "params.offline_push_info.title"),
    ("callee_id", lambda u: {"op": "calls", "user_ids": [u, SURROGATE], "media_type": 1}, "user_ids[1]"),
    ("nickname", lambda u: {"op": "set_self_info", "nickname": SURROGATE, "avatar": ""}, "nickname"),
    ("avatar", lambda u: {"op": "set_self_info", "nickname": "n", "avatar": "x" + SURROGATE}, "avatar"),
    ("call_id", lambda u: {"op": "accept", "call_id": SURROGATE}, "call_id"),
    ("signal", lambda u: {"op": "signal", "call_id": "c", "to_user_id": u,
                          "data": {"type": "offer", "sdp": SURROGATE}}, "data.sdp"),
    ("delete", lambda u: {"op": "delete_record_calls", "call_ids": ["ok", SURROGATE]}, "call_ids[1]"),
    ("sfu_publish", lambda u: {"op": "sfu", "call_id": "c",
                               "data": {"type": "publish", "sdp": "v=0" + SURROGATE}}, "data.sdp"),
    ("sfu_configure", lambda u: {"op": "sfu", "call_id": "c",
                                 "data": {"type": "configure", "audio": True, "x": SURROGATE}}, "data.x"),
    ("key", lambda u: {"op": "get_state", "x" + SURROGATE: 1}, "x\\ud800"),
    ("low_surrogate", lambda u: {"op": "set_self_info", "nickname": "\udc00", "avatar": ""}, "nickname"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "field"), [c[1:] for c in STRING_CASES], ids=[c[0] for c in STRING_CASES])
async def test_a_lone_surrogate_in_any_string_is_refused_naming_the_field(
    server: ServerProcess, clients: list[Raw], make: Any, field: str
) -> None:
    a, _ = await logged_in(server, clients, "a")
    _, ub = await logged_in(server, clients, "b")
    rid = next(a.ids)
    message = await refused(a, {"id": rid, **make(ub)}, rid)
    assert f"field '{field}'" in message and "surrogate" in message, message
    await assert_alive(a)


async def test_after_a_refused_surrogate_the_callee_still_rings_and_the_record_is_kept(
    server: ServerProcess, clients: list[Raw]
) -> None:
    """Before: the call was answered OK, the callee's sending task died on the
    surrogate (she never rang again while looking online) and the record was lost."""
    a, _ = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    rid = next(a.ids)
    await refused(a, {"id": rid, **_calls(ub, user_data=SURROGATE)}, rid)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1, params={"user_data": "héllo 😀"}))["call_id"]
    got = await b.event("on_call_received", call_id=cid)
    assert got["args"]["info"]["user_data"] == "héllo 😀"
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_end", call_id=cid)
    status, answer = await admin_post(
        server, "/v4/call_record_http_srv/get_record_by_callid", json.dumps({"CallId": cid})
    )
    assert status == 200 and fail_of("v4", answer) == (0, ""), answer
    assert answer["Response"]["CallRecord"]["CallResult"] == "NormalEnd"


async def test_a_nul_character_is_refused_naming_the_field(server: ServerProcess, clients: list[Raw]) -> None:
    """PostgreSQL cannot store U+0000 in text: it would poison the store's batch."""
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    message = await refused(a, {"id": rid, "op": "set_self_info", "nickname": "a\u0000b", "avatar": ""}, rid)
    assert "field 'nickname'" in message and "NUL" in message, message
    await assert_alive(a)


async def test_a_pair_of_surrogate_escapes_is_ordinary_text(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    await a.send(raw(rid, '"op": "set_self_info", "nickname": "\\ud83d\\ude00", "avatar": ""'))
    assert (await a.response(rid))["ok"]


async def test_a_frame_that_is_not_json_is_answered_with_its_id(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    message = await refused(a, raw(rid, '"op": "set_self_info", "nickname": , "avatar": ""'), rid, -1410)
    assert "not valid JSON" in message
    await assert_alive(a)


# --------------------------------------------------------------------------- WebSocket: numbers


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_are_refused_naming_the_field(
    server: ServerProcess, clients: list[Raw], literal: str
) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    message = await refused(a, raw(rid, '"op": "query_recent_calls", "begin": ' + literal), rid)
    assert "field 'begin'" in message and "finite" in message, message
    await assert_alive(a)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"begin": 10**20}, "begin"),  # before: -1406 "the record store failed"
        ({"end": 2**63}, "end"),
        ({"begin": 2**40}, "begin"),  # fits the store, not unix seconds
        ({"end": -1}, "end"),
        ({"begin": 1.5e12}, "begin"),  # milliseconds
        ({"limit": -(2**70)}, "limit"),
    ],
)
async def test_out_of_range_query_values_get_1202_naming_the_field(
    server: ServerProcess, clients: list[Raw], args: dict[str, Any], field: str
) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    message = await refused(a, {"id": rid, "op": "query_recent_calls", **args}, rid)
    assert f"'{field}'" in message, message
    await assert_alive(a)


async def test_a_request_id_outside_64_bits_is_refused_and_the_connection_stays(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await logged_in(server, clients, "a")
    await a.send({"id": 2**64, "op": "get_state"})
    r = await a.response(None)
    assert r["code"] == -1202 and "field 'id'" in r["message"], r
    await assert_alive(a)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"timeout": 10**20}, "params.timeout"),
        ({"room_id": {"int_room_id": 2**64}}, "params.room_id.int_room_id"),
    ],
)
async def test_huge_call_params_are_refused_naming_the_field(
    server: ServerProcess, clients: list[Raw], params: dict[str, Any], field: str
) -> None:
    a, _ = await logged_in(server, clients, "a")
    _, ub = await logged_in(server, clients, "b")
    rid = next(a.ids)
    message = await refused(a, {"id": rid, **_calls(ub, **params)}, rid)
    assert f"'{field}'" in message, message
    await assert_alive(a)


# --------------------------------------------------------------------------- WebSocket: nesting


def nested(levels: int) -> str:
    """An array nested ``levels`` deep."""
    return "[" * levels + "]" * levels


async def test_2000_levels_of_nesting_get_1410_and_the_connection_stays(
    server: ServerProcess, clients: list[Raw]
) -> None:
    """Before: RecursionError in the frame handler dropped the socket without a close frame."""
    a, ub = await logged_in(server, clients, "a")
    rid = next(a.ids)
    frame = raw(rid, f'"op": "signal", "call_id": "c", "to_user_id": "{ub}", "data": {nested(2000)}')
    assert len(frame) < 4200
    message = await refused(a, frame, rid, code=-1410)
    assert f"deeper than {MAX_DEPTH}" in message, message
    await assert_alive(a)


async def test_deep_nesting_before_login_is_refused_and_login_still_works(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await Raw(server).connect()
    clients.append(c)
    await c.send(nested(5000))
    r = await c.response(None)
    assert r["code"] == -1410 and "deeper than" in r["message"], r
    await c.login("deep" + str(next(c.ids)))
    await assert_alive(c)


async def test_the_nesting_limit_is_32_levels(server: ServerProcess, clients: list[Raw]) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    # The frame object is level 1, so a pad nested 31 deep is at the limit.
    await a.send(raw(rid, '"op": "get_state", "pad": ' + nested(MAX_DEPTH - 1)))
    assert (await a.response(rid))["ok"]
    rid = next(a.ids)
    # Brackets inside strings do not count.
    await a.send(raw(rid, f'"op": "get_state", "pad": "{nested(500)}"'))
    assert (await a.response(rid))["ok"]
    rid = next(a.ids)
    message = await refused(a, raw(rid, '"op": "get_state", "pad": ' + nested(MAX_DEPTH)), rid, -1410)
    assert "deeper than 32" in message


# --------------------------------------------------------------------------- REST


REST_STRING_CASES = [
    ("v4", "/v4/call_config/set_callback",
     {"Url": "http://example.invalid/" + SURROGATE, "CallbackCommandList": ["Call.CallbackAfterEndCall"]},
     "Url"),
    ("v1", "/v1/callback/set", {"address": "http://h/" + SURROGATE, "actions": ["reject"]}, "address"),
    ("v4", "/v4/call_record_http_srv/get_record_by_callid", {"CallId": SURROGATE}, "CallId"),
    ("v1", "/v1/records/get_record_by_callId", {"callId": "x" + SURROGATE}, "callId"),
    ("v4", "/v4/call_engine_http_srv/end_call", {"CallId": SURROGATE}, "CallId"),
    ("v4", "/v4/call_record_http_srv/get_record_by_filter", {"CallResult": [SURROGATE]}, "CallResult[0]"),
    ("v4", "/v4/group_open_http_svc/create_group", {"GroupId": "g" + SURROGATE}, "GroupId"),
    ("v4", "/v4/call_callback_http_srv/redeliver", {"EventId": SURROGATE}, "EventId"),
    ("v4", "/v4/call_config/get_callback", {SURROGATE: 1}, "\\ud800"),
    ("v4", "/v4/call_record_http_srv/start_recording", {"CallId": "c" + SURROGATE}, "CallId"),
    ("v4", "/v4/call_record_http_srv/stop_recording", {"CallId": SURROGATE}, "CallId"),
    ("v4", "/v4/call_record_http_srv/get_recordings", {"CallId": SURROGATE}, "CallId"),
    ("v4", "/v4/call_record_http_srv/download_recording", {"RecordingId": SURROGATE}, "RecordingId"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("api", "path", "body", "field"), REST_STRING_CASES, ids=[c[1] for c in REST_STRING_CASES]
)
async def test_rest_refuses_a_lone_surrogate_with_90005_naming_the_field(
    server: ServerProcess, api: str, path: str, body: dict[str, Any], field: str
) -> None:
    """Before: HTTP 500 (or, for set_callback, a stored URL that made every later
    call lose its record)."""
    status, answer = await admin_post(server, path, json.dumps(body))
    assert status == 200, answer
    code, message = fail_of(api, answer)
    assert code == 90005 and f"field {field} " in message and "surrogate" in message, answer


async def test_a_refused_callback_url_does_not_cost_later_calls_their_records(
    server: ServerProcess, clients: list[Raw]
) -> None:
    body = {"Url": "http://127.0.0.1:9/" + SURROGATE, "CallbackCommandList": ["Call.CallbackAfterEndCall"]}
    status, answer = await admin_post(server, "/v4/call_config/set_callback", json.dumps(body))
    assert fail_of("v4", answer)[0] == 90005
    a, _ = await logged_in(server, clients, "a")
    b, ub = await logged_in(server, clients, "b")
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_cancelled", call_id=cid)
    status, answer = await admin_post(
        server, "/v4/call_record_http_srv/get_record_by_callid", json.dumps({"CallId": cid})
    )
    assert fail_of("v4", answer) == (0, ""), answer
    assert answer["Response"]["CallRecord"]["CallResult"] == "Cancel"


@pytest.mark.parametrize(
    ("command", "body", "field"),
    [
        ("get_record_by_filter", '{"StartTime": NaN}', "StartTime"),
        ("get_record_by_filter", '{"StartTime": 0, "EndTime": Infinity}', "EndTime"),
        ("get_record_by_filter", '{"Page": 1e400}', "Page"),
        ("get_record_by_filter", f'{{"StartTime": {10**20}}}', "StartTime"),
        ("get_record_by_filter", f'{{"NumberPerPage": -{2**64}}}', "NumberPerPage"),
        ("get_recordings", '{"StartTime": NaN}', "StartTime"),
        ("get_recordings", f'{{"EndTime": {10**20}}}', "EndTime"),
        ("get_recordings", '{"CallId": 1e400}', "CallId"),
    ],
)
async def test_rest_refuses_non_finite_and_huge_numbers_naming_the_field(
    server: ServerProcess, command: str, body: str, field: str
) -> None:
    status, answer = await admin_post(server, f"/v4/call_record_http_srv/{command}", body)
    assert status == 200, answer
    code, message = fail_of("v4", answer)
    assert code == 90005 and f"field {field} " in message, answer


@pytest.mark.parametrize("levels", [MAX_DEPTH, 2000, 100_000])
async def test_rest_refuses_deep_nesting_with_90001(server: ServerProcess, levels: int) -> None:
    for api, path in (
        ("v4", "/v4/call_config/get_callback"),
        ("v1", "/v1/callback/get"),
        ("v4", "/v4/call_record_http_srv/start_recording"),
        ("v4", "/v4/call_record_http_srv/download_recording"),
    ):
        status, answer = await admin_post(server, path, f'{{"pad": {nested(levels)}}}')
        assert status == 200, answer
        code, message = fail_of(api, answer)
        assert code == 90001 and f"deeper than {MAX_DEPTH}" in message, answer
    # One level less is served.
    status, answer = await admin_post(
        server, "/v4/call_config/get_callback", f'{{"pad": {nested(MAX_DEPTH - 1)}}}'
    )
    assert fail_of("v4", answer) == (0, ""), answer


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"type": "configure", "audio": NaN}', "data.audio"),
        ('{"type": "configure", "video": ' + str(2**64) + "}", "data.video"),
        ('{"type": "publish", "sdp": "v=0", "mid": 1e400}', "data.mid"),
    ],
)
async def test_sfu_requests_with_non_finite_or_huge_numbers_are_refused_naming_the_field(
    server: ServerProcess, clients: list[Raw], data: str, field: str
) -> None:
    a, _ = await logged_in(server, clients, "a")
    rid = next(a.ids)
    message = await refused(a, raw(rid, '"op": "sfu", "call_id": "c", "data": ' + data), rid)
    assert f"field '{field}'" in message, message
    await assert_alive(a)
