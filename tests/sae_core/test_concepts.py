"""Concept detection against ground truth (issue 18.1): the scoring finds planted detectors,
chooses them on one half of the tracks and scores them on the other, and works on a real
corpus's tag columns as well as on the synthetic corpus's concepts.csv.

The run here is built by hand through the artifact contract (activations in which known
dimensions carry known concepts, and an SAE whose first latents read those dimensions):
the test is of the scoring, not of any model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from artifact_schemas import ACTIVATION_INDEX, CONCEPTS, load_table, save_table
from sae_core.sae.config import SaeConfig
from sae_core.sae.data import ACTS_KEY, LAYER_META
from sae_core.sae.sparse_coder import SparseCoder
from sae_core.truth.concepts import ConceptsConfig, aurocs, concept_detection

CLI = str(Path(sys.executable).parent / "sae-core")
FPS, SECONDS, D = 50, 4.0, 8


def _planted_run(
    root: Path,
    genre_corpus: bool = False,
    shift: int = 0,
    sparse_minor: bool = False,
    sparse_drums: bool = False,
) -> tuple[Path, Path]:
    """12 tracks; dim 0 = minor mode, dim 1 = drums (entering at 2 s in half the tracks),
    dim 2 = genre jazz; the other dims are noise. Latent i of the SAE reads dim i.

    ``shift`` > 0 misaligns the rows with their index on purpose: row f holds frame f - shift
    (the bug a wrong delay-pattern offset would make). ``sparse_minor``: dim 0 is silent
    except one frame a second in minor tracks (a precise but sparse detector); ``sparse_drums``:
    dim 1 fires on one frame every 0.5 s from the drums' entry (a drum-hit detector)."""
    rng = np.random.default_rng(0)
    corpus, run = root / "corpus", root / "run"
    corpus.mkdir(parents=True)
    frames = int(SECONDS * FPS)
    rows, acts, meta, spans = [], [], [], []
    for t in range(12):
        tid = f"track_{t:04d}"
        minor, jazz, drums_from = t % 2 == 1, t % 3 == 0, (2.0 if t % 4 < 2 else np.inf)
        time = np.arange(frames) / FPS
        x = rng.normal(0, 0.3, (frames, D))
        x[:, 0] += float(minor)
        if sparse_minor:
            x[:, 0] = 0.0
            x[::FPS, 0] = 3.0 * float(minor)
        x[:, 1] += (time >= drums_from).astype(float)
        if sparse_drums:
            x[:, 1] = 0.0
            x[np.flatnonzero(time >= drums_from)[:: FPS // 2], 1] = 3.0
        x[:, 2] += float(jazz)
        if shift:
            x = np.concatenate([np.repeat(x[:1], shift, axis=0), x[:-shift]])
        acts.append(x)
        rows += [(len(rows) + f, tid, f, f / FPS) for f in range(frames)]
        meta.append(
            {
                "track_id": tid,
                "path": f"{tid}.wav",
                "caption": "",
                "tags": "",
                "genre": "jazz" if jazz else "pop",
            }
        )
        spans.append((tid, "mode", "minor" if minor else "major", 0.0, SECONDS))
        if np.isfinite(drums_from):
            spans += [(tid, "drums", "no", 0.0, drums_from), (tid, "drums", "yes", drums_from, SECONDS)]
        else:
            spans.append((tid, "drums", "no", 0.0, SECONDS))
    pd.DataFrame(meta).to_csv(corpus / "metadata.csv", index=False)
    if not genre_corpus:
        pd.DataFrame(spans, columns=["track_id", "concept", "value", "start_s", "end_s"]).to_csv(
            corpus / "concepts.csv", index=False
        )
    layer_dir = run / "acts" / "layer_2"
    layer_dir.mkdir(parents=True)
    data = torch.from_numpy(np.concatenate(acts)).float()
    save_file({ACTS_KEY: data}, str(layer_dir / "shard_00000.safetensors"))
    index = pd.DataFrame(rows, columns=["row", "track_id", "frame", "time_s"])
    save_table(index, layer_dir / "index.parquet", ACTIVATION_INDEX)
    layer_meta = {"layer": 2, "d_model": D, "rows": len(index), "frame_rate": FPS}
    layer_meta["shards"] = [{"file": "shard_00000.safetensors", "rows": len(index)}]
    (layer_dir / LAYER_META).write_text(json.dumps(layer_meta))
    sae = SparseCoder(SaeConfig(d_in=D, num_latents=16, k=4, layer=2))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:D] = torch.eye(D)  # latent i reads dim i; the rest never fire
        sae.W_enc[D:] = -torch.eye(D)
    sae.save_to_disk(run / "sae" / "layer_2")
    return run, corpus


def test_planted_detectors_are_found_and_scored_on_other_tracks(tmp_path: Path) -> None:
    run, corpus = _planted_run(tmp_path)
    table = CONCEPTS.validate(concept_detection(ConceptsConfig(run=run, corpus=corpus)))
    rows = table.set_index(["concept", "value", "method"])
    for value, dim in ((("mode", "minor"), 0), (("drums", "yes"), 1)):
        sae = rows.loc[(*value, "sae")]
        assert sae["unit"] == dim and sae["auroc"] > 0.95 and sae["precision"] > 0.8, sae
        assert rows.loc[(*value, "neuron")]["unit"] == dim
    # Major is minor's complement: the SAE finds the latent that reads -dim 0; a neuron
    # detects it by sign.
    assert rows.loc[("mode", "major", "sae")]["unit"] == D + 0
    neuron = rows.loc[("mode", "major", "neuron")]
    assert neuron["unit"] == 0 and neuron["sign"] == -1.0 and neuron["auroc"] > 0.95
    # Scored on the evaluation half only: its frames, none of the selection half's.
    total = 12 * int(SECONDS * FPS)
    assert 0 < table["n_frames"].iloc[0] < total


def test_a_sparse_precise_feature_has_low_frame_auroc_but_full_purity(tmp_path: Path) -> None:
    """Issue 33: a feature firing on 2% of minor frames and nowhere else scores AUROC ~0.51
    on frames, however precise it is; its top windows are all minor (purity 1, above chance:
    the minor windows' share), and it counts as matched."""
    from sae_core.truth.match import matched_features

    run, corpus = _planted_run(tmp_path, sparse_minor=True)
    table = CONCEPTS.validate(concept_detection(ConceptsConfig(run=run, corpus=corpus, purity_top=10)))
    minor = table.set_index(["concept", "value", "method"]).loc[("mode", "minor", "sae")]
    assert minor["auroc"] < 0.6, minor
    assert minor["purity_unit"] == 0 and minor["purity"] == 1.0, minor
    assert minor["purity_chance"] < 0.9 and minor["window_auroc"] > 0.95, minor
    matched = matched_features(table)
    assert ((matched["concept"] == "mode") & (matched["value"] == "minor") & (matched["unit"] == 0)).any()


def test_purity_shares_tied_places_instead_of_taking_the_first_windows() -> None:
    """A unit silent on every window scores the positives' share, not the share of whichever
    windows happen to come first."""
    from sae_core.truth.concepts import top_purity

    pooled = np.zeros((100, 1))
    positive = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    assert top_purity(pooled, positive, 50)[0] == pytest.approx(0.5)
    pooled[:10, 0] = 1.0  # fires on 10 positives; the other 40 places are shared among ties
    assert top_purity(pooled, positive, 50)[0] == pytest.approx((10 + 40 * 40 / 90) / 50)
    assert np.isnan(top_purity(pooled, positive, 101)[0])


def test_drum_entries_are_timed_and_a_misaligned_run_fails_the_bound(tmp_path: Path) -> None:
    """Issue 18: rows shifted 10 frames (200 ms) against their index must show as onset error."""
    table = concept_detection(
        ConceptsConfig(run=_planted_run(tmp_path / "ok")[0], corpus=tmp_path / "ok" / "corpus")
    )
    drums = table.set_index(["concept", "value", "method"]).loc[("drums", "yes", "sae")]
    assert drums["n_onsets"] >= 1 and drums["onset_error_ms"] <= 60, drums
    assert drums["purity_onset_error_ms"] <= 60, drums
    bad_run, bad_corpus = _planted_run(tmp_path / "shifted", shift=10)
    shifted = concept_detection(ConceptsConfig(run=bad_run, corpus=bad_corpus))
    drums = shifted.set_index(["concept", "value", "method"]).loc[("drums", "yes", "sae")]
    assert drums["onset_error_ms"] > 60, drums
    assert drums["auroc"] > 0.9  # the detector is as good: only the timing says something broke
    assert drums["purity_onset_error_ms"] > 60, drums


def test_a_drum_hit_feature_times_the_entry_by_its_first_hit(tmp_path: Path) -> None:
    """Issue 33: a feature firing on one frame per beat is never on for 80% of 200 ms, so the
    dense rule never sees the entry; its first hit over its window threshold does, and a
    10-frame misalignment still shows."""
    run, corpus = _planted_run(tmp_path / "ok", sparse_drums=True)
    table = concept_detection(ConceptsConfig(run=run, corpus=corpus, purity_top=10))
    drums = table.set_index(["concept", "value", "method"]).loc[("drums", "yes", "sae")]
    assert drums["purity_unit"] == 1 and drums["onset_error_ms"] > 1000, drums
    assert drums["purity_onset_error_ms"] <= 60, drums
    run, corpus = _planted_run(tmp_path / "shifted", sparse_drums=True, shift=10)
    shifted = concept_detection(ConceptsConfig(run=run, corpus=corpus, purity_top=10))
    assert (
        shifted.set_index(["concept", "value", "method"]).loc[
            ("drums", "yes", "sae"), "purity_onset_error_ms"
        ]
        > 60
    )


def test_a_real_corpus_with_a_genre_column_works(tmp_path: Path) -> None:
    run, corpus = _planted_run(tmp_path, genre_corpus=True)
    table = concept_detection(ConceptsConfig(run=run, corpus=corpus))
    assert set(table["concept"]) == {"genre"}  # from metadata.csv alone
    jazz = table.set_index(["value", "method"]).loc[("jazz", "sae")]
    assert jazz["unit"] == 2 and jazz["auroc"] > 0.95


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(300, 5)), 1)  # rounded: many ties
    scores[:, 4] = 0.0  # a feature that never fires
    positive = rng.random(300) < 0.3
    ours = aurocs(scores, positive)
    assert np.allclose(ours, [roc_auc_score(positive, scores[:, j]) for j in range(5)])


