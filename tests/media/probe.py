"""A sink that counts what each remote user sent, for the media test drivers."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np

from ringline.media import rms_level
from ringline.media.sinks import Kind


class Probe:
    """Counts decoded frames and keeps the loudest frame level per (user, kind);
    :meth:`wait_frames` waits for a count without sleeping. ``started`` / ``ended``
    count the ``track_started`` / ``track_ended`` calls per (user, kind). :meth:`peak_hz`:
    the dominant frequency of the last second of a user's audio."""

    def __init__(self) -> None:
        self.frames: dict[tuple[str, str], int] = {}
        self.started: dict[tuple[str, str], int] = {}
        self.ended: dict[tuple[str, str], int] = {}
        self.max_level: dict[str, float] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        #: user -> (sample rate, the first channel of the last 50 audio frames)
        self._recent: dict[str, tuple[int, deque[np.ndarray]]] = {}
        self._changed = asyncio.Event()

    def track_started(self, user_id: str, kind: Kind) -> None:
        self.frames.setdefault((user_id, kind), 0)
        self.started[(user_id, kind)] = self.started.get((user_id, kind), 0) + 1

    def frame(self, user_id: str, kind: Kind, frame: Any) -> None:
        key = (user_id, kind)
        self.frames[key] = self.frames.get(key, 0) + 1
        if kind == "audio":
            level = rms_level(frame.to_ndarray(), len(frame.layout.channels))
            self.max_level[user_id] = max(self.max_level.get(user_id, 0.0), level)
            recent = self._recent.setdefault(user_id, (frame.sample_rate, deque(maxlen=50)))[1]
            recent.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])
        else:
            self.sizes[user_id] = (frame.width, frame.height)
        self._changed.set()

    def track_ended(self, user_id: str, kind: Kind) -> None:
        self.ended[(user_id, kind)] = self.ended.get((user_id, kind), 0) + 1

    def peak_hz(self, user_id: str) -> float:
        """The dominant frequency (Hz) of the last 50 audio frames from ``user_id`` (1 s at
        20 ms a frame); 0.0 before any."""
        if user_id not in self._recent or not self._recent[user_id][1]:
            return 0.0
        rate, frames = self._recent[user_id]
        pcm = np.concatenate(list(frames)).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm))
        return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])

    def count(self, user_id: str, kind: Kind) -> int:
        return self.frames.get((user_id, kind), 0)

    async def wait_frames(self, user_id: str, kind: Kind, n: int, timeout: float) -> int:
        """Wait until ``n`` more frames of ``kind`` came from ``user_id``; return the count."""
        target = self.count(user_id, kind) + n
        async with asyncio.timeout(timeout):
            while self.count(user_id, kind) < target:
                self._changed.clear()
                await self._changed.wait()
        return self.count(user_id, kind)
