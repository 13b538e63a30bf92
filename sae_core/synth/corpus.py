"""Render a synthetic, labelled music corpus: the embedded default for the demo and the tests.

Every track is music-like (melody + chords + bass, optional drums) and carries
ground-truth concepts: tempo, key, mode, instrument, register, density, drums
and loudness. Concept values are balanced across tracks so that each value is
heard about equally often, and drums enter mid-track in some tracks so that a
concept also changes *within* a track (its span is in ``concepts.csv``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyloudnorm

from artifact_schemas import CORPUS_CONCEPTS, CORPUS_METADATA, recorded_run, save_table
from artifact_schemas.settings import check_settings, setting
from sae_core.audio import check_write_format, write_audio
from sae_core.synth.score import (
    DENSITIES,
    DRUMS,
    LOUDNESS_LUFS,
    MODES,
    PITCH_CLASSES,
    REGISTERS,
    TEMPI,
    TrackConcepts,
    balanced_values,
    compose,
    drum_pattern,
)
from sae_core.synth.timbre import INSTRUMENTS, render_drum, render_note

log = logging.getLogger(__name__)

# Peak ceiling after loudness normalisation (dBFS); a loud, sparse track may be
# turned down below its loudness target to stay under it (the measured LUFS is recorded).
_PEAK_CEILING_DB = -1.0
_FADE_S = 0.01


@dataclass(frozen=True)
class CorpusTrack:
    """A rendered track: its id, file (relative to the corpus) and concepts."""

    track_id: str
    path: str
    concepts: TrackConcepts
    lufs: float


def draw_concepts(n_tracks: int, seconds: float, seed: int) -> list[TrackConcepts]:
    """Balanced concept values for ``n_tracks`` tracks, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    columns = {
        "tempo": balanced_values(tuple(TEMPI), n_tracks, rng),
        "key": balanced_values(PITCH_CLASSES, n_tracks, rng),
        "mode": balanced_values(tuple(MODES), n_tracks, rng),
        "instrument": balanced_values(INSTRUMENTS, n_tracks, rng),
        "register": balanced_values(tuple(REGISTERS), n_tracks, rng),
        "density": balanced_values(tuple(DENSITIES), n_tracks, rng),
        "drums": balanced_values(DRUMS, n_tracks, rng),
        "loudness": balanced_values(tuple(LOUDNESS_LUFS), n_tracks, rng),
    }
    out = []
    for i in range(n_tracks):
        lo, hi = TEMPI[columns["tempo"][i]]
        bpm = float(rng.integers(lo, hi + 1))
        # Drums enter on a bar line between 30% and 70% of the track.
        bar = 240.0 / bpm
        start = bar * max(1, round(float(rng.uniform(0.3, 0.7)) * seconds / bar))
        start = min(start, seconds * 0.7)
        out.append(
            TrackConcepts(
                tempo=columns["tempo"][i],
                tempo_bpm=bpm,
                key=columns["key"][i],
                mode=columns["mode"][i],
                instrument=columns["instrument"][i],
                register=columns["register"][i],
                density=columns["density"][i],
                drums=columns["drums"][i],
                loudness=columns["loudness"][i],
                drums_start_s=round(start, 3) if columns["drums"][i] == "partial" else 0.0,
            )
        )
    return out


def render_track(concepts: TrackConcepts, seconds: float, sr: int, seed: int) -> np.ndarray:
    """Mono float32 audio of one track, loudness-normalised to its loudness concept."""
    rng = np.random.default_rng([seed, 1])
    n = round(seconds * sr)
    mix = np.zeros(n + 2 * sr)  # room for release tails, cut afterwards
    for note in compose(concepts, seconds, rng):
        instrument = "bass" if note.voice == "bass" else concepts.instrument
        audio = render_note(instrument, note.midi, note.duration_s, sr, note.velocity, rng)
        start = round(note.start_s * sr)
        mix[start : start + len(audio)] += audio[: len(mix) - start]
    drums = np.zeros_like(mix)
    for t, kind, velocity in drum_pattern(concepts, seconds):
        hit = render_drum(kind, sr, velocity, rng)
        start = round(t * sr)
        drums[start : start + len(hit)] += hit[: len(mix) - start]
    # Drums sit at a fixed level relative to the music (measured where they play)
    # so that they are clearly audible whatever the instrument's own level.
    first = round(concepts.drums_start_s * sr) if concepts.drums == "partial" else 0
    music_rms = float(np.sqrt(np.mean(mix[:n] ** 2))) + 1e-12
    drums_rms = float(np.sqrt(np.mean(drums[first:n] ** 2)))
    if drums_rms > 0:
        drums *= 0.9 * music_rms / drums_rms
    audio = (mix + drums)[:n]
    fade = int(_FADE_S * sr)
    audio[:fade] *= np.linspace(0, 1, fade)
    audio[-fade:] *= np.linspace(1, 0, fade)
    return _normalise(audio, sr, LOUDNESS_LUFS[concepts.loudness])


