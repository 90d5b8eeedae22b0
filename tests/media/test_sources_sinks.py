"""Sources make paced 20 ms frames of the right level; sinks get what was decoded."""

from __future__ import annotations

import asyncio
import math
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from ringline.media import (
    FileAudioTrack,
    FrameSink,
    GeneratorAudioTrack,
    GeneratorVideoTrack,
    PatternVideoTrack,
    ToneTrack,
    WavRecorder,
    rms_level,
)
from ringline.media.sources import AUDIO_FRAME_SAMPLES, AUDIO_RATE, audio_frame, silence_like


def pcm(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def sine(amplitude: float, seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)


async def test_tone_track_sends_20ms_mono_frames_at_its_level() -> None:
    track = ToneTrack(frequency=440, amplitude=0.5)
    frames = [await track.recv() for _ in range(5)]
    assert [f.samples for f in frames] == [AUDIO_FRAME_SAMPLES] * 5
    assert {f.sample_rate for f in frames} == {AUDIO_RATE}
    assert [f.pts for f in frames] == [i * AUDIO_FRAME_SAMPLES for i in range(5)]
    assert rms_level(np.concatenate([pcm(f) for f in frames])) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    track.stop()


async def test_file_track_plays_a_wav_of_another_rate_then_silence(tmp_path: Path) -> None:
    path = tmp_path / "greeting.wav"
    write_wav(path, sine(0.4, 0.1, 22050), 22050)
    track = FileAudioTrack(path)
    assert track.duration == pytest.approx(0.1, abs=0.01)
    played = [pcm(await track.recv()) for _ in range(5)]
    assert rms_level(np.concatenate(played)[:4000]) == pytest.approx(0.4 / math.sqrt(2), rel=0.05)
    after = [pcm(await track.recv()) for _ in range(3)]
    assert track.finished
    assert rms_level(np.concatenate(after)) == 0.0
    track.stop()


async def test_file_track_loops_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "loop.wav"
    write_wav(path, sine(0.4, 0.04, 48000), 48000)  # two frames
    track = FileAudioTrack(path, loop=True)
    levels = [rms_level(pcm(await track.recv())) for _ in range(6)]
    assert min(levels) > 0.2 and not track.finished
    track.stop()


async def test_generator_track_recuts_chunks_of_any_length_then_plays_silence() -> None:
    chunk = sine(0.5, 0.05, 48000)  # 2400 samples = 2.5 frames

    async def speech() -> AsyncIterator[object]:
        yield chunk[:1000].tobytes()
        yield chunk[1000:2000]
        yield chunk[2000:].astype(np.float32) / 32767

    track = GeneratorAudioTrack(speech())
    got = np.concatenate([pcm(await track.recv()) for _ in range(3)])
    # the first frame may be silence if the generator had not run yet; the sine comes whole and in order
    start = int(np.flatnonzero(got)[0]) - 1 if np.any(got) else 0
    got = np.concatenate([got, *[pcm(await track.recv()) for _ in range(3)]])
    np.testing.assert_allclose(got[start : start + 2400], chunk, atol=1)
    assert rms_level(got[start + 2400 :]) == 0.0
    assert track.exhausted
    track.stop()


async def test_generator_track_accepts_av_frames_of_other_rates() -> None:
    frame = av.AudioFrame.from_ndarray(sine(0.5, 0.1, 16000).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 16000

    async def frames() -> AsyncIterator[object]:
        yield frame

    track = GeneratorAudioTrack(frames())
    got = np.concatenate([pcm(await track.recv()) for _ in range(8)])
    assert rms_level(got[np.flatnonzero(got)[0] : np.flatnonzero(got)[-1]]) > 0.3
    track.stop()


async def test_pattern_video_moves_and_has_the_asked_size() -> None:
    track = PatternVideoTrack(width=320, height=240, fps=30)
    a, b = await track.recv(), await track.recv()
    assert (a.width, a.height) == (320, 240)
    assert a.pts is not None and b.pts is not None and b.pts > a.pts
    assert not np.array_equal(a.to_ndarray(format="rgb24"), b.to_ndarray(format="rgb24"))
    track.stop()


async def test_generator_video_takes_numpy_frames() -> None:
    async def frames() -> AsyncIterator[np.ndarray]:
        for i in range(2):
            yield np.full((48, 64, 3), i * 100, dtype=np.uint8)

    track = GeneratorVideoTrack(frames(), fps=50)
    f0, f1 = await track.recv(), await track.recv()
    assert (f0.width, f0.height) == (64, 48)
    assert int(f1.to_ndarray(format="rgb24")[0, 0, 0]) == 100
    track.stop()


def test_silence_like_keeps_shape_and_timing() -> None:
    f = audio_frame(sine(0.5, 0.02, 48000), pts=1920)
    s = silence_like(f)
    assert (s.samples, s.sample_rate, s.pts, s.format.name) == (960, 48000, 1920, "s16")
    assert not np.any(pcm(s))


def decoded_like(samples: np.ndarray) -> av.AudioFrame:
    """What aiortc's Opus decoder hands out: s16, packed stereo, 48 kHz."""
    stereo = np.repeat(samples, 2).reshape(1, -1)
    f = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    f.sample_rate = 48000
    return f


def test_wav_recorder_writes_each_user_to_its_own_file(tmp_path: Path) -> None:
    rec = WavRecorder(tmp_path / "rec")
    tone = sine(0.5, 0.02, 48000)
    rec.track_started("bob", "audio")
    rec.track_started("bob", "video")  # ignored
    for _ in range(3):
        rec.frame("bob", "audio", decoded_like(tone))
    rec.frame("carol", "audio", decoded_like(tone))  # not started: ignored
    rec.track_ended("bob", "audio")
    rec.track_started("bob", "audio")
    rec.close()
    assert [p.name for p in rec.paths["bob"]] == ["bob.wav", "bob-2.wav"]
    with wave.open(str(rec.paths["bob"][0])) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 48000, 3 * 960)
        data = np.frombuffer(w.readframes(960), dtype="<i2")
    np.testing.assert_array_equal(data, tone)


async def test_frame_sink_iterates_until_the_track_ends_and_drops_the_oldest() -> None:
    sink = FrameSink(max_frames=3)
    waiter = asyncio.create_task(sink.wait_track("bob", "audio", timeout=5))
    sink.track_started("bob", "audio")
    await waiter
    for i in range(5):
        sink.frame("bob", "audio", i)
    sink.track_ended("bob", "audio")
    assert [f async for f in sink.frames("bob", "audio")] == [2, 3, 4]
    assert sink.dropped == 2


def write_video(path: Path, frames: int = 10) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), i * 20, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


