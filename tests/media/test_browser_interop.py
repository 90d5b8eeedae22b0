"""A Python member and a Chromium member share a call: each hears and sees the other
(inside a loopback-only network namespace, no ICE servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import loopback_netns, run_in
from turn import require_turnserver, turn_server

from needs import missing

pytestmark = pytest.mark.timeout(240)


def _require_browser() -> None:
    """Skip without Chromium or Playwright; in CI (which installs both) fail instead."""
    reason = _missing()
    if reason:
        missing(reason)


def _missing() -> str | None:
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed (./scripts/test installs it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.mark.parametrize("mode", ["python-offers", "browser-offers"])
def test_python_and_chromium_hear_and_see_each_other_then_switch_to_audio(mode: str) -> None:
    _require_browser()
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/browser_driver.py", mode], timeout=200)
    assert r["python_is_offerer"] is (mode == "python-offers")
    assert r["python_hears_browser"]["level"] > 0 and r["python_hears_browser"]["max_volume"] > 0
    assert r["python_video_frames"] >= 10 and r["python_video_size"][0] > 0
    assert r["browser_frames"]["framesDecoded"] > 10 and r["browser_frames"]["frameWidth"] == 320
    assert r["browser_audio"]["audioEnergy"] > 0
    assert r["browser_frames"]["transceivers"] == ["audio", "video"]
    assert r["browser_volume"]["audioVolume"] > 0
    assert 1 <= r["browser_quality"]["quality"] <= 5
    assert r["browser_after_switch"]["videoDirection"] == "inactive"
    assert r["python_receiving_video_after_switch"] is False
    assert r["browser_end"]["p"]["userID"] == r["python"]
    assert r["page_errors"] == []


def test_two_python_members_and_chromium_share_a_group_call() -> None:
    _require_browser()
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/browser_driver.py", "mixed-mesh"], timeout=200)
    for pair in ("apy<-bweb", "apy<-cpy", "cpy<-apy", "cpy<-bweb"):
        assert r[pair]["level"] > 0 and r[pair]["max_volume"] > 0 and r[pair]["video_frames"] >= 10, pair
    for pair in ("bweb<-apy", "bweb<-cpy"):
        assert r[pair]["framesDecoded"] > 10 and r[pair]["audioEnergy"] > 0, pair
        assert r[pair]["transceivers"] == ["audio", "video"], pair


@pytest.mark.parametrize("mode", ["python-offers", "browser-offers"])
def test_when_the_python_members_connection_dies_media_flows_again_with_chromium(mode: str) -> None:
    _require_browser()
    with loopback_netns() as ns:
        r = run_in(ns, ["tests/media/browser_driver.py", f"{mode}-restart"], timeout=200)
    assert r["python_is_offerer"] is (mode == "python-offers")
    assert r["python_new_audio"] >= 50  # the browser's audio, decoded again
    assert r["browser_after"]["framesDecoded"] > 30 and r["browser_after"]["audioEnergy"] > 0
    assert r["python_restarts"] == 1 and r["python_state"] == "connected"
    # Both sides are on a new ICE session: the browser has new ICE credentials too (as
    # offerer it restarted ICE when the Python answerer asked with restart: true).
    assert r["browser_ufrag_before"] and r["browser_ufrag_after"] not in (None, r["browser_ufrag_before"])
    assert r["call_id_kept"] is True
    assert r["page_errors"] == []


def test_python_and_chromium_talk_only_through_a_turn_relay(tmp_path: Path) -> None:
    """``--ice-transport-policy relay`` with a real coturn: Chromium's selected pair is
    relay to relay (getStats), so is aiortc's, and audio flows both ways."""
    _require_browser()
    require_turnserver()
    with loopback_netns() as ns, turn_server(ns, tmp_path / "turn") as turn:
        r = run_in(ns, ["tests/media/browser_driver.py", "relay", turn.url], timeout=200)
        allocations = turn.allocations()
    assert r["python_hears_browser"]["level"] > 0 and r["python_hears_browser"]["max_volume"] > 0
    assert r["browser_audio"]["audioEnergy"] > 0 and r["browser_audio"]["audioPackets"] > 20
    pair = r["browser_pair"]
    assert pair["policy"] == "relay" and pair["configured"] == "relay", pair
    assert pair["nominated"] and pair["local"] == "relay" and pair["remote"] == "relay", pair
    assert pair["localTypes"] == ["relay"] and pair["bytesReceived"] > 0, pair
    py = r["python"]
    assert py["state"] == "connected" and py["local_sdp_types"] == ["relay"], py
    assert py["nominated"] and all(p["local"] == p["remote"] == "relay" for p in py["nominated"]), py
    assert len(allocations) >= 2  # both the browser and aiortc allocated on coturn
    assert r["page_errors"] == []
