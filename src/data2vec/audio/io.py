"""Read an audio file into the waveform the audio models expect: mono float32 at 16 kHz."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import soxr

# soxr's "high quality" preset: steep low-pass, well under 16-bit noise level.
RESAMPLING_QUALITY = "HQ"


def load_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Decode `path` (WAV, FLAC, OGG/Vorbis, ... anything libsndfile reads) to a 1-D float32 waveform.

    Channels are averaged to mono, and the audio is resampled with soxr when the file's
    rate differs from `sampling_rate`. Returns `(samples,)` float32, values in [-1, 1] for
    integer PCM files.
    """
    if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"audio file {str(file)!r} does not exist")
    if file.is_dir():
        raise IsADirectoryError(f"{str(file)!r} is a folder; pass the path of an audio file")
    if file.stat().st_size == 0:
        raise ValueError(f"audio file {str(file)!r} is empty (0 bytes)")

    try:
        samples, file_rate = soundfile.read(file, dtype="float32", always_2d=True)  # (frames, channels)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise ValueError(
            f"audio file {str(file)!r} could not be decoded ({error}); load_audio reads the formats of "
            f"libsndfile {soundfile.__libsndfile_version__} (WAV, FLAC, OGG/Vorbis, ...): convert the file "
            "to one of them first (e.g. with ffmpeg)"
        ) from None
    if samples.shape[0] == 0:
        raise ValueError(f"audio file {str(file)!r} contains no samples")

    return resample(samples.mean(axis=1, dtype=np.float32), file_rate, sampling_rate)  # (frames,)


def resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """A 1-D waveform at ``from_rate`` Hz as contiguous float32 at ``to_rate`` Hz (soxr, high quality)."""
    if from_rate != to_rate and len(waveform):
        waveform = soxr.resample(waveform, from_rate, to_rate, quality=RESAMPLING_QUALITY)
    return np.ascontiguousarray(waveform, dtype=np.float32)