def _normalise(audio: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """Gain to ``target_lufs``; peaks above -1 dBFS are soft-limited (tanh), as loud masters are.

    Plain scaling to stay under the ceiling would leave sparse, peaky tracks well below a
    loud target; a soft limiter plus a few gain corrections gets them there.
    """
    meter = pyloudnorm.Meter(sr)
    ceiling = 10 ** (_PEAK_CEILING_DB / 20)
    for _ in range(4):
        audio = audio * 10 ** ((target_lufs - meter.integrated_loudness(audio)) / 20)
        if float(np.max(np.abs(audio))) <= ceiling:
            break
        audio = ceiling * np.tanh(audio / ceiling)
    return audio.astype(np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """What ``write_corpus`` renders; validated on construction, naming the field at fault."""

    out: Path
    """Directory to write the corpus into."""
    tracks: int = setting(24, ge=1)
    """Number of tracks."""
    seconds: float = setting(10.0, ge=1)  # the loudness meter needs 400 ms blocks, with margin
    """Length of each track (s)."""
    seed: int = setting(0, ge=0)
    """Random seed; same seed, same bytes."""
    sample_rate: int = setting(32000, ge=8000)
    """Hz (MusicGen uses 32000)."""
    audio_format: str = "flac"
    """flac or wav (16-bit PCM)."""

    def __post_init__(self) -> None:
        check_settings(self)
        check_write_format(self.audio_format)


def write_corpus(cfg: SynthConfig) -> list[CorpusTrack]:
    """The ``synth-corpus`` stage: the corpus of ``cfg`` and its ``run.json`` in ``cfg.out``."""
    config = {
        "tracks": cfg.tracks,
        "seconds": cfg.seconds,
        "sample_rate": cfg.sample_rate,
        "format": cfg.audio_format,
    }
    with recorded_run(cfg.out, "synth-corpus", config=config, seeds={"seed": cfg.seed}):
        return synth_corpus(cfg.out, cfg.tracks, cfg.seconds, cfg.seed, cfg.sample_rate, cfg.audio_format)


def synth_corpus(
    out: str | Path,
    n_tracks: int,
    seconds: float,
    seed: int,
    sr: int = 32000,
    audio_format: str = "flac",
) -> list[CorpusTrack]:
    """Write ``n_tracks`` tracks plus ``metadata.csv`` and ``concepts.csv`` into ``out``.

    Deterministic: the same arguments give byte-identical audio and tables.
    """
    SynthConfig(Path(out), n_tracks, seconds, seed, sr, audio_format)  # validates
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meter = pyloudnorm.Meter(sr)
    tracks = []
    for i, concepts in enumerate(draw_concepts(n_tracks, seconds, seed)):
        track_id = f"track_{i:04d}"
        rel = f"{track_id}.{audio_format}"
        audio = render_track(concepts, seconds, sr, seed * 100_003 + i)
        write_audio(out / rel, audio, sr, audio_format)
        lufs = round(float(meter.integrated_loudness(audio.astype(np.float64))), 2)
        tracks.append(CorpusTrack(track_id, rel, concepts, lufs))
        log.debug("rendered %s (%s)", rel, concepts.caption())
    _write_tables(out, tracks, seconds)
    return tracks


def _write_tables(out: Path, tracks: list[CorpusTrack], seconds: float) -> None:
    meta_rows = []
    span_rows = []
    for tr in tracks:
        c = tr.concepts
        meta_rows.append(
            {
                "track_id": tr.track_id,
                "path": tr.path,
                "caption": c.caption(),
                "tags": ";".join(c.tags()),
                "seconds": seconds,
                **{k: v for k, v in asdict(c).items()},
                "lufs": tr.lufs,
            }
        )
        for concept in ("tempo", "key", "mode", "instrument", "register", "density", "loudness"):
            span_rows.append((tr.track_id, concept, str(getattr(c, concept)), 0.0, seconds))
        if c.drums == "partial":
            span_rows.append((tr.track_id, "drums", "no", 0.0, c.drums_start_s))
            span_rows.append((tr.track_id, "drums", "yes", c.drums_start_s, seconds))
        else:
            span_rows.append((tr.track_id, "drums", c.drums, 0.0, seconds))
    save_table(pd.DataFrame(meta_rows), out / "metadata.csv", CORPUS_METADATA)
    spans = pd.DataFrame(span_rows, columns=["track_id", "concept", "value", "start_s", "end_s"])
    save_table(spans, out / "concepts.csv", CORPUS_CONCEPTS)
