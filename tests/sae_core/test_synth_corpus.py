"""The synthetic corpus: deterministic, fully tagged, and its concepts audible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyloudnorm
import pytest
import soundfile as sf
from scipy import signal

from artifact_schemas import CORPUS_CONCEPTS, CORPUS_METADATA, load_run_record, load_table
from sae_core.synth import TrackConcepts, draw_concepts, synth_corpus
from sae_core.synth.score import MODES, PITCH_CLASSES, REGISTERS, compose
from sae_core.synth.timbre import INSTRUMENTS, render_note

SAE_CORE = str(Path(sys.executable).parent / "sae-core")
CONCEPT_COLUMNS = [
    "tempo",
    "tempo_bpm",
    "key",
    "mode",
    "instrument",
    "register",
    "density",
    "drums",
    "loudness",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    synth_corpus(out, n_tracks=12, seconds=6, seed=3)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != "run.json"}


def test_cli_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    args = ["synth-corpus", "--tracks", "8", "--seconds", "4", "--seed", "1"]
    for name in ("a", "b"):
        result = subprocess.run(
            [SAE_CORE, *args, "--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len([n for n in first if n.endswith(".flac")]) == 8
    assert first == second
    record = load_run_record(tmp_path / "a" / "run.json")
    assert record.stage == "synth-corpus" and record.seeds == {"seed": 1}


def test_other_seed_gives_other_music(tmp_path: Path) -> None:
    synth_corpus(tmp_path / "a", 2, 2, seed=1)
    synth_corpus(tmp_path / "b", 2, 2, seed=2)
    assert _files(tmp_path / "a") != _files(tmp_path / "b")


def test_metadata_lists_every_concept_for_every_track(corpus: Path) -> None:
    meta = load_table(corpus / "metadata.csv", CORPUS_METADATA)
    assert len(meta) == 12
    assert meta[CONCEPT_COLUMNS].notna().all().all()
    for row in meta.itertuples():
        audio, sr = sf.read(corpus / row.path)
        assert sr == 32000 and len(audio) == 6 * 32000
        assert row.instrument in row.caption and row.key in row.tags.split(";")


def test_concept_values_are_balanced(corpus: Path) -> None:
    meta = pd.read_csv(corpus / "metadata.csv")
    for column in ("tempo", "mode", "instrument", "register", "density", "drums", "loudness"):
        counts = meta[column].value_counts()
        assert counts.max() - counts.min() <= 1, column


def test_concept_spans_cover_each_track(corpus: Path) -> None:
    spans = load_table(corpus / "concepts.csv", CORPUS_CONCEPTS)
    meta = pd.read_csv(corpus / "metadata.csv").set_index("track_id")
    for (track, concept), group in spans.groupby(["track_id", "concept"]):
        group = group.sort_values("start_s")
        assert group["start_s"].iloc[0] == 0 and group["end_s"].iloc[-1] == 6, (track, concept)
        assert (group["start_s"].iloc[1:].to_numpy() == group["end_s"].iloc[:-1].to_numpy()).all()
    partial = meta.index[meta["drums"] == "partial"]
    assert len(partial) >= 3
    for track in partial:
        drums = spans[(spans.track_id == track) & (spans.concept == "drums")]
        assert drums["value"].tolist() == ["no", "yes"]


def _band_energy(audio: np.ndarray, sr: int, lo: float) -> float:
    sos = signal.butter(6, lo, btype="high", fs=sr, output="sos")
    return float(np.mean(signal.sosfilt(sos, audio) ** 2))


def test_drums_are_heard_exactly_in_their_span(corpus: Path) -> None:
    meta = pd.read_csv(corpus / "metadata.csv")
    for row in meta[meta["drums"] == "partial"].itertuples():
        audio, sr = sf.read(corpus / row.path)
        cut = int(row.drums_start_s * sr)
        before = _band_energy(audio[: cut - sr // 10], sr, 6000) / np.mean(audio[:cut] ** 2)
        after = _band_energy(audio[cut + sr // 10 :], sr, 6000) / np.mean(audio[cut:] ** 2)
        # Hi-hats and snare put energy above 6 kHz that the instruments alone lack.
        assert after > 5 * before, row.track_id


def test_loud_tracks_are_louder_than_quiet_ones(corpus: Path) -> None:
    meta = pd.read_csv(corpus / "metadata.csv")
    measured = []
    for row in meta.itertuples():
        audio, sr = sf.read(corpus / row.path)
        measured.append(pyloudnorm.Meter(sr).integrated_loudness(audio))
    meta["measured"] = measured
    assert np.allclose(meta["measured"], meta["lufs"], atol=0.3)
    quiet = meta.loc[meta.loudness == "quiet", "measured"]
    loud = meta.loc[meta.loudness == "loud", "measured"]
    assert loud.min() - quiet.max() >= 6


def _concepts(**kw: object) -> TrackConcepts:
    base = dict(
        tempo="medium",
        tempo_bpm=100.0,
        key="A",
        mode="minor",
        instrument="piano",
        register="mid",
        density="dense",
        drums="no",
        loudness="loud",
        drums_start_s=0.0,
    )
    base.update(kw)
    return TrackConcepts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["C", "F#", "A#"])
@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("register", list(REGISTERS))
def test_melody_stays_in_key_mode_and_register(key: str, mode: str, register: str) -> None:
    notes = compose(_concepts(key=key, mode=mode, register=register), 20.0, np.random.default_rng(0))
    melody = [n.midi for n in notes if n.voice == "melody"]
    scale = {(PITCH_CLASSES.index(key) + s) % 12 for s in MODES[mode]}
    assert melody and all(int(m) % 12 in scale for m in melody)
    lo, hi = REGISTERS[register]
    assert lo <= min(melody) and max(melody) <= hi


def test_density_changes_notes_per_second() -> None:
    rng = np.random.default_rng(0)
    dense = [n for n in compose(_concepts(density="dense"), 20, rng) if n.voice == "melody"]
    sparse = [n for n in compose(_concepts(density="sparse"), 20, rng) if n.voice == "melody"]
    assert len(dense) > 2.5 * len(sparse)


def _centroid(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    return float(np.sum(freqs * spectrum) / np.sum(spectrum))


def test_instruments_have_distinct_timbres() -> None:
    sr, held = 32000, 0.6
    descriptors = {}
    for instrument in INSTRUMENTS:
        note = render_note(instrument, 60, held, sr, 1.0, np.random.default_rng(0))
        n = int(held * sr)
        first, second = note[: n // 2], note[n // 2 : n]
        decay = np.sqrt(np.mean(second**2) / np.mean(first**2))
        descriptors[instrument] = np.log([_centroid(note, sr), decay])
    # Any two instruments differ clearly in brightness or in how the note decays.
    for i, a in enumerate(INSTRUMENTS):
        for b in INSTRUMENTS[i + 1 :]:
            gap = np.max(np.abs(descriptors[a] - descriptors[b]))
            assert gap > 0.15, (a, b, descriptors[a], descriptors[b])


def test_tempo_classes_do_not_overlap() -> None:
    drawn = draw_concepts(30, 10, seed=5)
    by_class: dict[str, list[float]] = {}
    for c in drawn:
        by_class.setdefault(c.tempo, []).append(c.tempo_bpm)
    assert max(by_class["slow"]) < min(by_class["medium"])
    assert max(by_class["medium"]) < min(by_class["fast"])


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seconds must be >= 1"):
        synth_corpus(tmp_path, 2, 0.5, seed=0)
    with pytest.raises(ValueError, match="audio_format must be one of"):
        synth_corpus(tmp_path, 2, 2, seed=0, audio_format="mp4")
    assert not list(tmp_path.iterdir())
