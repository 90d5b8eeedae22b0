"""Full-mesh media between Python members, signalling relayed in memory, inside a
loopback-only network namespace with no ICE servers."""

from __future__ import annotations

import pytest
from netns import loopback_netns, run_in

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("users", [["alice", "bob"], ["alice", "bob", "carol"]], ids=["1v1", "3-mesh"])
def test_every_member_hears_and_sees_every_other_video_stops_on_switch_and_a_vanished_one_is_down(
    users: list[str],
) -> None:
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/mesh_driver.py", *users], timeout=150)
    pairs = [f"{u}<-{o}" for u in users for o in users if o != u]
    assert sorted(r["video_phase"]) == sorted(pairs)
    for pair, seen in r["video_phase"].items():
        u, o = pair.split("<-")
        assert seen["offerer"] is (u < o), pair
        assert seen["state"] == "connected", pair
        assert seen["level"] > 0.05, pair  # a tone, not silence
        assert seen["volume"] > 0 and seen["local_volume"] > 0, pair
        assert seen["video_size"] == [320, 240], pair
        assert 1 <= seen["quality"] <= 5, pair  # graded (not UNKNOWN, not DOWN)
    for pair, seen in r["audio_phase"].items():
        assert seen["video_off_event"] and not seen["receiving_video"], pair
        assert seen["audio_frames_after_switch"] >= 25, pair
    assert r["down_seen_by"] == users[:-1]  # the vanished member is DOWN for everyone else
    # only the lower id of each pair ever offered
    assert r["offers_by"] == sorted(users)[:-1]
    assert set(r["signal_types"]) <= {"offer", "answer", "candidate", "renegotiate", "bye"}
