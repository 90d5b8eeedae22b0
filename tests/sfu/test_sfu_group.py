"""A 9-member audio call through Janus: nine SDK engines made with ``media=`` (three
processes of three, tests/sfu/group_members.py), each sending a tone of its own
frequency, in a loopback-only network namespace with a real Janus and
``ringline serve --sfu`` (tests/sfu/group_driver.py). Every member hears every other
at that member's frequency, with frames still arriving later; each sends its audio
once (one publishing connection, one outbound audio stream) and receives the eight
others on a connection each, with no mesh connection left; after everyone hung up the
call's record is complete and Janus no longer has the room."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from group_members import group_users
from netns import loopback_netns, run_in

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent


def test_nine_members_hear_each_other_through_janus() -> None:
    with loopback_netns() as ns:
        r = run_in(ns, [str(HERE / "group_driver.py"), "--members", "9", "--procs", "3"], timeout=280)
    freq = group_users(9)
    users = sorted(freq)
    assert sorted(r["heard"]) == users and sorted(r["report"]) == users
    for u in users:
        others = sorted(set(users) - {u})
        heard, report = r["heard"][u], r["report"][u]
        assert sorted(heard) == others, (u, heard)
        links = {"publisher": True, "feeds": others, "mesh": [], "outbound_audio": 1, "outbound_video": 0}
        assert report["links"] == links, (u, report["links"])
        for o in others:
            assert heard[o]["level"] > 0.05, (u, o, heard[o])  # a tone, not silence
            assert report["frames"][o] > heard[o]["frames"], (u, o)  # still coming, later
            # The last second came through the room (no mesh connection is left by then).
            assert abs(report["peak_hz"][o] - freq[o]) <= 20, (u, o, report["peak_hz"][o])
    rec = r["record"]
    assert rec is not None and rec["CallId"] == r["call_id"], rec
    assert rec["CallResult"] == "NormalEnd" and rec["CallType"] == "MultiCall", rec
    assert sorted(rec["CalleeList_Account"]) == users
    assert sorted(m["User_Account"] for m in rec["MemberList"]) == users
    assert all(m["AcceptTime"] and m["LeaveTime"] for m in rec["MemberList"]), rec["MemberList"]
    assert r["room_exists_after"] is False
    assert r["server_exit"] == 0
