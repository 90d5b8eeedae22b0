"""Media through a real TURN server (coturn) with ``--ice-transport-policy relay``,
inside a loopback-only network namespace: the relay carries the call, and without
valid TURN credentials nothing connects (so the relay really was required)."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import loopback_netns, run_in
from turn import PASSWORD, require_turnserver, turn_server

pytestmark = pytest.mark.timeout(240)

#: coturn's relay ports (turn.py: --min-port/--max-port).
RELAY_PORTS = range(49160, 49261)


def test_relay_only_media_flows_both_ways_through_turn(tmp_path: Path) -> None:
    require_turnserver()
    with loopback_netns() as ns, turn_server(ns, tmp_path / "turn") as turn:
        r = run_in(ns, ["tests/media/relay_driver.py", turn.url, PASSWORD, "ok"], timeout=200)
        allocations, binds, log = turn.allocations(), turn.channel_binds(), turn.log()
    for who in ("alice_hears_bob", "bob_hears_alice"):
        assert r[who]["level"] > 0.05 and r[who]["max_volume"] > 0, r[who]  # the other's tone
    for who in ("alice", "bob"):
        ice = r[who]
        assert ice["policy"] == "relay" and ice["state"] == "connected", ice
        # Only relay candidates were offered and answered, and the pairs in use are relay
        # to relay, on coturn's relay ports: no direct path between the two.
        assert ice["local_sdp_types"] == ["relay"] and ice["remote_sdp_types"] == ["relay"], ice
        assert ice["nominated"], ice
        for pair in ice["nominated"]:
            assert pair["local"] == "relay" and pair["remote"] == "relay", pair
            assert pair["local_addr"][1] in RELAY_PORTS and pair["remote_addr"][1] in RELAY_PORTS, pair
    # coturn saw both members allocate as user ringline and bind channels to send media.
    assert len(allocations) >= 2, log[-4000:]
    assert len(binds) >= 2, log[-4000:]


def test_with_a_wrong_turn_credential_relay_only_media_never_connects(tmp_path: Path) -> None:
    require_turnserver()
    with loopback_netns() as ns, turn_server(ns, tmp_path / "turn") as turn:
        r = run_in(ns, ["tests/media/relay_driver.py", turn.url, "not-the-secret", "refused"], timeout=120)
        allocations, refused, log = turn.allocations(), turn.refused(), turn.log()
    assert r["watched"] >= 8
    for who in ("alice", "bob"):
        m = r[who]
        assert m["audio_frames"] == 0 and m["heard"] == [], m  # nothing decoded, no volume
        assert m["connected"] is False, m
        if m["ice"] is not None:
            assert m["ice"]["nominated"] == [] and m["ice"]["local_sdp_types"] == [], m
    assert allocations == [], log[-4000:]
    assert refused, log[-4000:]  # coturn turned the credential down
