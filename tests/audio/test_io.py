"""load_audio: decoding, mono mixing, resampling, errors. Files are written by the tests."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile

from data2vec.audio.io import load_audio

FILE_RATE = 44100
TARGET_RATE = 16000


def stereo_sweep(seconds: float = 0.5) -> np.ndarray:
    """(frames, 2) at 44.1 kHz: a 100 Hz -> 6 kHz linear sweep, right channel at half level."""
    t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
    phase = 2 * np.pi * (100 * t + 0.5 * (6000 - 100) / seconds * t**2)
    left = 0.5 * np.sin(phase)
    return np.stack([left, 0.5 * left], axis=1)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), d=1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_stereo_44k_file_becomes_mono_16k(tmp_path, suffix):
    sweep = stereo_sweep()
    path = tmp_path / f"sweep.{suffix}"
    soundfile.write(path, sweep, FILE_RATE)
    waveform = load_audio(path)
    assert waveform.dtype == np.float32
    assert waveform.ndim == 1
    expected_length = len(sweep) * TARGET_RATE / FILE_RATE
    assert abs(len(waveform) - expected_length) <= 2
    # The mix of a full and a half-level channel carries 3/4 of the sweep's energy scale.
    rms = np.sqrt(np.mean(waveform[200:-200].astype(np.float64) ** 2))
    assert rms == pytest.approx(0.75 * 0.5 / np.sqrt(2), rel=0.03)


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_pure_tone_keeps_its_frequency_and_shape_after_resampling(tmp_path, suffix):
    frames = FILE_RATE  # one second
    tone = 0.4 * np.sin(2 * np.pi * 440.0 * np.arange(frames) / FILE_RATE)
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, np.stack([tone, tone], axis=1), FILE_RATE)
    waveform = load_audio(path, sampling_rate=TARGET_RATE)
    assert len(waveform) == TARGET_RATE
    assert abs(dominant_frequency(waveform, TARGET_RATE) - 440.0) <= 1.0  # 1 Hz FFT bins
    # Away from the edges, the resampled tone is the same sine sampled at 16 kHz.
    expected = 0.4 * np.sin(2 * np.pi * 440.0 * np.arange(TARGET_RATE) / TARGET_RATE)
    np.testing.assert_allclose(waveform[500:-500], expected[500:-500], atol=2e-3)


def test_channels_are_averaged_without_resampling(tmp_path):
    rng = np.random.default_rng(0)
    channels = rng.uniform(-0.9, 0.9, size=(3000, 3))
    path = tmp_path / "three_channels.wav"
    soundfile.write(path, channels, TARGET_RATE, subtype="FLOAT")
    waveform = load_audio(path, sampling_rate=TARGET_RATE)
    np.testing.assert_allclose(waveform, channels.mean(axis=1), atol=1e-6)


def test_other_target_rate(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000), 16000)
    waveform = load_audio(path, sampling_rate=8000)
    assert len(waveform) == 8000
    assert abs(dominant_frequency(waveform, 8000) - 1000.0) <= 1.0


def test_missing_file(tmp_path):
    missing = tmp_path / "nothing_here.wav"
    with pytest.raises(FileNotFoundError, match=r"audio file '.*nothing_here\.wav' does not exist"):
        load_audio(missing)


def test_file_that_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is a text file, not audio\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + r"' could not be decoded"):
        load_audio(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.flac' is empty \(0 bytes\)"):
        load_audio(path)


def test_file_without_samples(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros((0, 2)), FILE_RATE)
    with pytest.raises(ValueError, match=r"silence\.wav' contains no samples"):
        load_audio(path)


def test_folder_and_bad_rate(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_audio(tmp_path)
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        load_audio(tmp_path / "x.wav", sampling_rate=0)
