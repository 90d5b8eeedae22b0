"""Python members whose media connection dies start over on the same call
(docs/media.md §1-§2): signalling relayed in memory, media inside a loopback-only
network namespace with no ICE servers. One driver run makes every scenario."""

from __future__ import annotations

from typing import Any

import pytest
from netns import loopback_netns, run_in

pytestmark = pytest.mark.timeout(420)

BOTH = {"alice": True, "bob": True}


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    with loopback_netns() as ns:
        return run_in(ns, ["tests/media/restart_driver.py"], timeout=400)


def scenario(runs: dict[str, Any], name: str) -> dict[str, Any]:
    r: dict[str, Any] = runs[name]
    assert "error" not in r, r
    return r


def assert_started_over(r: dict[str, Any], restarts: int = 1) -> None:
    """Media flows again both ways on brand new peer connections (the old ones are
    closed), the offerer made every offer, and sinks saw one continuous track."""
    assert r["after"]["alice<-bob"] >= r["before"]["alice<-bob"] + 50, r  # new audio...
    assert r["after"]["bob<-alice"] >= r["before"]["bob<-alice"] + 50, r  # ...both ways
    assert r["new_pcs"] == BOTH and r["old_states"] == {"alice": "closed", "bob": "closed"}, r
    assert r["states"] == {"alice": "connected", "bob": "connected"}, r
    assert r["restarts"] == {"alice": restarts, "bob": restarts}, r
    assert r["offerer"] == {"alice": True, "bob": False} and r["offers_by"] == ["alice"], r
    assert set(r["tracks_started"].values()) == {1} and set(r["tracks_ended"].values()) == {0}, r
    assert r["frames_kept"]["alice"] >= r["after"]["alice<-bob"], r  # counters go on
    assert r["byes"] == [], r


def test_offerer_whose_connection_dies_makes_a_new_one_and_media_flows_again(runs: dict[str, Any]) -> None:
    r = scenario(runs, "offerer-fails")
    assert_started_over(r)
    assert r["restart_asks"] == [] and r["errors"] == {"alice": [], "bob": []}


def test_answerer_whose_connection_dies_asks_the_offerer_to_start_over(runs: dict[str, Any]) -> None:
    r = scenario(runs, "answerer-fails")
    assert_started_over(r)
    assert r["restart_asks"] == ["bob"]


@pytest.mark.parametrize("who", ["offerer", "answerer"])
def test_after_logging_in_again_the_pair_starts_over(runs: dict[str, Any], who: str) -> None:
    r = scenario(runs, f"relogin-{who}")
    assert_started_over(r)
    # the answerer never offers: it asks the offerer
    assert r["restart_asks"] == ([] if who == "offerer" else ["bob"])


def test_an_offer_lost_while_the_server_was_away_is_sent_again_once_resumed(runs: dict[str, Any]) -> None:
    r = scenario(runs, "lost-offer")
    assert r["lost"] == ["offer"]
    assert_started_over(r)


def test_the_offerer_gives_up_after_the_bounded_attempts_and_tries_again_on_reconnect(
    runs: dict[str, Any],
) -> None:
    r = scenario(runs, "give-up")
    assert r["refused"] == 3 and r["restarts_at_give_up"] == 3, r  # RESTART_DELAYS had 3 entries
    assert r["state_at_give_up"] == "failed"
    err = r["on_error"]
    assert err["code"] == -1406 and err["call_id"] == "call-1", err
    assert "failed 3 times in a row" in err["message"] and "giving up" in err["message"], err
    assert r["errors"]["alice"] == [err] and r["errors"]["bob"] == []  # once
    assert_started_over(r, restarts=4)  # then the reconnect's attempt connected
