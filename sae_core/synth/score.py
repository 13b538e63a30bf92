"""Musical decisions for a synthetic track: its concepts and the notes that realise them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Triads as scale degrees (0-based): I-IV-V-I and i-iv-V-i, the cadence that defines a
# key. In minor the V chord is major (harmonic minor, raised leading tone): without it a
# minor loop uses the same chords as its relative major and the mode is ambiguous.
PROGRESSIONS = {"major": (0, 3, 4, 0), "minor": (0, 3, 4, 0)}

TEMPI = {"slow": (60, 76), "medium": (96, 112), "fast": (136, 156)}
# MIDI range of the melody per register.
REGISTERS = {"low": (40, 55), "mid": (60, 74), "high": (79, 93)}
# Note lengths in beats, and the chance of a rest, per density.
DENSITIES = {"sparse": ((2.0, 1.0, 1.0), 0.3), "dense": ((0.25, 0.5, 0.5), 0.05)}
LOUDNESS_LUFS = {"quiet": -32.0, "loud": -18.0}
DRUMS = ("yes", "no", "partial")


@dataclass(frozen=True)
class TrackConcepts:
    """Ground-truth concept values of one track."""

    tempo: str
    tempo_bpm: float
    key: str
    mode: str
    instrument: str
    register: str
    density: str
    drums: str  # yes / no / partial (drums enter at drums_start_s)
    loudness: str
    drums_start_s: float

    def caption(self) -> str:
        drums = {
            "yes": "with drums",
            "no": "without drums",
            "partial": f"with drums entering at {self.drums_start_s:.1f} s",
        }[self.drums]
        return (
            f"A {self.tempo}, {self.density} {self.instrument} melody in {self.key} "
            f"{self.mode}, {self.register} register, {drums}, {self.loudness}."
        )

    def tags(self) -> list[str]:
        drums = "drums" if self.drums != "no" else "no-drums"
        return [
            self.tempo,
            self.key,
            self.mode,
            self.instrument,
            f"{self.register}-register",
            self.density,
            drums,
            self.loudness,
        ]


@dataclass(frozen=True)
class Note:
    start_s: float
    duration_s: float
    midi: float
    velocity: float
    voice: str  # melody / chord / bass


def balanced_values(values: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` draws where every value appears floor(n/k) or ceil(n/k) times, in random order."""
    k = len(values)
    extra = rng.choice(k, size=n % k, replace=False)
    pool = [v for _ in range(n // k) for v in values] + [values[int(i)] for i in extra]
    rng.shuffle(pool)
    return pool


def _scale_pitches(root_pc: int, mode: str, lo: int, hi: int) -> list[int]:
    steps = MODES[mode]
    return [m for m in range(lo, hi + 1) if (m - root_pc) % 12 in steps]


def _triad(root_pc: int, mode: str, degree: int) -> tuple[int, int, int]:
    """Pitch classes of the diatonic triad on ``degree``."""
    steps = MODES[mode]
    pcs = [(root_pc + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4)]
    if mode == "minor" and degree == 4:
        pcs[1] = (pcs[1] + 1) % 12  # the raised leading tone of harmonic minor
    return pcs[0], pcs[1], pcs[2]


def compose(concepts: TrackConcepts, seconds: float, rng: np.random.Generator) -> list[Note]:
    """Melody, chords and bass realising ``concepts`` over ``seconds``."""
    beat = 60.0 / concepts.tempo_bpm
    bar = 4 * beat
    root_pc = PITCH_CLASSES.index(concepts.key)
    progression = PROGRESSIONS[concepts.mode]
    lo, hi = REGISTERS[concepts.register]
    melody_pitches = _scale_pitches(root_pc, concepts.mode, lo, hi)
    lengths, rest_p = DENSITIES[concepts.density]
    notes: list[Note] = []

    n_bars = int(np.ceil(seconds / bar))
    for b in range(n_bars):
        chord = _triad(root_pc, concepts.mode, progression[b % len(progression)])
        t0 = b * bar
        # Chords: a soft sustained triad voiced around middle C.
        for pc in chord:
            midi = 48 + ((pc - 48) % 12) + (12 if pc < 5 else 0)
            notes.append(Note(t0, bar * 0.95, midi, 0.22, "chord"))
        # Bass: the chord root, twice per bar.
        bass = 36 + (chord[0] - 36) % 12
        notes += [Note(t0 + h * 2 * beat, 1.8 * beat, bass, 0.45, "bass") for h in (0, 1)]

    # Melody: a random walk over the scale that lands on chord tones on downbeats.
    idx = len(melody_pitches) // 2
    t = 0.0
    while t < seconds:
        length = float(rng.choice(lengths)) * beat
        chord = _triad(root_pc, concepts.mode, progression[int(t // bar) % len(progression)])
        on_beat = abs((t / beat) - round(t / beat)) < 1e-6
        if rng.random() >= rest_p:
            idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(melody_pitches) - 1))
            if on_beat and melody_pitches[idx] % 12 not in chord:
                near = [i for i, m in enumerate(melody_pitches) if m % 12 in chord]
                idx = min(near, key=lambda i: abs(i - idx))
            accent = 1.0 if on_beat else 0.8
            notes.append(Note(t, length * 0.9, melody_pitches[idx], accent, "melody"))
        t += length
    return notes


def drum_pattern(concepts: TrackConcepts, seconds: float) -> list[tuple[float, str, float]]:
    """(time, drum, velocity) hits: kick on 1 and 3, snare on 2 and 4, hats on eighths (quarters if slow)."""
    if concepts.drums == "no":
        return []
    beat = 60.0 / concepts.tempo_bpm
    start = concepts.drums_start_s if concepts.drums == "partial" else 0.0
    hits = []
    for k in range(int(seconds / (beat / 2)) + 1):
        t = k * beat / 2
        if t < start - 1e-9 or t >= seconds:
            continue
        in_bar = k % 8
        if in_bar in (0, 4):
            hits.append((t, "kick", 1.0))
        if in_bar in (2, 6):
            hits.append((t, "snare", 0.8))
        # Slow tracks get quarter-note hats: eighths at 60-76 BPM would pulse at 120-152
        # and sound (and measure) like a fast tempo.
        if concepts.tempo != "slow" or in_bar % 2 == 0:
            hits.append((t, "hat", 0.5 if in_bar % 2 == 0 else 0.35))
    return hits
