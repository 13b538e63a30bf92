"""Reading audio for the models: mono, float32, at the model's sample rate."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from artifact_schemas import atomic_path
from artifact_schemas.errors import AudioError, FieldError

__all__ = ["AUDIO_SUFFIXES", "WRITE_FORMATS", "AudioError", "check_write_format", "load_mono", "write_audio"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
# What the stages write: 16-bit PCM, FLAC by default.
WRITE_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode ``path``, mix to mono and resample (polyphase, anti-aliased) to ``sample_rate``."""
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(path, f"unreadable or corrupt audio ({exc})") from exc
    if audio.shape[0] == 0:
        raise AudioError(path, "contains no samples")
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "contains NaN or infinite samples")
    if sr != sample_rate:
        g = gcd(sr, sample_rate)
        mono = signal.resample_poly(mono, sample_rate // g, sr // g).astype(np.float32)
    return mono


def check_write_format(audio_format: str) -> None:
    if audio_format not in WRITE_FORMATS:
        raise FieldError("audio_format", f"must be one of {sorted(WRITE_FORMATS)}, got {audio_format!r}")


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, audio_format: str = "flac") -> None:
    """Write mono ``audio`` as 16-bit ``audio_format`` atomically (temp file + rename)."""
    check_write_format(audio_format)
    container, subtype = WRITE_FORMATS[audio_format]
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, format=container, subtype=subtype)
