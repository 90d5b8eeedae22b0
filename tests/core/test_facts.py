"""Call facts (the raw material of server callbacks, docs/spec.md §7) from the core."""

from __future__ import annotations

from typing import Any

import pytest
from test_machine import Harness

from ringline.core.machine import CallFact, Login, Notify, Persist, SaveCall


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    for d in ("A", "B", "C", "D", "E", "F"):
        harness.login(d)
    return harness


def facts(h: Harness, cid: str) -> list[CallFact]:
    return [a.fact for batch in h.batches for a in batch if isinstance(a, Notify) and a.fact.call_id == cid]


def brief(f: CallFact) -> tuple[Any, ...]:
    if f.kind == "member":
        return (f.kind, tuple((c["user_id"], c["action"]) for c in f.data["changes"]))
    return (f.kind,)


def test_a_1v1_call_yields_start_accept_hangup_end_numbered_from_one(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.hangup("A", cid)
    fs = facts(h, cid)
    assert [brief(f) for f in fs] == [
        ("start",),
        ("member", (("B", "Accept"),)),
        ("member", (("A", "Hangup"),)),
        ("end",),
    ]
    assert [f.seq for f in fs] == [1, 2, 3, 4]
    start = fs[0].data
    assert start["users"] == [
        {"user_id": "A", "status": "Calling"},
        {"user_id": "B", "status": "Waiting"},
    ]
    assert start["call"]["caller"] == "A"
    assert fs[1].data["users"] == [
        {"user_id": "A", "status": "Calling"},
        {"user_id": "B", "status": "Calling"},
    ]
    assert fs[-1].data["record"].result.value == "NormalEnd"


def test_every_way_out_has_its_action_type(h: Harness) -> None:
    cid = h.call("A", ["B", "C", "D"], timeout=5)
    h.reject("D", cid)
    h.accept("B", cid)
    h.invite("B", cid, ["E"], timeout=3)
    h.advance(6)  # C and E time out
    h.hangup("A", cid)
    actions = [c for f in facts(h, cid) if f.kind == "member" for c in brief(f)[1]]
    assert actions == [
        ("D", "Reject"),
        ("B", "Accept"),
        ("E", "Invite"),
        ("E", "NotAnswer"),
        ("C", "NotAnswer"),
        ("A", "Hangup"),
    ]
    assert brief(facts(h, cid)[-1]) == ("end",)


def test_cancel_marks_every_ringing_invitee_cancelled(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.hangup("A", cid)
    assert [brief(f) for f in facts(h, cid)] == [
        ("start",),
        ("member", (("B", "Cancel_Invite"), ("C", "Cancel_Invite"))),
        ("end",),
    ]


def test_busy_invitee_is_a_line_busy_change_after_the_start(h: Harness) -> None:
    other = h.call("C", ["B"])
    cid = h.call("A", ["B"])
    assert [brief(f) for f in facts(h, cid)] == [("start",), ("member", (("B", "LineBusy"),)), ("end",)]
    assert facts(h, other)[0].kind == "start"


def test_ephemeral_calls_yield_no_facts(h: Harness) -> None:
    cid = h.call("A", ["B"], is_ephemeral_call=True)
    h.accept("B", cid)
    h.hangup("A", cid)
    assert facts(h, cid) == []


def test_fact_numbering_survives_a_restart(h: Harness) -> None:
    cid = h.call("A", ["B"])
    snap = next(
        a.what.snapshot
        for batch in reversed(h.batches)
        for a in batch
        if isinstance(a, Persist) and isinstance(a.what, SaveCall) and a.what.call_id == cid
    )
    assert snap["fact_seq"] == 1
    h2 = Harness()
    h2.apply(h2.sb.restore([snap], [Login("A", "A"), Login("B", "B")], h2.now))
    h2.accept("B", cid)
    assert [f.seq for f in facts(h2, cid)] == [2]
