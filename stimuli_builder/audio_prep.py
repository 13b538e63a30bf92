"""Prepare study audio: resample, loudness-normalise, limit true peak, fade, encode.

Every clip a participant hears goes through :func:`prepare` so clips differ in
content, not in level: loudness (ITU-R BS.1770, via pyloudnorm) is set to the
study target, then the gain is lowered if the 4x-oversampled true peak would
exceed the ceiling (a plain gain reduction rather than a limiter, so nothing is
distorted; ``stimuli-builder check`` reports clips left below target).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy import signal

from artifact_schemas.errors import AudioError

# libsndfile containers and subtypes per study format. 16-bit PCM is transparent at
# listening-test levels and keeps FLAC files small; MP3 uses libsndfile's LAME encoder.
_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
SILENCE_DBFS = -60.0
# A source with this fraction of samples at full scale was clipped before it reached us.
CLIPPED_FRACTION = 0.001
MIN_SECONDS = 0.5  # BS.1770 gating needs 400 ms blocks


@dataclass(frozen=True)
class AudioSpec:
    sample_rate: int
    format: str
    loudness_lufs: float
    true_peak_dbtp: float
    fade_ms: float


@dataclass(frozen=True)
class PreparedClip:
    data: bytes
    duration_s: float
    loudness_lufs: float
    true_peak_dbtp: float


def read_source(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to mono float64 at ``sample_rate``; reject silent or clipped audio."""
    try:
        audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(path, f"unreadable or corrupt audio ({exc})") from exc
    if audio.shape[0] < MIN_SECONDS * sr:
        raise AudioError(path, f"shorter than {MIN_SECONDS} s ({audio.shape[0] / sr:.2f} s)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak == 0 or 20 * np.log10(peak) < SILENCE_DBFS:
        raise AudioError(path, f"silent (peak below {SILENCE_DBFS:.0f} dBFS)")
    clipped = float(np.mean(np.abs(audio) >= 0.999))
    if clipped > CLIPPED_FRACTION:
        raise AudioError(path, f"clipped: {clipped:.2%} of samples at full scale")
    mono = audio.mean(axis=1)
    return resample(mono, sr, sample_rate)


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return audio
    g = gcd(sr_from, sr_to)
    return signal.resample_poly(audio, sr_to // g, sr_from // g, axis=0)


def true_peak_dbtp(audio: np.ndarray) -> float:
    """True peak (dBTP) by 4x polyphase oversampling, as BS.1770-4 Annex 2 describes."""
    over = signal.resample_poly(audio, 4, 1, axis=0)
    peak = float(np.abs(over).max())
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float:
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio))


def prepare(audio: np.ndarray, spec: AudioSpec, *, normalise: bool = True, source: str = "") -> PreparedClip:
    """Level, fade and encode ``audio`` (mono ``[n]`` or stereo ``[n, 2]``, at the study rate).

    ``normalise=False`` keeps the level (calibrated screening stimuli) and only
    fades and encodes.
    """
    return finish(level(audio, spec, normalise=normalise, source=source), spec)


def level(audio: np.ndarray, spec: AudioSpec, *, normalise: bool = True, source: str = "") -> np.ndarray:
    """``audio`` at the study loudness, under the true-peak ceiling (unchanged without ``normalise``)."""
    audio = np.array(audio, dtype=np.float64)
    if normalise:
        current = loudness_lufs(audio, spec.sample_rate)
        if not np.isfinite(current):
            raise AudioError(source or "<generated>", "too quiet to measure loudness")
        audio = audio * 10 ** ((spec.loudness_lufs - current) / 20)
        excess = true_peak_dbtp(audio) - spec.true_peak_dbtp
        if excess > 0:
            audio = audio * 10 ** (-excess / 20)
    return audio


def finish(audio: np.ndarray, spec: AudioSpec, dither: np.random.Generator | None = None) -> PreparedClip:
    """Fade and encode levelled audio; with ``dither``, add TPDF dither of one 16-bit step.

    The dither makes the bytes of one source differ between trials (a participant could
    otherwise spot the baseline shared by every steering trial of a list by its bytes,
    issue 16.3) at about -96 dBFS, below anything audible and without changing loudness.
    """
    audio = _fade(audio, spec.sample_rate, spec.fade_ms)
    if dither is not None:
        step = 1 / 32768
        audio = audio + step * (dither.random(audio.shape) - dither.random(audio.shape))
    data = encode(audio, spec)
    return PreparedClip(
        data=data,
        duration_s=round(audio.shape[0] / spec.sample_rate, 4),
        loudness_lufs=round(loudness_lufs(audio, spec.sample_rate), 2),
        true_peak_dbtp=round(true_peak_dbtp(audio), 2),
    )


def encode(audio: np.ndarray, spec: AudioSpec) -> bytes:
    container, subtype = _FORMATS[spec.format]
    buf = io.BytesIO()
    sf.write(buf, audio, spec.sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


#: The format of the clips a trial compares (its candidates): uncompressed, so one length
#: is one byte size and no field of a file tells how well its audio compressed (issue 34).
COMPARED_FORMAT = "wav"


def _fade(audio: np.ndarray, sample_rate: int, fade_ms: float) -> np.ndarray:
    # Raised-cosine ramps avoid the clicks that cut-out example clips otherwise start with.
    n = min(int(sample_rate * fade_ms / 1000), audio.shape[0] // 2)
    if n == 0:
        return audio
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    if audio.ndim == 2:
        ramp = ramp[:, None]
    audio = audio.copy()
    audio[:n] *= ramp
    audio[-n:] *= ramp[::-1]
    return audio
