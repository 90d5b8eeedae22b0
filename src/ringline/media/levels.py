"""Voice volume from PCM: pure functions and a small meter, no I/O.

The contract shared with the browser engine (docs/media-python.md, "Volume"):

* ``level`` = linear RMS amplitude of the last ~100-200 ms of audio relative to full
  scale (1.0 = a full-scale square wave), clipped to 1;
* ``volume`` = ``round(100 * level)``, an int in 0..100.

A full-scale sine has level 0.707 (volume 71); silence has 0. Integer samples are
scaled by their type's full scale (``int16`` by 32768), float samples are taken as
they are (``-1.0..1.0``). Several channels add their powers (:func:`frame_energy`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["LEVEL_WINDOW", "LevelMeter", "frame_energy", "rms_level", "volume_from_level"]

#: How much audio a level covers, in seconds (the contract says ~100-200 ms).
LEVEL_WINDOW = 0.15


def frame_energy(samples: npt.ArrayLike, channels: int = 1) -> tuple[float, int]:
    """Sum of squared samples (relative to full scale) and the count of sample times.

    ``samples`` is any array of PCM samples, ``channels`` interleaved (or planar:
    only the total matters): an integer dtype is divided by its full scale
    (``2**(bits-1)``), a float dtype is used as is. The channels' powers add up, so
    a mono signal copied to two channels at -3 dB each (what the Opus encoder does
    with mono) reads the same as the mono signal. Divide and take the root for a
    level, or feed the result to :meth:`LevelMeter.add_energy`.
    """
    a = np.asarray(samples)
    if a.size == 0 or channels < 1:
        return 0.0, 0
    if np.issubdtype(a.dtype, np.integer):
        full = float(2 ** (8 * a.dtype.itemsize - 1))
        x = a.astype(np.float64) / full
    else:
        x = a.astype(np.float64)
    return float(np.dot(x.ravel(), x.ravel())), int(a.size) // channels


def rms_level(samples: npt.ArrayLike, channels: int = 1) -> float:
    """Linear RMS level of ``samples`` relative to full scale, clipped to 0..1
    (``channels`` as in :func:`frame_energy`)."""
    energy, n = frame_energy(samples, channels)
    if n == 0:
        return 0.0
    return min(1.0, math.sqrt(energy / n))


def volume_from_level(level: float) -> int:
    """The 0..100 volume of a 0..1 level: ``round(100 * level)``, clipped."""
    if not level > 0.0:  # also catches NaN
        return 0
    return min(100, round(100.0 * level))


class LevelMeter:
    """The level of the most recent ``window`` seconds of audio.

    Call :meth:`add` with each frame as it is played or received (``now`` is a
    monotonic time in seconds), and :meth:`level` when you need the reading; frames
    older than ``window`` no longer count, so a source that goes quiet or stops
    reads 0 one window later.
    """

    __slots__ = ("_frames", "window")

    def __init__(self, window: float = LEVEL_WINDOW) -> None:
        self.window = window
        self._frames: deque[tuple[float, float, int]] = deque()

    def add(self, samples: Any, now: float, channels: int = 1) -> None:
        """Account one frame of PCM samples (see :func:`frame_energy`)."""
        energy, n = frame_energy(samples, channels)
        self.add_energy(energy, n, now)

    def add_energy(self, energy: float, count: int, now: float) -> None:
        """Account a frame already reduced by :func:`frame_energy`."""
        if count:
            self._frames.append((now, energy, count))
        self._expire(now)

    def level(self, now: float) -> float:
        """The RMS level (0..1) of the frames of the last ``window`` seconds."""
        self._expire(now)
        n = sum(c for _, _, c in self._frames)
        if n == 0:
            return 0.0
        return min(1.0, math.sqrt(sum(e for _, e, _ in self._frames) / n))

    def volume(self, now: float) -> int:
        """:meth:`level` as a 0..100 volume."""
        return volume_from_level(self.level(now))

    def reset(self) -> None:
        self._frames.clear()

    def _expire(self, now: float) -> None:
        frames = self._frames
        while frames and frames[0][0] <= now - self.window:
            frames.popleft()
