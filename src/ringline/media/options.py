"""``MediaOptions``: what a Python call member sends and where what it receives goes.

Importing this module does not import aiortc: ``CallEngine`` can name the type
without the ``media`` extra installed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .sinks import MediaSink

__all__ = ["AudioSource", "IceTransportPolicy", "MediaOptions", "TestPattern", "TestTone", "VideoSource"]

#: ``"all"``: any candidate (host, STUN, TURN); ``"relay"``: media only through TURN.
IceTransportPolicy = Literal["all", "relay"]


@dataclass(frozen=True, slots=True)
class TestTone:
    """A sine of ``frequency`` Hz at ``amplitude`` (0..1 of full scale): the default audio."""

    __test__ = False  # not a pytest test class

    frequency: float = 440.0
    amplitude: float = 0.3


@dataclass(frozen=True, slots=True)
class TestPattern:
    """Moving colour bars, ``width`` x ``height`` at ``fps``: the default video."""

    __test__ = False

    width: int = 640
    height: int = 480
    fps: float = 15.0


#: An audio source: a test tone, a file path (WAV or anything FFmpeg reads), an async
#: iterator of PCM chunks, an aiortc ``MediaStreamTrack``, a zero-argument callable
#: returning one of these (called for each call), or ``None`` (send nothing).
AudioSource = TestTone | str | os.PathLike[str] | AsyncIterable[Any] | Callable[[], Any] | Any | None
#: A video source: a test pattern, a video file path, an async iterator of frames, an
#: aiortc ``MediaStreamTrack``, a zero-argument callable returning one, or ``None``.
VideoSource = TestPattern | str | os.PathLike[str] | AsyncIterable[Any] | Callable[[], Any] | Any | None


@dataclass(frozen=True, kw_only=True)
class MediaOptions:
    """Media of a ``CallEngine``: ``CallEngine(url, media=MediaOptions(...))``.

    ``audio``: what this member says (default: a 440 Hz test tone). A WAV path plays
    once and then sends silence (``audio_loop=True`` repeats it). An async iterator
    yields PCM chunks (see :class:`~ringline.media.sources.GeneratorAudioTrack`). A
    generator or track can serve one call only: pass a callable that makes a fresh
    one (``audio=lambda: my_generator()``) for an engine that takes several calls.
    ``None`` sends silence (the others still get your network quality).

    ``video``: what this member shows in video calls (default: a test pattern); a
    path is played with FFmpeg in a loop; ``None`` sends no video.

    ``sink``: one :class:`~ringline.media.sinks.MediaSink` or several, given the
    decoded audio and video of each remote user (``FrameSink``, ``WavRecorder``).
    Levels, quality and availability are measured whether or not there is a sink.

    ``volume_interval`` (s) is how often ``on_user_voice_volume_changed`` fires
    (the contract says every 0.2-0.5 s).

    ``ice_transport_policy``: ``"relay"`` sends media only through the TURN servers
    the server announces, even when the server's own policy (``ice_transport_policy``
    of the login result, ``ringline serve --ice-transport-policy``) is ``"all"``;
    ``None`` or ``"all"`` follows the server. The stricter of the two wins: an app
    cannot undo a server's ``relay``.
    """

    audio: AudioSource = field(default_factory=TestTone)
    video: VideoSource = field(default_factory=TestPattern)
    sink: MediaSink | Sequence[MediaSink] | None = None
    audio_loop: bool = False
    volume_interval: float = 0.3
    ice_transport_policy: IceTransportPolicy | None = None

    def __post_init__(self) -> None:
        if self.ice_transport_policy not in (None, "all", "relay"):
            raise ValueError(
                f"ice_transport_policy must be None, 'all' or 'relay', got {self.ice_transport_policy!r}"
            )
        if not 0.05 <= self.volume_interval <= 5.0:
            raise ValueError(f"volume_interval must be 0.05..5 seconds, got {self.volume_interval!r}")

    @property
    def sinks(self) -> list[MediaSink]:
        """The sinks as a list (empty when there is none)."""
        if self.sink is None:
            return []
        if isinstance(self.sink, Sequence):
            return list(self.sink)
        return [self.sink]
