"""Media through Janus: three aiortc members of one call, inside a loopback-only network
namespace with a real Janus (loopback shim preloaded) and ``ringline serve --sfu``, each
publish a tone once through the server's ``sfu`` requests and hear the other two's tones
(each feed's own frequency) over subscriptions the server set up with Janus; when one
leaves, the other two go on hearing each other."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from netns import loopback_netns, run_in

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_driver(name: str, *args: str) -> dict[str, Any]:
    with loopback_netns() as ns:
        return run_in(ns, [str(HERE / name), *args], timeout=150)


def test_three_members_hear_each_other_through_janus() -> None:
    r = run_driver("sfu_media_driver.py")
    freq = {"alice": 440, "bob": 660, "carol": 880}
    assert sorted(r["members"]) == sorted(freq)
    for who, feeds in r["members"].items():
        assert sorted(feeds) == sorted(set(freq) - {who}), who
        for feed, got in feeds.items():
            assert got["state"] == "connected", (who, feed)
            assert got["frames"] >= 100, (who, feed)  # 2 s of audio
            assert abs(got["peak_hz"] - freq[feed]) <= 20, (who, feed, got)  # that member's tone
            assert got["rms"] > 0.05, (who, feed, got)  # a tone, not silence
    assert all(n >= 50 for n in r["after_carol_left"].values()), r["after_carol_left"]


def test_sdk_engines_switch_to_the_sfu_and_hear_each_other() -> None:
    # Three CallEngine(media=...) members: on on_sfu each publishes once through the room
    # (no mesh connection left) and receives the other two there, with volume and
    # quality events as in the mesh; observers never see on_sfu/on_sfu_feed. Janus killed
    # and started again mid-call: the room is made again and everyone publishes again.
    r = run_driver("sdk_media_driver.py")
    users = ["alice", "bob", "carol"]
    for u in users:
        others = sorted(set(users) - {u})
        assert r[f"{u}_links"] == {"publisher": True, "feeds": others, "mesh": []}, r[f"{u}_links"]
        assert r[f"{u}_observer_saw_sfu"] == []
        for o in others:
            heard = r[f"{u}<-{o}"]
            assert heard["level"] > 0.05 and heard["max_volume"] > 0, (u, o, heard)
    # Janus killed and started again: every engine published again and hears the others.
    assert r["published_again"] == users
    for u in users:
        for o in set(users) - {u}:
            assert r[f"{u}<-{o}"]["after_janus_restart"] > r[f"{u}<-{o}"]["more_frames"]
    # A device that does not follow rooms joined: back to the mesh, heard there.
    for u in users:
        others = sorted(set(users) - {u})
        links = r[f"{u}_links_mesh_again"]
        assert not links["publisher"] and links["mesh"] == sorted([*others, "dora"]), links
        assert links["connected"] == others, links  # Dora sends no media
        for o in others:
            assert r[f"{u}<-{o}"]["after_mesh_again"] > r[f"{u}<-{o}"]["after_janus_restart"]
    assert r["alice_peers_after_carol_left"] == ["bob"] and r["bob_peers_after_carol_left"] == ["alice"]


def test_sdk_engines_move_to_another_janus_when_theirs_dies() -> None:
    # Two Janus, ``--sfu A --sfu B``: the one holding the room is killed and stays dead.
    # The server marks it down, makes the room on the other one with new tokens, and
    # every engine publishes again there and hears the other two; the call goes on and
    # ends with its record.
    r = run_driver("sdk_media_driver.py", "failover")
    users = ["alice", "bob", "carol"]
    assert len(r["room_on_before"]) == 1, r
    assert r["room_on_after"] == sorted({"A", "B"} - set(r["killed"])), r
    assert r["published_again"] == users, r
    for u in users:
        for o in set(users) - {u}:
            assert r[f"{u}<-{o}"]["level"] > 0.05, (u, o, r[f"{u}<-{o}"])
            assert r[f"{u}<-{o}"]["after_janus_death"] > 0, (u, o, r[f"{u}<-{o}"])
    assert r["record"]["CallResult"] == "NormalEnd", r["record"]
    assert r["begins"] == {u: 1 for u in users}, r["begins"]