def test_the_command_writes_the_table_and_heatmap(tmp_path: Path) -> None:
    run, corpus = _planted_run(tmp_path)
    done = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "detects" in done.stdout
    out = run / "concepts"
    assert (
        len(load_table(out / "concepts.parquet", CONCEPTS)) == 4 * 3
    )  # drums and mode, two values each, x 3 methods
    assert (out / "concepts_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "concepts_heatmap.svg").read_text().lstrip().startswith("<?xml")
    assert (out / "run.json").is_file()
    bad = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus), "--layers", "5"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "layers: no SAE for layer(s) [5]" in bad.stderr


@pytest.mark.parametrize("missing", ["sae", "metadata"])
def test_bad_inputs_name_the_field(tmp_path: Path, missing: str) -> None:
    run, corpus = _planted_run(tmp_path)
    if missing == "sae":
        for f in (run / "sae" / "layer_2").iterdir():
            f.unlink()
        (run / "sae" / "layer_2").rmdir()
        (run / "sae").rmdir()
        with pytest.raises(ValueError, match=r"^run: "):
            ConceptsConfig(run=run, corpus=corpus)
    else:
        (corpus / "metadata.csv").unlink()
        with pytest.raises(ValueError, match=r"^corpus: no metadata\.csv"):
            ConceptsConfig(run=run, corpus=corpus)