async def test_media_options_sources_resolve_to_tracks(tmp_path: Path) -> None:
    from ringline.media import TestPattern, TestTone
    from ringline.media.session import _audio_track, _video_track

    wav = tmp_path / "a.wav"
    write_wav(wav, sine(0.3, 0.1, 8000), 8000)
    video = tmp_path / "v.mp4"
    write_video(video)

    async def gen() -> AsyncIterator[bytes]:
        yield bytes(1920)

    mine = ToneTrack()
    assert isinstance(_audio_track(TestTone(), False), ToneTrack)
    assert isinstance(_audio_track(str(wav), False), FileAudioTrack)
    assert isinstance(_audio_track(wav, True), FileAudioTrack)
    assert isinstance(_audio_track(gen(), False), GeneratorAudioTrack)
    assert isinstance(_audio_track(gen, False), GeneratorAudioTrack)  # a callable: fresh per call
    assert _audio_track(mine, False) is mine
    assert _audio_track(None, False) is None
    assert isinstance(_video_track(TestPattern(32, 24, 5)), PatternVideoTrack)
    assert _video_track(None) is None
    played = _video_track(video)  # a file, played in a loop by aiortc's MediaPlayer
    assert played is not None
    frame = await asyncio.wait_for(played.recv(), timeout=10)
    assert isinstance(frame, av.VideoFrame)
    assert (frame.width, frame.height) == (64, 48)
    played.stop()
    with pytest.raises(TypeError, match=r"MediaOptions\.audio"):
        _audio_track(42, False)
    with pytest.raises(FileNotFoundError):
        _audio_track(tmp_path / "missing.wav", False)
    mine.stop()
