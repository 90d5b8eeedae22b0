"""Network quality from RTCP statistics: pure functions, no I/O.

The grading shared with the browser engine (docs/media-python.md, "Network quality"):
every 2 s, per remote user, take the round-trip time (ms), the packet loss over the
last interval (%) and the jitter (ms); each gets a grade and the quality is the
**worst** of the three::

    grade        rtt ms    loss %    jitter ms
    EXCELLENT    < 100     < 1       < 20
    GOOD         < 200     < 3       < 40
    POOR         < 300     < 6       < 60
    BAD          < 500     < 10      < 100
    VERY_BAD     otherwise

DOWN when nothing was received for 3 s or ICE is disconnected/failed; UNKNOWN before
the first statistics. A measure that is not known yet (aiortc has no RTT until the
first RTCP receiver report comes back) does not lower the grade.

:func:`link_stats` reads one aiortc ``getStats()`` report; :class:`QualityTracker`
turns successive readings into grades.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ringline.core.enums import NetworkQuality

__all__ = [
    "DOWN_AFTER",
    "QUALITY_INTERVAL",
    "LinkStats",
    "QualitySample",
    "QualityTracker",
    "grade",
    "link_stats",
    "worst",
]

#: Seconds between two quality readings.
QUALITY_INTERVAL = 2.0
#: Seconds without any packet after which a link is DOWN.
DOWN_AFTER = 3.0

# Upper bounds (exclusive) of each grade, best first: (rtt ms, loss %, jitter ms).
_THRESHOLDS: tuple[tuple[NetworkQuality, float, float, float], ...] = (
    (NetworkQuality.EXCELLENT, 100.0, 1.0, 20.0),
    (NetworkQuality.GOOD, 200.0, 3.0, 40.0),
    (NetworkQuality.POOR, 300.0, 6.0, 60.0),
    (NetworkQuality.BAD, 500.0, 10.0, 100.0),
)

# RTP clock rates, to turn aiortc's jitter (in RTP timestamp units) into seconds.
_CLOCK_RATE = {"audio": 48000.0, "video": 90000.0}


def _grade_one(value: float | None, column: int) -> NetworkQuality:
    if value is None:
        return NetworkQuality.EXCELLENT
    for quality, *bounds in _THRESHOLDS:
        if value < bounds[column]:
            return quality
    return NetworkQuality.VERY_BAD


def grade(rtt_ms: float | None, loss_pct: float | None, jitter_ms: float | None) -> NetworkQuality:
    """The worst grade of the three measures (``None`` = not known, ignored).

    Returns EXCELLENT..VERY_BAD, never UNKNOWN or DOWN (those come from
    :class:`QualityTracker`, which knows about time).
    """
    grades = (_grade_one(rtt_ms, 0), _grade_one(loss_pct, 1), _grade_one(jitter_ms, 2))
    return max(grades)  # ordinals grow from EXCELLENT (1) to VERY_BAD (5)


def worst(qualities: Iterable[NetworkQuality]) -> NetworkQuality:
    """The local user's own quality: the worst of its links (DOWN is the worst),
    UNKNOWN when none is graded yet."""
    graded = [q for q in qualities if q is not NetworkQuality.UNKNOWN]
    return max(graded) if graded else NetworkQuality.UNKNOWN


@dataclass(frozen=True, slots=True)
class LinkStats:
    """One reading of a peer connection; counters are cumulative since it started.

    ``received`` counts every packet that came in (media and RTCP); ``media_received``
    and ``media_lost`` are the RTP packets received and lost as the receiver counts
    them. ``rtt_ms`` and ``jitter_ms`` are ``None`` while unknown. ``ice_ok`` is
    False when ICE is disconnected or failed.
    """

    at: float
    received: int
    media_received: int
    media_lost: int
    rtt_ms: float | None
    jitter_ms: float | None
    ice_ok: bool = True


@dataclass(frozen=True, slots=True)
class QualitySample:
    """What :meth:`QualityTracker.update` concluded, with the measures it used."""

    quality: NetworkQuality
    rtt_ms: float | None
    loss_pct: float | None
    jitter_ms: float | None


def link_stats(report: Mapping[str, Any] | Iterable[Any], at: float, ice_state: str) -> LinkStats:
    """Read an aiortc ``RTCStatsReport`` (or any iterable of stats objects with the
    W3C field names) taken at monotonic time ``at``.

    RTT comes from ``remote-inbound-rtp.roundTripTime`` (the sending side's view,
    audio preferred; aiortc has no candidate-pair statistics), jitter is the largest
    ``inbound-rtp.jitter`` (aiortc reports RTP units, converted with the codec clock
    rate), loss and received counts come from ``inbound-rtp``, and "anything
    received" from ``transport``.
    """
    items = report.values() if isinstance(report, Mapping) else report
    rtt: dict[str, float] = {}
    jitter: dict[str, float] = {}
    media_received = media_lost = transport_received = 0
    for s in items:
        kind = getattr(s, "kind", "")
        typ = getattr(s, "type", "")
        if typ == "inbound-rtp":
            media_received += int(getattr(s, "packetsReceived", 0) or 0)
            media_lost += max(0, int(getattr(s, "packetsLost", 0) or 0))
            j = getattr(s, "jitter", None)
            if j is not None and kind in _CLOCK_RATE:
                jitter[kind] = 1000.0 * float(j) / _CLOCK_RATE[kind]
        elif typ == "remote-inbound-rtp":
            r = getattr(s, "roundTripTime", None)
            if r is not None:
                rtt[kind] = 1000.0 * float(r)
        elif typ == "transport":
            transport_received += int(getattr(s, "packetsReceived", 0) or 0)
    return LinkStats(
        at=at,
        received=max(transport_received, media_received),
        media_received=media_received,
        media_lost=media_lost,
        rtt_ms=rtt.get("audio", rtt.get("video")),
        jitter_ms=max(jitter.values()) if jitter else None,
        ice_ok=ice_state not in ("disconnected", "failed", "closed"),
    )


class QualityTracker:
    """Grades successive :class:`LinkStats` of one remote user.

    Create it when the connection to that user starts (``started`` = monotonic now),
    then call :meth:`update` with each reading, every :data:`QUALITY_INTERVAL` s.
    """

    __slots__ = ("_last", "_last_rx_at", "_started")

    def __init__(self, started: float) -> None:
        self._started = started
        self._last: LinkStats | None = None
        self._last_rx_at: float | None = None

    def update(self, s: LinkStats) -> QualitySample:
        """Grade a new reading: loss is computed against the previous one."""
        prev = self._last
        self._last = s
        if s.received > (prev.received if prev is not None else 0):
            self._last_rx_at = s.at
        silent_since = self._last_rx_at if self._last_rx_at is not None else self._started
        if not s.ice_ok or s.at - silent_since >= DOWN_AFTER:
            return QualitySample(NetworkQuality.DOWN, s.rtt_ms, None, s.jitter_ms)
        if self._last_rx_at is None:
            return QualitySample(NetworkQuality.UNKNOWN, s.rtt_ms, None, s.jitter_ms)
        d_rx = s.media_received - (prev.media_received if prev is not None else 0)
        d_lost = s.media_lost - (prev.media_lost if prev is not None else 0)
        d_rx, d_lost = max(0, d_rx), max(0, d_lost)
        loss = 100.0 * d_lost / (d_rx + d_lost) if d_rx + d_lost > 0 else 0.0
        return QualitySample(grade(s.rtt_ms, loss, s.jitter_ms), s.rtt_ms, loss, s.jitter_ms)
