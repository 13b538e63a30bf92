"""Instrument and drum sounds for the synthetic corpus, by additive synthesis.

Each instrument is a recipe of partials (frequency ratios and amplitudes),
per-partial decay and an amplitude envelope. Additive synthesis keeps pitch
exact at any sample rate (a Karplus-Strong pluck would be detuned by the integer
delay line at high notes) and costs little: a note is a few vectorised sines.
The recipes follow textbook descriptions of each family (e.g. Roads, *The
Computer Music Tutorial*, ch. 4): inharmonic bell partials after Risset, odd/even
drawbar registrations for the organ, 1/n sawtooth-like spectra for bowed strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

INSTRUMENTS = ("piano", "organ", "pluck", "strings", "bell", "flute")


@dataclass(frozen=True)
class _Recipe:
    ratios: tuple[float, ...]  # partial frequency / fundamental
    amps: tuple[float, ...]  # partial amplitudes
    decay: tuple[float, ...]  # per-partial exponential decay rate (1/s); 0 = sustained
    attack_s: float
    release_s: float
    vibrato_hz: float = 0.0
    vibrato_depth: float = 0.0  # fraction of frequency
    tremolo_hz: float = 0.0
    voices: int = 1  # detuned copies (ensemble width)
    breath: float = 0.0  # noise level relative to the tone


def _harmonics(n: int, slope: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    ratios = tuple(float(k) for k in range(1, n + 1))
    return ratios, tuple(1.0 / k**slope for k in range(1, n + 1))


_PIANO_R, _PIANO_A = _harmonics(10, 1.4)
_STRING_R, _STRING_A = _harmonics(14, 1.0)
_PLUCK_R = tuple(float(k) for k in range(1, 13))
# Plucking at 1/5 of the string length suppresses every fifth harmonic.
_PLUCK_A = tuple(abs(np.sin(np.pi * k / 5)) / k for k in range(1, 13))

_RECIPES: dict[str, _Recipe] = {
    "piano": _Recipe(
        # Slight stretching of upper partials, as from string stiffness.
        ratios=tuple(k * np.sqrt(1 + 0.0004 * k * k) for k in _PIANO_R),
        amps=_PIANO_A,
        decay=tuple(1.2 + 0.7 * k for k in _PIANO_R),
        attack_s=0.004,
        release_s=0.25,
    ),
    "organ": _Recipe(
        ratios=(1.0, 2.0, 3.0, 4.0, 6.0, 8.0),
        amps=(1.0, 0.8, 0.6, 0.35, 0.25, 0.2),
        decay=(0.0,) * 6,
        attack_s=0.012,
        release_s=0.04,
        tremolo_hz=6.5,
    ),
    "pluck": _Recipe(
        ratios=_PLUCK_R,
        amps=_PLUCK_A,
        decay=tuple(3.0 + 1.6 * k for k in _PLUCK_R),
        attack_s=0.002,
        release_s=0.08,
    ),
    "strings": _Recipe(
        ratios=_STRING_R,
        amps=_STRING_A,
        decay=(0.0,) * len(_STRING_R),
        attack_s=0.16,
        release_s=0.22,
        vibrato_hz=5.5,
        vibrato_depth=0.004,
        voices=3,
    ),
    "bell": _Recipe(
        ratios=(1.0, 2.76, 5.40, 8.93, 13.34),
        amps=(1.0, 0.6, 0.4, 0.25, 0.15),
        decay=(0.9, 1.6, 2.6, 3.8, 5.0),
        attack_s=0.002,
        release_s=0.6,
    ),
    "flute": _Recipe(
        ratios=(1.0, 2.0, 3.0),
        amps=(1.0, 0.22, 0.07),
        decay=(0.0, 0.0, 0.0),
        attack_s=0.06,
        release_s=0.08,
        vibrato_hz=5.0,
        vibrato_depth=0.006,
        breath=0.05,
    ),
    # Not a concept value: the plain, dark bass under every track, so that the
    # melody instrument alone defines the timbre concept.
    "bass": _Recipe(
        ratios=(1.0, 2.0, 3.0),
        amps=(1.0, 0.35, 0.1),
        decay=(1.5, 2.5, 3.5),
        attack_s=0.008,
        release_s=0.08,
    ),
}


def midi_to_hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def render_note(
    instrument: str,
    midi: float,
    duration_s: float,
    sr: int,
    velocity: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One note, including its release tail: float64 array of ``(duration+release)*sr``."""
    recipe = _RECIPES[instrument]
    n = round((duration_s + recipe.release_s) * sr)
    t = np.arange(n) / sr
    f0 = midi_to_hz(midi)
    nyquist = sr / 2
    tone = np.zeros(n)
    phase_mod = (
        0.0
        if recipe.vibrato_hz == 0
        else recipe.vibrato_depth * np.sin(2 * np.pi * recipe.vibrato_hz * t + rng.uniform(0, 2 * np.pi))
    )
    detunes = (1.0,) if recipe.voices == 1 else tuple(np.linspace(0.997, 1.003, recipe.voices))
    for detune in detunes:
        for ratio, amp, decay in zip(recipe.ratios, recipe.amps, recipe.decay, strict=True):
            f = f0 * ratio * detune
            if f >= nyquist * 0.95:
                continue
            # Integrate the instantaneous frequency so vibrato bends pitch smoothly.
            inst = f * (1 + phase_mod) if recipe.vibrato_hz else f
            phase = 2 * np.pi * np.cumsum(np.broadcast_to(inst, t.shape)) / sr
            partial = amp * np.sin(phase + rng.uniform(0, 2 * np.pi))
            if decay:
                partial *= np.exp(-decay * t)
            tone += partial
    tone /= len(detunes)
    if recipe.breath:
        sos = signal.butter(
            2,
            [min(f0 * 1.5, nyquist * 0.8), min(f0 * 6, nyquist * 0.95)],
            btype="band",
            fs=sr,
            output="sos",
        )
        tone += recipe.breath * signal.sosfilt(sos, rng.standard_normal(n)) * 4
    if recipe.tremolo_hz:
        tone *= 1 + 0.15 * np.sin(2 * np.pi * recipe.tremolo_hz * t)
    return tone * _envelope(n, sr, duration_s, recipe) * velocity


