"""Python members in real calls through a real server, media over loopback only
(a fresh network namespace with just ``lo``, no ICE servers)."""

from __future__ import annotations

import pytest
from netns import loopback_netns, run_in

pytestmark = pytest.mark.timeout(240)


def test_video_call_both_hear_and_see_then_switch_to_audio_stops_video() -> None:
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/call_driver.py", "video-switch"], timeout=200)
    for who in ("alice_hears_bob", "bob_hears_alice"):
        assert r[who]["level"] > 0.05, r[who]  # the other's tone, decoded
        assert r[who]["max_volume"] > 0 and r[who]["own_volume"] > 0, r[who]
    assert r["alice_video_from_bob"] >= 10 and r["bob_video_from_alice"] >= 10
    assert r["video_size"] == [320, 240]
    for who in ("alice", "bob"):
        after = r[f"{who}_after_switch"]
        assert not after["receiving_video"] and after["audio_frames"] >= 25, after
        # available once, unavailable once: server flags and real tracks agree, no repeats
        assert after["video_available_events"] == [True, False], after
        order = r[f"{who}_order"]
        assert order["terminal"] == "on_call_end"
        assert order["made_before_begin"] == [] and order["after_end"] == [], order
        assert r[f"{who}_media_after_end"] is False


def test_three_member_mesh_everyone_hears_everyone_and_a_leaver_is_disconnected() -> None:
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/call_driver.py", "mesh3"], timeout=200)
    users = ["alice", "bob", "carol"]
    for u in users:
        for o in users:
            if o != u:
                assert r[f"{u}<-{o}"]["level"] > 0.05 and r[f"{u}<-{o}"]["max_volume"] > 0, (u, o)
        assert r[f"{u}_volume_keys"] == users
    assert r["alice_peers_after_carol_left"] == ["bob"]
    assert r["bob_peers_after_carol_left"] == ["alice"]
    for u in ("alice", "bob"):
        assert r[f"{u}_order"]["after_end"] == []
