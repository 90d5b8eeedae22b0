"""Real audio and video for the Python SDK (the ``media`` extra: aiortc + numpy).

``CallEngine(url, media=True)`` sends a test tone (and a test pattern in video
calls) and measures what it receives; ``CallEngine(url, media=MediaOptions(...))``
chooses the sources and sinks. See docs/media-python.md.

The pure parts (:mod:`.levels`, :mod:`.quality`) need only numpy; importing this
package imports aiortc.

Layers: this package depends on :mod:`ringline.core` only. The client sits above it: the
engine drives a :class:`MediaSession` per call through ``ringline.client._media_link``,
imported only when ``media=`` asks for it.
"""

from .levels import LevelMeter, rms_level, volume_from_level
from .options import AudioSource, IceTransportPolicy, MediaOptions, TestPattern, TestTone, VideoSource
from .quality import LinkStats, QualitySample, QualityTracker, grade, link_stats
from .session import MediaSession, PeerStats, ice_configuration
from .sinks import FrameSink, Kind, MediaSink, WavRecorder
from .sources import (
    FileAudioTrack,
    GeneratorAudioTrack,
    GeneratorVideoTrack,
    PatternVideoTrack,
    ToneTrack,
)

__all__ = [
    "AudioSource",
    "FileAudioTrack",
    "FrameSink",
    "GeneratorAudioTrack",
    "GeneratorVideoTrack",
    "IceTransportPolicy",
    "Kind",
    "LevelMeter",
    "LinkStats",
    "MediaOptions",
    "MediaSession",
    "MediaSink",
    "PatternVideoTrack",
    "PeerStats",
    "QualitySample",
    "QualityTracker",
    "TestPattern",
    "TestTone",
    "ToneTrack",
    "VideoSource",
    "WavRecorder",
    "grade",
    "ice_configuration",
    "link_stats",
    "rms_level",
    "volume_from_level",
]