def test_labels_are_scored_against_the_truth_of_their_features(tmp_path: Path) -> None:
    """Issue 18.3: the matched features' top labels, per labeler. Feature 0 detects mode=minor,
    feature 1 drums (SAE latent i reads dim i); a labeler that calls them "minor key" and
    "percussive" names both, one that swaps them names neither, and one that skipped
    feature 1 names one of two."""
    from artifact_schemas import LABELS, LABELS_VS_TRUTH
    from sae_core.truth.match import names_concept

    run, corpus = _planted_run(tmp_path)
    rows = []
    for labeler, words in {
        "descriptors": {0: "minor key", 1: "percussive"},
        "swapped": {0: "percussive", 1: "minor key"},
        "partial": {0: "minor key"},
    }.items():
        for feature, label in words.items():
            rows.append(
                {"feature_id": feature, "layer": 2, "labeler": labeler, "label": label, "confidence": 0.9}
            )
            rows.append(  # a weaker second label never counts
                {
                    "feature_id": feature,
                    "layer": 2,
                    "labeler": labeler,
                    "label": "bright",
                    "confidence": 0.2,
                    "clap_score": None,
                }
            )
    labels = tmp_path / "labels.parquet"
    save_table(pd.DataFrame(rows), labels, LABELS)
    done = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus), "--labels", str(labels)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    truth = load_table(run / "concepts" / "labels_vs_truth.parquet", LABELS_VS_TRUTH)
    # Matched: the SAE rows at AUROC >= 0.9, less drums=no (no word names an absence).
    table = load_table(run / "concepts" / "concepts.parquet", CONCEPTS)
    sae = table[(table["method"] == "sae") & (table["auroc"] >= 0.9)]
    expected = set(zip(sae["concept"], sae["value"], strict=True)) - {("drums", "no")}
    assert {("mode", "minor"), ("drums", "yes")} <= expected
    assert set(zip(truth["concept"], truth["value"], strict=True)) == expected
    assert len(truth) == 3 * len(expected)  # every labeler, every matched feature
    named = truth[truth["value"] != "major"].groupby("labeler")["names_concept"].sum().to_dict()
    assert named == {"descriptors": 2, "swapped": 0, "partial": 1}
    assert f"descriptors names the concept of 2 of {len(expected)} matched features" in done.stdout
    assert names_concept("A minor", "key", "A") and not names_concept("A minor", "key", "E")
    assert names_concept("cool jazz", "genre", "jazz") and not names_concept("jazzy", "genre", "jazz")
    assert names_concept("fast tempo", "tempo", "fast") and not names_concept("fast", "tempo", "slow")
    missing = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus), "--labels", str(tmp_path / "nope.parquet")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "labels: no such file" in missing.stderr


