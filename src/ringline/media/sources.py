"""What a Python call member sends: audio and video sources as aiortc tracks.

Every source here is a :class:`aiortc.MediaStreamTrack` that paces itself in real
time and never ends on its own (a WAV file that is over, or a generator that is
exhausted, continues with silence), so a member that has nothing more to say still
looks alive to the others' network-quality meters.

* audio: :class:`ToneTrack` (a sine), :class:`FileAudioTrack` (a WAV or any file
  FFmpeg reads), :class:`GeneratorAudioTrack` (PCM from an async iterator);
* video: :class:`PatternVideoTrack` (a moving test pattern),
  :class:`GeneratorVideoTrack` (frames from an async iterator).

Audio frames are 20 ms of 48 kHz mono signed 16-bit PCM (960 samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = [
    "AUDIO_FRAME_SAMPLES",
    "AUDIO_RATE",
    "FileAudioTrack",
    "GeneratorAudioTrack",
    "GeneratorVideoTrack",
    "PatternVideoTrack",
    "ToneTrack",
    "audio_frame",
    "silence_like",
]

AUDIO_RATE: Final = 48000
AUDIO_FRAME_SAMPLES: Final = 960  # 20 ms
_AUDIO_TIME_BASE: Final = fractions.Fraction(1, AUDIO_RATE)
_VIDEO_CLOCK: Final = 90000
_VIDEO_TIME_BASE: Final = fractions.Fraction(1, _VIDEO_CLOCK)
_FRAME_BYTES: Final = AUDIO_FRAME_SAMPLES * 2


def audio_frame(pcm: npt.NDArray[np.int16], pts: int) -> av.AudioFrame:
    """An ``av.AudioFrame`` of mono 48 kHz s16 samples stamped at ``pts`` (in samples)."""
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = _AUDIO_TIME_BASE
    return frame


def silence_like(frame: av.AudioFrame) -> av.AudioFrame:
    """A frame of silence with the format, layout, length and timing of ``frame``."""
    out = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    for plane in out.planes:
        plane.update(bytes(plane.buffer_size))
    out.sample_rate = frame.sample_rate
    out.pts = frame.pts
    out.time_base = frame.time_base
    return out


class _PacedAudio(MediaStreamTrack):
    """Base of the audio sources: 20 ms frames released in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0

    def _next_pcm(self) -> npt.NDArray[np.int16]:
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += AUDIO_FRAME_SAMPLES
            wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return audio_frame(self._next_pcm(), self._pts)


class ToneTrack(_PacedAudio):
    """A sine of ``frequency`` Hz at ``amplitude`` (0..1 of full scale); the default
    audio of ``media=True``. Its level is ``amplitude / sqrt(2)``."""

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        # One period-aligned second, cycled: exact phase continuity for integer Hz.
        t = np.arange(AUDIO_RATE, dtype=np.float64) / AUDIO_RATE
        wave = amplitude * np.sin(2.0 * math.pi * frequency * t)
        self._table = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
        self._pos = 0

    def _next_pcm(self) -> npt.NDArray[np.int16]:
        i = self._pos
        self._pos = (i + AUDIO_FRAME_SAMPLES) % AUDIO_RATE
        return self._table[i : i + AUDIO_FRAME_SAMPLES]


