"""Which callbacks each call fact causes, and their bodies (server/callbacks.py, pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_machine import Harness

from ringline.core.enums import MediaType
from ringline.core.machine import AdminEndCall, CallFact, Ignore, Notify
from ringline.core.types import RoomId
from ringline.server.callbacks import CallbackTargets, Origin, plan_deliveries
from ringline.server.rest_contract import V1_CALLBACK_ACTIONS, V4_CALLBACK_COMMANDS

V4 = "http://127.0.0.1:9/v4"
V1 = "http://127.0.0.1:9/v1"
ALL = CallbackTargets.from_configs(
    {"Url": V4, "CallbackCommandList": list(V4_CALLBACK_COMMANDS)},
    {"address": V1, "actions": list(V1_CALLBACK_ACTIONS)},
)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    for d in ("A", "B", "C", "D"):
        harness.login(d)
    return harness


def facts(h: Harness, cid: str) -> list[CallFact]:
    return [a.fact for batch in h.batches for a in batch if isinstance(a, Notify) and a.fact.call_id == cid]


def plan(h: Harness, cid: str, targets: CallbackTargets = ALL) -> list[tuple[int, str, dict[str, Any]]]:
    out = []
    for f in facts(h, cid):
        for d in plan_deliveries(f, targets):
            body = json.loads(d.body)
            assert body["EventId"] == d.event_id and body["Sequence"] == d.sequence
            assert d.call_id == cid and d.created_at == f.at
            out.append((d.sequence, d.command, body))
    return out


def v1_brief(p: list[tuple[int, str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    return [(c, b["UserId"], b["CallResult"]) for _, c, b in p if "UserId" in b]


def test_a_1v1_call_gives_every_v4_and_v1_callback_in_sequence(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.advance(5)
    h.hangup("A", cid)
    p = plan(h, cid)
    seqs = [s for s, _, _ in p]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [c for _, c, _ in p if c.startswith("Call.")] == [
        "Call.CallbackAfterStartCall",
        "Call.CallbackAfterMemberChanged",
        "Call.CallbackAfterMemberChanged",
        "Call.CallbackAfterEndCall",
    ]
    assert [s for s, c, _ in p if c.startswith("Call.")] == [100, 200, 300, 400]
    assert v1_brief(p) == [
        ("caller_start_call", "A", ""),
        ("callee_receive_call", "B", ""),
        ("callee_accept_call", "B", ""),
        ("caller_call_accepted", "A", ""),
        ("caller_call_end", "A", ""),
        ("callee_call_end", "B", "normal_end"),
        ("normal_end", "A", "normal_end"),
        ("normal_end", "B", "normal_end"),
    ]


def test_v4_bodies_have_the_vendor_fields(h: Harness) -> None:
    cid = h.call("A", ["B"], room_id=RoomId(str_room_id="room-7"))
    h.accept("B", cid)
    h.hangup("B", cid)
    v4 = [(c, b) for _, c, b in plan(h, cid) if c.startswith("Call.")]
    start = v4[0][1]
    assert start["CallInfo"] == {
        "CallId": cid,
        "CallMediaType": "Audio",
        "ChatGroupId": "",
        "RoomId": "room-7",
        "RoomIdType": 2,
    }
    assert start["UserList"] == [
        {"User_Account": "A", "Status": "Calling"},
        {"User_Account": "B", "Status": "Waiting"},
    ]
    assert start["CallbackCommand"] == "Call.CallbackAfterStartCall"
    assert isinstance(start["EventTime"], int) and start["EventTime"] > 10**12  # ms
    accepted = v4[1][1]
    assert accepted["ChangedUserList"] == [{"User_Account": "B", "ActionType": "Accept"}]
    assert accepted["CallId"] == cid
    end = v4[-1][1]
    assert end["CallRecord"]["CallId"] == cid and end["CallRecord"]["CallResult"] == "NormalEnd"
    assert [m["User_Account"] for m in end["CallRecord"]["MemberList"]] == ["A", "B"]


def test_v1_bodies_have_the_vendor_fields(h: Harness) -> None:
    cid = h.call("A", ["B"], media=MediaType.VIDEO, room_id=RoomId(int_room_id=42))
    h.accept("B", cid)
    h.hangup("A", cid)
    bodies = [b for _, c, b in plan(h, cid) if c == "callee_accept_call"]
    assert len(bodies) == 1
    b = bodies[0]
    assert list(b) == [
        "UserId",
        "RoomId",
        "TotalNum",
        "MediaType",
        "CallType",
        "CallId",
        "Role",
        "Event",
        "CallResult",
        "EventTime",
        "StartCallTs",
        "AcceptTs",
        "EndTs",
        "EventId",
        "Sequence",
    ]
    assert (b["UserId"], b["RoomId"], b["TotalNum"], b["MediaType"], b["CallType"]) == (
        "B",
        "42",
        2,
        "video",
        "single",
    )
    assert (b["Role"], b["Event"], b["EndTs"]) == ("callee", "accept_call", 0)
    assert b["AcceptTs"] == b["EventTime"] >= b["StartCallTs"] > 0
    status = [b for _, c, b in plan(h, cid) if c == "normal_end"]
    assert [s["UserId"] for s in status] == ["A", "B"]
    assert all("Event" not in s and s["EndTs"] >= s["AcceptTs"] for s in status)


def test_cancel_reject_no_answer_and_busy(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.hangup("A", cid)
    assert v1_brief(plan(h, cid))[-6:] == [
        ("callee_call_canceled", "B", ""),
        ("callee_call_canceled", "C", ""),
        ("caller_cancel_call", "A", "cancel"),
        ("cancel", "A", "cancel"),
        ("cancel", "B", "cancel"),
        ("cancel", "C", "cancel"),
    ]
    cancel = next(b for _, c, b in plan(h, cid) if c == "Call.CallbackAfterMemberChanged")
    assert cancel["UserList"] == [{"User_Account": "A", "Status": "Calling"}]

    cid = h.call("A", ["B"])
    h.reject("B", cid)
    assert v1_brief(plan(h, cid))[2:] == [
        ("callee_reject_call", "B", ""),
        ("caller_call_rejected", "A", ""),
        ("reject", "A", "reject"),
        ("reject", "B", "reject"),
    ]

    cid = h.call("A", ["B"], timeout=5)
    h.advance(6)
    assert v1_brief(plan(h, cid))[2:] == [
        ("callee_not_answer_call", "B", ""),
        ("caller_call_missed", "A", ""),
        ("not_answer", "A", "not_answer"),
        ("not_answer", "B", "not_answer"),
    ]

    busy = h.call("C", ["D"])
    cid = h.call("A", ["D"])
    assert ("caller_call_busy", "A", "") in v1_brief(plan(h, cid))
    assert ("call_busy", "D", "call_busy") in v1_brief(plan(h, cid))
    h.hangup("C", busy)


def test_group_call_invite_and_server_end(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.invite("B", cid, ["C"])
    h.accept("C", cid)
    h.feed(AdminEndCall(cid, "administrator"))
    brief = v1_brief(plan(h, cid))
    assert ("invite_user", "C", "") in brief and ("callee_receive_call", "C", "") in brief
    assert brief[-6:] == [
        ("caller_call_interrupted", "A", "interrupt"),
        ("callee_call_interrupted", "B", "interrupt"),
        ("callee_call_interrupted", "C", "interrupt"),
        ("interrupt", "A", "interrupt"),
        ("interrupt", "B", "interrupt"),
        ("interrupt", "C", "interrupt"),
    ]
    assert all(b["CallType"] == "group" for _, c, b in plan(h, cid) if c == "interrupt")


def test_only_subscribed_commands_are_planned(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.hangup("A", cid)
    only_end = CallbackTargets.from_configs(
        {"Url": V4, "CallbackCommandList": ["Call.CallbackAfterEndCall"]}, None
    )
    assert [(s, c) for s, c, _ in plan(h, cid, only_end)] == [(400, "Call.CallbackAfterEndCall")]
    v1_only = CallbackTargets.from_configs(
        None, {"address": V1, "actions": ["normal_end", "caller_start_call"]}
    )
    assert [(c, b["UserId"]) for _, c, b in plan(h, cid, v1_only)] == [
        ("caller_start_call", "A"),
        ("normal_end", "A"),
        ("normal_end", "B"),
    ]
    assert plan(h, cid, CallbackTargets()) == []
    assert not CallbackTargets.from_configs({"Url": V4, "CallbackCommandList": []}, None).active


def test_the_same_url_for_v4_and_v1_keeps_one_increasing_sequence(h: Harness) -> None:
    same = CallbackTargets.from_configs(
        {"Url": V4, "CallbackCommandList": list(V4_CALLBACK_COMMANDS)},
        {"address": V4, "actions": list(V1_CALLBACK_ACTIONS)},
    )
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    h.accept("C", cid)
    h.hangup("A", cid)
    h.hangup("B", cid)
    seqs = [s for s, _, _ in plan(h, cid, same)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_ephemeral_calls_cause_no_callbacks(h: Harness) -> None:
    cid = h.call("A", ["B"], is_ephemeral_call=True)
    h.hangup("A", cid)
    assert plan(h, cid) == []


def test_member_changed_action_types_are_spelled_as_the_vendor_sends_them(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.hangup("A", cid)
    changed = [b for _, c, b in plan(h, cid) if c == "Call.CallbackAfterMemberChanged"]
    assert changed[0]["ChangedUserList"] == [
        {"User_Account": "B", "ActionType": "Cancel_Invite"},
        {"User_Account": "C", "ActionType": "Cancel_Invite"},
    ]


def test_ignore_sends_callee_ignore_call_and_no_v4_callback(h: Harness) -> None:
    cid = h.call("A", ["B"], timeout=5)
    h.req(Ignore("B", cid))
    p = plan(h, cid)
    assert [(c, b["UserId"], b["Role"], b["Event"]) for _, c, b in p if c == "callee_ignore_call"] == [
        ("callee_ignore_call", "B", "callee", "ignore_call")
    ]
    # the invite rings on: the v4 callbacks are the start only, then the timeout
    assert [c for _, c, _ in p if c.startswith("Call.")] == ["Call.CallbackAfterStartCall"]
    h.advance(6)
    assert ("callee_not_answer_call", "B", "") in v1_brief(plan(h, cid))
    seqs = [s for s, _, _ in plan(h, cid)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_an_automatic_busy_reject_is_reported_as_the_callee_ignoring(h: Harness) -> None:
    busy = h.call("C", ["D"])
    cid = h.call("A", ["D"])
    brief = v1_brief(plan(h, cid))
    assert brief.index(("callee_ignore_call", "D", "")) + 1 == brief.index(("caller_call_busy", "A", ""))
    h.hangup("C", busy)


def test_who_caused_a_fact_goes_into_each_request_query(h: Harness) -> None:
    cid = h.call("A", ["B"])
    (start,) = facts(h, cid)
    ds = plan_deliveries(start, ALL, origin=Origin("192.0.2.7", "Android"))
    assert {d.query for d in ds if d.command.startswith("Call.")} == {
        "ClientIP=192.0.2.7&OptPlatform=Android"
    }
    assert {d.query for d in ds if not d.command.startswith("Call.")} == {
        "clientip=192.0.2.7&optplatform=Android"
    }
    v6 = plan_deliveries(start, ALL, origin=Origin("2001:db8::1", "Web"))
    assert v6[0].query == "ClientIP=2001%3Adb8%3A%3A1&OptPlatform=Web"
    # the server itself (a timeout): no address, Unknown
    assert plan_deliveries(start, ALL)[0].query == "ClientIP=&OptPlatform=Unknown"