def _envelope(n: int, sr: int, duration_s: float, recipe: _Recipe) -> np.ndarray:
    env = np.ones(n)
    attack = max(1, int(recipe.attack_s * sr))
    env[:attack] = np.linspace(0, 1, attack, endpoint=False)
    hold = min(n, int(duration_s * sr))
    release = n - hold
    if release > 0:
        env[hold:] *= np.linspace(1, 0, release) ** 2
    return env


DRUMS = ("kick", "snare", "hat")


def render_drum(kind: str, sr: int, velocity: float, rng: np.random.Generator) -> np.ndarray:
    """A drum hit (kick: pitch-swept sine; snare: band noise + body; hat: high-passed noise)."""
    if kind == "kick":
        n = int(0.35 * sr)
        t = np.arange(n) / sr
        freq = 45 + 90 * np.exp(-t * 28)
        hit = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * 9)
    elif kind == "snare":
        n = int(0.2 * sr)
        t = np.arange(n) / sr
        sos = signal.butter(2, [1200, min(9000, sr * 0.45)], btype="band", fs=sr, output="sos")
        noise = signal.sosfilt(sos, rng.standard_normal(n)) * 2.5
        hit = (0.8 * noise + 0.5 * np.sin(2 * np.pi * 185 * t)) * np.exp(-t * 22)
    elif kind == "hat":
        n = int(0.06 * sr)
        t = np.arange(n) / sr
        sos = signal.butter(4, min(7000, sr * 0.4), btype="high", fs=sr, output="sos")
        hit = signal.sosfilt(sos, rng.standard_normal(n)) * 1.5 * np.exp(-t * 70)
    else:
        raise ValueError(f"unknown drum {kind!r}; expected one of {DRUMS}")
    return hit * velocity
