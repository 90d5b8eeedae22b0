"""What a Python call member receives: sinks for the decoded frames of each remote user.

A sink is any object with the three methods of :class:`MediaSink`; the call's media
session calls them on the event loop, for every remote user and kind (``"audio"`` or
``"video"``), in this order: ``track_started``, ``frame`` for each decoded frame,
``track_ended`` (when the user leaves or the call ends; a connection that fails and is
replaced by a new one does not end the track: its frames resume after the gap).
They must return quickly: hand heavy work to a task or a thread.

* :class:`FrameSink`: decoded frames as async iterators, per user and kind.
* :class:`WavRecorder`: each remote user's audio to a WAV file.

Received audio frames are what aiortc's Opus decoder gives: ``av.AudioFrame``, 48
kHz, signed 16-bit, stereo (960 samples per channel, 20 ms). Video frames are
``av.VideoFrame`` (``frame.to_ndarray(format="rgb24")`` for numpy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["FrameSink", "Kind", "MediaSink", "WavRecorder"]

log = logging.getLogger("ringline.media")

Kind = Literal["audio", "video"]


@runtime_checkable
class MediaSink(Protocol):
    """Receives the decoded media of the remote users of a call."""

    def track_started(self, user_id: str, kind: Kind) -> None:
        """``user_id`` starts sending ``kind``; frames follow."""

    def frame(self, user_id: str, kind: Kind, frame: Any) -> None:
        """One decoded ``av.AudioFrame`` / ``av.VideoFrame`` from ``user_id``."""

    def track_ended(self, user_id: str, kind: Kind) -> None:
        """No more frames of ``kind`` from ``user_id`` (it left, or the call ended)."""


_END = object()


class FrameSink:
    """Decoded frames per remote user as async iterators.

    ::

        sink = FrameSink()
        engine = CallEngine(url, media=MediaOptions(sink=sink))
        ...
        async for frame in sink.frames("bob", "audio"):   # ends when bob's track ends
            pcm = frame.to_ndarray()

    Each (user, kind) has a queue of at most ``max_frames``; when the reader falls
    behind, the oldest frames are dropped (counted in :attr:`dropped`). Frames that
    arrive while nobody iterates are queued the same way, so start reading soon.
    """

    def __init__(self, max_frames: int = 100) -> None:
        self.max_frames = max_frames
        self._queues: dict[tuple[str, str], asyncio.Queue[Any]] = {}
        self._started: dict[tuple[str, str], asyncio.Event] = {}
        self.dropped = 0

    def _queue(self, key: tuple[str, str]) -> asyncio.Queue[Any]:
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
        return q

    def _event(self, key: tuple[str, str]) -> asyncio.Event:
        ev = self._started.get(key)
        if ev is None:
            ev = self._started[key] = asyncio.Event()
        return ev

    def track_started(self, user_id: str, kind: Kind) -> None:
        self._queue((user_id, kind))
        self._event((user_id, kind)).set()

    def frame(self, user_id: str, kind: Kind, frame: Any) -> None:
        q = self._queue((user_id, kind))
        while q.qsize() >= self.max_frames:
            q.get_nowait()
            self.dropped += 1
        q.put_nowait(frame)

    def track_ended(self, user_id: str, kind: Kind) -> None:
        self._queue((user_id, kind)).put_nowait(_END)
        self._started.pop((user_id, kind), None)

    async def wait_track(self, user_id: str, kind: Kind, timeout: float | None = None) -> None:
        """Return once ``user_id``'s ``kind`` track has started (raises ``TimeoutError``)."""
        async with asyncio.timeout(timeout):
            await self._event((user_id, kind)).wait()

    async def frames(self, user_id: str, kind: Kind = "audio") -> AsyncIterator[Any]:
        """Frames of ``user_id``'s ``kind`` track, in order, until the track ends.

        Call it before or after the track starts; break out of the loop to stop
        reading (later frames keep being queued, within ``max_frames``).
        """
        key = (user_id, kind)
        q = self._queue(key)
        while True:
            item = await q.get()
            if item is _END:
                if self._queues.get(key) is q and q.empty():
                    del self._queues[key]
                return
            yield item


class WavRecorder:
    """Records each remote user's audio to a WAV file in ``directory``.

    The file of user ``u`` is ``{directory}/{u}.wav`` (``{u}-2.wav``, … when the same
    user is recorded again, e.g. after leaving and joining). ``channels`` is 1 (the
    decoded stereo is averaged) or 2. Files are written as frames arrive and closed
    when the track ends; :attr:`paths` lists them per user.
    """

    def __init__(self, directory: str | os.PathLike[str], *, channels: int = 1) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels!r}")
        self.directory = Path(directory)
        self.channels = channels
        self.paths: dict[str, list[Path]] = {}
        self._open: dict[str, wave.Wave_write] = {}

    def track_started(self, user_id: str, kind: Kind) -> None:
        if kind != "audio" or user_id in self._open:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        done = self.paths.setdefault(user_id, [])
        name = f"{user_id}.wav" if not done else f"{user_id}-{len(done) + 1}.wav"
        path = self.directory / name
        w = wave.open(str(path), "wb")  # noqa: SIM115 - closed in track_ended / close
        w.setnchannels(self.channels)
        w.setsampwidth(2)
        w.setframerate(48000)
        done.append(path)
        self._open[user_id] = w
        log.info("recording %s to %s", user_id, path)

    def frame(self, user_id: str, kind: Kind, frame: Any) -> None:
        w = self._open.get(user_id)
        if kind != "audio" or w is None:
            return
        if frame.format.name != "s16" or frame.sample_rate != 48000:
            return  # aiortc's decoder always gives s16 48 kHz; anything else is not ours
        pcm = frame.to_ndarray().reshape(-1)
        chans = len(frame.layout.channels)
        if frame.format.is_planar:
            pcm = pcm.reshape(chans, -1).T.reshape(-1)
        pcm = pcm.reshape(-1, chans)
        if self.channels == 1:
            out = pcm.mean(axis=1).round().astype("<i2")
        else:
            out = (pcm if chans == 2 else np.repeat(pcm[:, :1], 2, axis=1)).astype("<i2")
        w.writeframes(out.tobytes())

    def track_ended(self, user_id: str, kind: Kind) -> None:
        if kind != "audio":
            return
        w = self._open.pop(user_id, None)
        if w is not None:
            with contextlib.suppress(OSError):
                w.close()

    def close(self) -> None:
        """Close every open file (the media session does it when the call ends)."""
        for user_id in list(self._open):
            self.track_ended(user_id, "audio")
