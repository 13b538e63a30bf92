"""Reading audio for the models: mono, float32, at the model's sample rate."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {reason}")


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