def test_clap_scores_each_matched_features_clips_against_its_words_and_the_best_foil(tmp_path: Path) -> None:
    """Issue 18.3, second half. The tiny CLAP is random, so which words win is noise; what is
    tested is what is scored: the matched features' own clips, the true value's words, and
    every other value of the concept as a foil."""
    import soundfile as sf

    from artifact_schemas import CLAP_VS_TRUTH, EXAMPLES
    from sae_core.clap import ClapScorer, build_tiny_clap

    run, corpus = _planted_run(tmp_path)
    clap = build_tiny_clap(tmp_path / "clap")
    features = run / "features" / "layer_2"
    (features / "clips").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for feature, hz in ((0, 220.0), (1, 880.0)):  # latent 0 reads minor mode, latent 1 drums
        for rank in (1, 2):
            rel = f"clips/f{feature:05d}_{rank:02d}.wav"
            t = np.arange(16000) / 16000
            sf.write(
                features / rel, 0.3 * np.sin(2 * np.pi * hz * rank * t) + rng.normal(0, 0.01, t.size), 16000
            )
            times = {"peak_time_s": 0.2, "start_s": 0.0, "end_s": 1.0}
            rows.append(
                {"feature_id": feature, "layer": 2, "rank": rank, "track_id": "track_0001", **times}
                | {"peak_activation": 1.0, "path": rel}
            )
    save_table(pd.DataFrame(rows), features / "examples.parquet", EXAMPLES)
    done = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus), "--clap", str(clap)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    heard = load_table(run / "concepts" / "clap_vs_truth.parquet", CLAP_VS_TRUTH).set_index(
        ["concept", "value"]
    )
    table = load_table(run / "concepts" / "concepts.parquet", CONCEPTS)
    sae = table[(table["method"] == "sae") & (table["auroc"] >= 0.9)]
    assert set(heard.index) == set(zip(sae["concept"], sae["value"], strict=True)) - {("drums", "no")}
    assert {("mode", "minor"), ("drums", "yes")} <= set(heard.index)
    scorer = ClapScorer.load(str(clap))
    for (concept, value), feature, foil in (
        (("mode", "minor"), 0, "major key"),
        (("drums", "yes"), 1, "without drums"),
    ):
        row = heard.loc[(concept, value)]
        clips = [features / f"clips/f{feature:05d}_{r:02d}.wav" for r in (1, 2)]
        expected = scorer.similarity([row["text"], foil], clips).mean(axis=1)
        assert row["feature_id"] == feature and row["n_clips"] == 2 and row["best_foil"] == foil
        assert row["clap_true"] == pytest.approx(expected[0], abs=1e-5)
        assert row["clap_best_foil"] == pytest.approx(expected[1], abs=1e-5)
        assert row["true_wins"] == (expected[0] > expected[1])
    assert heard.loc[("mode", "minor"), "text"] == "minor key"
    # A matched feature the features stage filtered out has no clips, so no scores.
    from sae_core.truth.match import clap_against_truth

    unclipped = table[(table["method"] == "sae") & (table["value"] == "minor")].assign(unit=5)
    unheard = clap_against_truth(unclipped, run / "features", scorer).iloc[0]
    assert unheard["n_clips"] == 0 and pd.isna(unheard["clap_true"]) and pd.isna(unheard["true_wins"])
    assert "matched features with clips" in done.stdout
    (features / "examples.parquet").unlink()
    missing = subprocess.run(
        [CLI, "concepts", str(run), "--corpus", str(corpus), "--clap", str(clap)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "examples.parquet" in missing.stderr


def test_a_run_where_nothing_matches_gives_empty_truth_tables_not_a_crash(tmp_path: Path) -> None:
    """The random tiny model matches no feature (AUROC < 0.9 everywhere); labels_vs_truth
    is then empty (it raised a KeyError: an empty list selected no columns)."""
    from artifact_schemas import LABELS_VS_TRUTH
    from sae_core.truth.match import labels_against_truth, matched_features

    run, corpus = _planted_run(tmp_path)
    table = concept_detection(ConceptsConfig(run=run, corpus=corpus)).assign(auroc=0.6)
    assert matched_features(table).empty and list(matched_features(table).columns) == list(table.columns)
    labels = pd.DataFrame(
        [{"feature_id": 0, "layer": 2, "labeler": "descriptors", "label": "minor key", "confidence": 0.9}]
    )
    truth = labels_against_truth(table, labels)
    assert truth.empty
    LABELS_VS_TRUTH.validate(truth)
