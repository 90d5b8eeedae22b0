"""WebRTC signalling relay (docs/media.md): who may signal whom, what is relayed, and
that a refused signal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from test_machine import Harness

from ringline.core.enums import MediaType
from ringline.core.errors import ErrorCode
from ringline.core.machine import (
    MAX_SIGNAL_BYTES,
    Emit,
    Persist,
    Signal,
    check_signal_data,
)

OFFER = {"type": "offer", "sdp": "v=0\r\n"}


def connected(h: Harness, *callees: str) -> str:
    """A logged in; A calls the callees; every callee accepts."""
    for d in ("A", *callees):
        h.login(d)
    cid = h.call("A", list(callees), MediaType.VIDEO)
    for d in callees:
        h.accept(d, cid)
    h.clear()
    return cid


def test_a_signal_reaches_the_target_device_unchanged_as_on_signal() -> None:
    h = Harness()
    cid = connected(h, "B")
    data = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "extra": {"kept": [1, 2]}}
    actions = h.sb.handle(Signal("A", cid, "B", data), h.now)
    assert actions == [Emit("B", "on_signal", {"call_id": cid, "from_user_id": "A", "data": data})]
    assert isinstance(actions[0], Emit) and not actions[0].terminal


def test_a_signal_persists_nothing_and_leaves_the_call_as_it_was() -> None:
    h = Harness()
    cid = connected(h, "B")
    before = h.sb.snapshot(cid)
    actions = h.sb.handle(Signal("B", cid, "A", {"type": "answer", "sdp": "v=0\r\n"}), h.now)
    assert not [a for a in actions if isinstance(a, Persist)]
    assert h.sb.snapshot(cid) == before


@pytest.mark.parametrize(
    "data",
    [
        {
            "type": "candidate",
            "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "abcd",
        },
        {"type": "candidate", "candidate": None},
        {"type": "candidate", "candidate": "", "sdpMid": None, "sdpMLineIndex": None},
        {"type": "renegotiate"},
        {"type": "bye"},
        {"type": "answer", "sdp": ""},
    ],
    ids=["candidate", "end-of-candidates-null", "end-of-candidates-empty", "renegotiate", "bye", "answer"],
)
def test_every_signal_type_is_relayed(data: dict[str, Any]) -> None:
    h = Harness()
    cid = connected(h, "B")
    h.feed(Signal("A", cid, "B", data))
    assert h.raw("B", "on_signal") == [{"call_id": cid, "from_user_id": "A", "data": data}]


def test_in_a_group_call_a_signal_goes_to_the_target_only() -> None:
    h = Harness()
    cid = connected(h, "B", "C")
    h.feed(Signal("B", cid, "C", OFFER))
    assert h.raw("C", "on_signal") == [{"call_id": cid, "from_user_id": "B", "data": OFFER}]
    assert h.raw("A", "on_signal") == []
    assert h.raw("B", "on_signal") == []


def test_a_signal_goes_to_the_device_that_connected_not_the_users_other_devices() -> None:
    h = Harness()
    h.login("A")
    h.login("B1", multi=True)
    h.login("B2", multi=True)
    cid = h.call("A", ["B"])
    h.accept("B2", cid)
    h.clear()
    h.feed(Signal("A", cid, "B", OFFER))
    assert h.raw("B2", "on_signal") and not h.raw("B1", "on_signal")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("offer", "JSON object"),
        ({"sdp": "x"}, "'type'"),
        ({"type": "hello"}, "'type' must be one of"),
        ({"type": "offer"}, "'sdp'"),
        ({"type": "answer", "sdp": 5}, "'sdp'"),
        ({"type": "candidate"}, "'candidate'"),
        ({"type": "candidate", "candidate": 7}, "'candidate'"),
        ({"type": "candidate", "candidate": "c", "sdpMid": 0}, "sdpMid"),
        ({"type": "candidate", "candidate": "c", "sdpMLineIndex": "0"}, "sdpMLineIndex"),
        ({"type": "candidate", "candidate": "c", "sdpMLineIndex": True}, "sdpMLineIndex"),
        ({"type": "offer", "sdp": "x" * MAX_SIGNAL_BYTES}, "limit"),
    ],
    ids=[
        "not-object",
        "no-type",
        "unknown-type",
        "offer-without-sdp",
        "sdp-not-string",
        "candidate-missing",
        "candidate-not-string",
        "mid-not-string",
        "index-not-int",
        "index-bool",
        "over-16KiB",
    ],
)
def test_bad_signal_data_is_refused_with_a_message_naming_the_problem(data: Any, needle: str) -> None:
    h = Harness()
    cid = connected(h, "B")
    err = h.refused(Signal("A", cid, "B", data), ErrorCode.PARAM_INVALID)
    assert needle in err.message


def test_signal_data_just_under_the_limit_is_accepted() -> None:
    data = {"type": "offer", "sdp": ""}
    data["sdp"] = "x" * (MAX_SIGNAL_BYTES - len('{"type":"offer","sdp":""}'))
    check_signal_data(data)  # exactly at the limit: fine


def test_signalling_a_user_who_is_still_ringing_is_refused() -> None:
    h = Harness()
    for d in ("A", "B", "C"):
        h.login(d)
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    err = h.refused(Signal("A", cid, "C", OFFER), ErrorCode.REQUEST_REFUSED)
    assert err.message.startswith(f"user C is not connected to call {cid}")


def test_signalling_a_user_who_left_or_was_never_in_the_call_is_refused() -> None:
    h = Harness()
    cid = connected(h, "B", "C")
    h.hangup("C", cid)
    err = h.refused(Signal("A", cid, "C", OFFER), ErrorCode.REQUEST_REFUSED)
    assert "user C is not connected" in err.message
    err = h.refused(Signal("A", cid, "Z", OFFER), ErrorCode.REQUEST_REFUSED)
    assert "user Z is not connected" in err.message


def test_a_sender_who_is_not_connected_is_refused() -> None:
    h = Harness()
    for d in ("A", "B", "C"):
        h.login(d)
    cid = h.call("A", ["B", "C"])
    # The caller before anyone answered, and a ringing invitee.
    err = h.refused(Signal("A", cid, "B", OFFER), ErrorCode.REQUEST_REFUSED)
    assert f"not connected to call {cid}" in err.message
    h.accept("B", cid)
    err = h.refused(Signal("C", cid, "A", OFFER), ErrorCode.REQUEST_REFUSED)
    assert "not connected" in err.message
    # Someone who was never in the call.
    h.login("D")
    err = h.refused(Signal("D", cid, "A", OFFER), ErrorCode.CALL_NOT_FOUND)
    assert err.message.startswith(f"not in call {cid}")


def test_a_sender_who_left_is_refused_and_an_ended_call_is_not_found() -> None:
    h = Harness()
    cid = connected(h, "B", "C")
    h.hangup("C", cid)
    err = h.refused(Signal("C", cid, "A", OFFER), ErrorCode.CALL_NOT_FOUND)
    assert f"not in call {cid}" in err.message
    h.hangup("B", cid)  # the call ends: only A was left
    err = h.refused(Signal("A", cid, "B", OFFER), ErrorCode.CALL_NOT_FOUND)
    assert "not live" in err.message


def test_signalling_from_another_device_of_a_connected_user_is_refused() -> None:
    h = Harness()
    h.login("A")
    h.login("B1", multi=True)
    cid = h.call("A", ["B"])
    h.accept("B1", cid)
    h.login("B2", multi=True)
    err = h.refused(Signal("B2", cid, "A", OFFER), ErrorCode.REQUEST_REFUSED)
    assert "on another device" in err.message


def test_signalling_yourself_or_an_invalid_user_id_is_a_bad_parameter() -> None:
    h = Harness()
    cid = connected(h, "B")
    h.refused(Signal("A", cid, "A", OFFER), ErrorCode.PARAM_INVALID)
    h.refused(Signal("A", cid, "no spaces", OFFER), ErrorCode.PARAM_INVALID)


def test_a_device_that_is_not_logged_in_cannot_signal() -> None:
    h = Harness()
    cid = connected(h, "B")
    h.refused(Signal("X9", cid, "B", OFFER), ErrorCode.INIT_FAIL)