def _decode_to_pcm(path: str) -> npt.NDArray[np.int16]:
    """All of ``path``'s first audio stream as 48 kHz mono s16 (blocking)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
    chunks: list[npt.NDArray[np.int16]] = []
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


class FileAudioTrack(_PacedAudio):
    """Plays an audio file (WAV, or anything FFmpeg decodes), then silence, or from
    the start again when ``loop`` is true. The file is decoded when the track is
    made (raises ``FileNotFoundError`` / ``av.error.FFmpegError`` then), so keep it
    short: a greeting, a prompt."""

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.loop = loop
        self._pcm = _decode_to_pcm(self.path)
        self._pos = 0

    @property
    def duration(self) -> float:
        """Length of the file in seconds."""
        return len(self._pcm) / AUDIO_RATE

    @property
    def finished(self) -> bool:
        """True once the whole file was played (never when looping)."""
        return not self.loop and self._pos >= len(self._pcm)

    def _next_pcm(self) -> npt.NDArray[np.int16]:
        out = np.zeros(AUDIO_FRAME_SAMPLES, dtype=np.int16)
        n = len(self._pcm)
        filled = 0
        while filled < AUDIO_FRAME_SAMPLES and n:
            if self._pos >= n:
                if not self.loop:
                    break
                self._pos = 0
            take = min(AUDIO_FRAME_SAMPLES - filled, n - self._pos)
            out[filled : filled + take] = self._pcm[self._pos : self._pos + take]
            filled += take
            self._pos += take
        return out


class GeneratorAudioTrack(_PacedAudio):
    """Audio pulled from an async iterator of PCM chunks of any length.

    Each item is ``bytes`` (signed 16-bit little-endian mono at 48 kHz), a numpy
    array (``int16``, or float in -1..1; mono at 48 kHz) or an ``av.AudioFrame`` (any
    format and rate, converted). A chunk may be any length: the track re-cuts the
    stream into 20 ms frames and plays it in real time. The iterator is read ahead
    by at most ``buffer`` seconds, so a generator faster than real time (text to
    speech, a file) is slowed down to it; when it is late or exhausted the track
    plays silence.
    """

    def __init__(self, source: AsyncIterable[Any], *, buffer: float = 1.0) -> None:
        super().__init__()
        self._source = source
        self._buf = bytearray()
        self._max = int(buffer * AUDIO_RATE) * 2
        self._space = asyncio.Event()
        self._space.set()
        self._pump: asyncio.Task[None] | None = None
        self._resampler: Any = None
        self.exhausted = False

    async def recv(self) -> av.AudioFrame:
        if self._pump is None and self.readyState == "live":
            self._pump = asyncio.create_task(self._fill(), name="ringline-audio-generator")
        return await super().recv()

    def _next_pcm(self) -> npt.NDArray[np.int16]:
        chunk = bytes(self._buf[:_FRAME_BYTES])
        del self._buf[:_FRAME_BYTES]
        if len(self._buf) < self._max:
            self._space.set()
        if len(chunk) < _FRAME_BYTES:
            chunk += bytes(_FRAME_BYTES - len(chunk))
        return np.frombuffer(chunk, dtype="<i2").astype(np.int16)

    def _to_bytes(self, item: Any) -> bytes:
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        if isinstance(item, av.AudioFrame):
            if self._resampler is None:
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            return b"".join(f.to_ndarray().astype("<i2").tobytes() for f in self._resampler.resample(item))
        a = np.asarray(item)
        if np.issubdtype(a.dtype, np.floating):
            a = np.round(np.clip(a, -1.0, 1.0) * 32767)
        return a.astype("<i2").reshape(-1).tobytes()

    async def _fill(self) -> None:
        try:
            async for item in self._source:
                self._buf += self._to_bytes(item)
                while len(self._buf) >= self._max:
                    self._space.clear()
                    await self._space.wait()
        finally:
            self.exhausted = True

    def stop(self) -> None:
        super().stop()
        if self._pump is not None:
            self._pump.cancel()
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None and self._pump is None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(aclose())


def _pattern_frames(width: int, height: int, count: int) -> list[npt.NDArray[np.uint8]]:
    """Colour bars with a white bar sweeping across: every frame differs."""
    colours = np.array(
        [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255]],
        dtype=np.uint8,
    )
    cols = (np.arange(width) * len(colours) // width).astype(np.intp)
    base = np.broadcast_to(colours[cols][np.newaxis, :, :], (height, width, 3)).copy()
    frames = []
    bar = max(4, width // 16)
    for i in range(count):
        img = base.copy()
        x = (i * (width - bar)) // max(1, count - 1)
        img[:, x : x + bar] = 255
        img[height * 3 // 4 :, :] = (i * 255 // max(1, count - 1)) & 0xFF
        frames.append(img)
    return frames


class _PacedVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, fps: float) -> None:
        super().__init__()
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = fps
        self._start: float | None = None
        self._n = 0

    async def _stamp(self, frame: av.VideoFrame) -> av.VideoFrame:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._n += 1
            wait = self._start + self._n / self.fps - now
            if wait > 0:
                await asyncio.sleep(wait)
        # Wall-clock timestamps: right even when a generator is late or repeats.
        frame.pts = round((time.monotonic() - self._start) * _VIDEO_CLOCK)
        frame.time_base = _VIDEO_TIME_BASE
        return frame


class PatternVideoTrack(_PacedVideo):
    """A moving test pattern, ``width`` x ``height`` at ``fps``; the default video of
    ``media=True``. Frames are rendered once and cycled (one cycle = 2 s)."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0) -> None:
        super().__init__(fps)
        self.width, self.height = width, height
        self._frames = _pattern_frames(width, height, max(2, round(2 * fps)))
        self._i = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        img = self._frames[self._i % len(self._frames)]
        self._i += 1
        return await self._stamp(av.VideoFrame.from_ndarray(img, format="rgb24"))


class GeneratorVideoTrack(_PacedVideo):
    """Video frames from an async iterator, at most ``fps`` per second.

    Items are ``av.VideoFrame`` or numpy arrays of shape (height, width, 3), dtype
    uint8, RGB. When the iterator is exhausted the last frame is repeated once a
    second so the picture stays up.
    """

    def __init__(self, source: AsyncIterable[Any], *, fps: float = 15.0) -> None:
        super().__init__(fps)
        self._it: AsyncIterator[Any] = aiter(source)
        self._last: Any = None
        self.exhausted = False

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item: Any = None
        if not self.exhausted:
            try:
                item = await anext(self._it)
            except StopAsyncIteration:
                self.exhausted = True
        if item is None:
            item = np.zeros((240, 320, 3), dtype=np.uint8) if self._last is None else self._last
            await asyncio.sleep(1.0)
        self._last = item
        if isinstance(item, av.VideoFrame):
            frame = av.VideoFrame.from_ndarray(item.to_ndarray(format="rgb24"), format="rgb24")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item, dtype=np.uint8), format="rgb24")
        return await self._stamp(frame)
