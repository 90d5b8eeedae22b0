"""Network quality: worst grade of rtt / loss / jitter; DOWN after 3 s of nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ringline.core.enums import NetworkQuality as Q
from ringline.media.quality import DOWN_AFTER, LinkStats, QualityTracker, grade, link_stats, worst


@pytest.mark.parametrize(
    ("rtt", "loss", "jitter", "expected"),
    [
        (0, 0, 0, Q.EXCELLENT),
        (99.9, 0.99, 19.9, Q.EXCELLENT),
        (100, 0, 0, Q.GOOD),
        (0, 1, 0, Q.GOOD),
        (0, 0, 20, Q.GOOD),
        (199, 2.9, 39, Q.GOOD),
        (200, 0, 0, Q.POOR),
        (0, 3, 0, Q.POOR),
        (0, 0, 40, Q.POOR),
        (300, 0, 0, Q.BAD),
        (0, 6, 0, Q.BAD),
        (0, 0, 60, Q.BAD),
        (499, 9.9, 99, Q.BAD),
        (500, 0, 0, Q.VERY_BAD),
        (0, 10, 0, Q.VERY_BAD),
        (0, 0, 100, Q.VERY_BAD),
        (50, 12, 5, Q.VERY_BAD),
    ],
)
def test_grade_is_the_worst_of_the_three(rtt: float, loss: float, jitter: float, expected: Q) -> None:
    assert grade(rtt, loss, jitter) is expected


def test_unknown_measures_do_not_lower_the_grade() -> None:
    assert grade(None, None, None) is Q.EXCELLENT
    assert grade(None, 4.0, None) is Q.POOR


def stats(
    at: float,
    rx: int,
    lost: int = 0,
    rtt: float | None = 2.0,
    jitter: float | None = 1.0,
    ice_ok: bool = True,
) -> LinkStats:
    return LinkStats(
        at=at, received=rx, media_received=rx, media_lost=lost, rtt_ms=rtt, jitter_ms=jitter, ice_ok=ice_ok
    )


def test_unknown_before_anything_arrives_then_graded() -> None:
    t = QualityTracker(started=0.0)
    assert t.update(stats(1.0, 0, rtt=None, jitter=None)).quality is Q.UNKNOWN
    assert t.update(stats(2.0, 100)).quality is Q.EXCELLENT


def test_down_when_nothing_arrived_for_three_seconds() -> None:
    t = QualityTracker(started=0.0)
    assert t.update(stats(DOWN_AFTER, 0)).quality is Q.DOWN
    t = QualityTracker(started=0.0)
    assert t.update(stats(2.0, 100)).quality is Q.EXCELLENT
    assert t.update(stats(4.0, 100)).quality is Q.EXCELLENT  # 2 s silent: not yet
    assert t.update(stats(2.0 + DOWN_AFTER, 100)).quality is Q.DOWN
    assert t.update(stats(8.0, 200)).quality is Q.EXCELLENT  # back


def test_down_when_ice_is_disconnected() -> None:
    t = QualityTracker(started=0.0)
    t.update(stats(2.0, 100))
    assert t.update(stats(4.0, 200, ice_ok=False)).quality is Q.DOWN


def test_loss_is_over_the_last_interval_only() -> None:
    t = QualityTracker(started=0.0)
    s = t.update(stats(2.0, 90, lost=10))  # 10 % since the start
    assert s.loss_pct == pytest.approx(10.0)
    assert s.quality is Q.VERY_BAD
    s = t.update(stats(4.0, 190, lost=10))  # nothing lost in this interval
    assert s.loss_pct == 0.0
    assert s.quality is Q.EXCELLENT
    s = t.update(stats(6.0, 288, lost=12))  # 2 of 100
    assert s.loss_pct == pytest.approx(2.0)
    assert s.quality is Q.GOOD


def test_rtt_and_jitter_grade_the_link() -> None:
    t = QualityTracker(started=0.0)
    assert t.update(stats(2.0, 100, rtt=250.0)).quality is Q.POOR
    assert t.update(stats(4.0, 200, jitter=45.0)).quality is Q.POOR


@dataclass
class _S:
    type: str
    kind: str = ""
    packetsReceived: int = 0
    packetsLost: int = 0
    jitter: int | None = None
    roundTripTime: float | None = None


def test_link_stats_reads_aiortc_fields_and_units() -> None:
    report = {
        "a": _S("inbound-rtp", "audio", packetsReceived=240, packetsLost=10, jitter=480),  # 10 ms
        "v": _S("inbound-rtp", "video", packetsReceived=100, packetsLost=-2, jitter=9000),  # 100 ms
        "ra": _S("remote-inbound-rtp", "audio", roundTripTime=0.052),
        "rv": _S("remote-inbound-rtp", "video", roundTripTime=0.3),
        "t": _S("transport", packetsReceived=400),
    }
    s = link_stats(report, at=5.0, ice_state="completed")
    assert s.media_received == 340
    assert s.media_lost == 10  # a negative count (duplicates) is not a gain
    assert s.received == 400
    assert s.rtt_ms == pytest.approx(52.0)  # audio first
    assert s.jitter_ms == pytest.approx(100.0)  # the largest
    assert s.ice_ok
    assert not link_stats([], at=0.0, ice_state="failed").ice_ok


def test_link_stats_falls_back_to_video_and_to_rtp_counts() -> None:
    s = link_stats(
        [
            _S("inbound-rtp", "video", packetsReceived=7, jitter=900),
            _S("remote-inbound-rtp", "video", roundTripTime=0.004),
        ],
        at=0.0,
        ice_state="connected",
    )
    assert (s.received, s.rtt_ms, s.jitter_ms) == (7, pytest.approx(4.0), pytest.approx(10.0))
    assert link_stats([], at=0.0, ice_state="new").rtt_ms is None


def test_own_quality_is_the_worst_link_and_unknown_without_one() -> None:
    assert worst([]) is Q.UNKNOWN
    assert worst([Q.UNKNOWN, Q.UNKNOWN]) is Q.UNKNOWN
    assert worst([Q.EXCELLENT, Q.UNKNOWN, Q.POOR]) is Q.POOR
    assert worst([Q.VERY_BAD, Q.DOWN]) is Q.DOWN
