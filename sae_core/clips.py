"""Cutting example clips from source audio: window around a peak, fades, loudness."""

from __future__ import annotations

import math
from pathlib import Path

import librosa
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


def log_mel_distance(a: np.ndarray, b: np.ndarray, sr: int, target_lufs: float = -23.0) -> float:
    """Mean absolute difference (dB) of two clips' log-mel spectrograms (issue 32's steer_db).

    Both are levelled first (``loudness_normalise`` to ``target_lufs``), as the study serves
    them, so a gain alone is no difference; power more than 80 dB under the louder clip's
    peak counts as that floor in both. Used by benchmarks/bench_mini_models.py and by the
    demo's test, so both read steering the same way.
    """

    def levelled(y: np.ndarray) -> np.ndarray:
        y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return loudness_normalise(y, sr, target_lufs)[0].astype(np.float32)

    n_fft = 2 ** round(math.log2(0.064 * sr))  # 1024 at 16 kHz, 2048 at 32 kHz
    a, b = levelled(a), levelled(b)
    n = min(len(a), len(b))
    mels = [
        librosa.feature.melspectrogram(y=y[:n], sr=sr, n_fft=n_fft, hop_length=n_fft // 4, n_mels=64)
        for y in (a, b)
    ]
    floor = max(1e-8 * max(float(s.max()) for s in mels), 1e-20)
    db = [10 * np.log10(np.maximum(s, floor)) for s in mels]
    return float(np.mean(np.abs(db[0] - db[1])))


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
