"""Cutting example clips from source audio: window around a peak, fades, loudness."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf

from sae_core.audio import AudioError, write_audio

_FADE_S = 0.02
_PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS


def clip_bounds(peak_s: float, window_s: float, duration_s: float) -> tuple[float, float]:
    """A ``window_s`` span centred on ``peak_s``, shifted to lie inside the track."""
    window_s = min(window_s, duration_s)
    start = min(max(0.0, peak_s - window_s / 2), duration_s - window_s)
    return start, start + window_s


def loudness_normalise(audio: np.ndarray, sr: int, target_lufs: float) -> tuple[np.ndarray, float]:
    """Gain to ``target_lufs`` (ITU-R BS.1770 via pyloudnorm), then down to a -1 dBFS peak.

    Returns the audio and its measured loudness after processing. Clips shorter than the
    400 ms gating block are measured on a looped copy; silent clips are returned unchanged.
    """
    meter = pyloudnorm.Meter(sr)
    short = len(audio) < int(0.4 * sr)
    probe = np.tile(audio, math.ceil(0.4 * sr / max(len(audio), 1))) if short else audio
    loudness = meter.integrated_loudness(probe)
    if not np.isfinite(loudness):
        return audio, float("-inf")
    out = audio * 10 ** ((target_lufs - loudness) / 20)
    peak = float(np.max(np.abs(out)))
    if peak > _PEAK_CEILING:
        out = out * (_PEAK_CEILING / peak)
    return out, float(meter.integrated_loudness(out if len(out) >= int(0.4 * sr) else probe))


def cut_clip(
    source: str | Path,
    peak_s: float,
    window_s: float,
    out: str | Path,
    target_lufs: float = -23.0,
    audio_format: str = "flac",
) -> tuple[float, float]:
    """Write the window around ``peak_s`` of ``source`` to ``out``; return (start_s, end_s)."""
    try:
        info = sf.info(str(source))
        duration = info.frames / info.samplerate
        start, end = clip_bounds(peak_s, window_s, duration)
        audio, sr = sf.read(
            str(source),
            start=round(start * info.samplerate),
            stop=round(end * info.samplerate),
            dtype="float64",
            always_2d=True,
        )
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(source, f"cannot cut a clip ({exc})") from exc
    mono = audio.mean(axis=1)
    fade = min(int(_FADE_S * sr), len(mono) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        mono[:fade] *= ramp
        mono[-fade:] *= ramp[::-1]
    mono, _ = loudness_normalise(mono, sr, target_lufs)
    write_audio(out, mono.astype(np.float32), sr, audio_format)
    return start, end
