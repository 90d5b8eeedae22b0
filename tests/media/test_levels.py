"""Volume: linear RMS of the last ~150 ms relative to full scale, round(100 x level)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ringline.media.levels import LEVEL_WINDOW, LevelMeter, frame_energy, rms_level, volume_from_level


def sine(amplitude: float, n: int = 960, freq: float = 1000.0, rate: int = 48000) -> np.ndarray:
    t = np.arange(n) / rate
    return np.round(amplitude * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)


def test_silence_is_level_zero_and_volume_zero() -> None:
    assert rms_level(np.zeros(960, dtype=np.int16)) == 0.0
    assert volume_from_level(0.0) == 0


def test_full_scale_square_wave_is_level_one() -> None:
    square = np.array([32767, -32768] * 480, dtype=np.int16)
    assert rms_level(square) == pytest.approx(1.0, abs=1e-4)
    assert volume_from_level(rms_level(square)) == 100


def test_sine_level_is_amplitude_over_root_two() -> None:
    assert rms_level(sine(0.5)) == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert volume_from_level(rms_level(sine(0.5))) == 35


def test_float_samples_are_taken_as_they_are() -> None:
    x = sine(0.3).astype(np.float32) / 32767
    assert rms_level(x) == pytest.approx(0.3 / math.sqrt(2), rel=1e-3)


def test_level_is_clipped_to_one_and_volume_to_100() -> None:
    assert rms_level(np.full(10, 3.0)) == 1.0
    assert volume_from_level(7.0) == 100
    assert volume_from_level(float("nan")) == 0
    assert volume_from_level(-0.5) == 0


def test_mono_upmixed_to_stereo_at_minus_3_db_reads_as_the_mono_signal() -> None:
    mono = sine(0.4).astype(np.float64) / 32767
    stereo = np.repeat(mono / math.sqrt(2), 2)  # interleaved L/R, -3 dB each
    assert rms_level(stereo, channels=2) == pytest.approx(rms_level(mono), rel=1e-6)


def test_empty_input_has_no_energy() -> None:
    assert frame_energy(np.zeros(0, dtype=np.int16)) == (0.0, 0)
    assert rms_level([]) == 0.0


def test_meter_forgets_frames_older_than_its_window() -> None:
    m = LevelMeter()
    loud, quiet = sine(0.8), np.zeros(960, dtype=np.int16)
    for i in range(10):
        m.add(loud, now=i * 0.02)
    assert m.volume(0.2) == round(100 * 0.8 / math.sqrt(2))
    t = 0.2
    for _ in range(10):
        t += 0.02
        m.add(quiet, now=t)
    assert m.volume(t) == 0
    assert m.level(t + LEVEL_WINDOW + 1) == 0.0


def test_meter_averages_power_over_the_window() -> None:
    m = LevelMeter(window=1.0)
    m.add(np.full(100, 16384, dtype=np.int16), now=0.0)  # level 0.5
    m.add(np.zeros(100, dtype=np.int16), now=0.01)
    assert m.level(0.02) == pytest.approx(math.sqrt(0.125), rel=1e-6)
    m.reset()
    assert m.level(0.02) == 0.0
