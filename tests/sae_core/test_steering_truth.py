"""Steering against the truth (issue 18.4): the reader hears the corpus's concepts, and the
steering sweep generates baseline, steered and control clips from prompts lacking the
concept and reads them back.

The tiny model is random, so nothing here claims steering works: a feature is *declared*
matched in concepts.parquet (the artifact contract between the stages) and the test is of
what is generated, from which prompts, and how it is counted. Whether steering puts a
concept in is the benchmark's question, on trained models.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artifact_schemas import CONCEPTS, STEERING_TRUTH, load_table, save_table
from sae_core.synth import synth_corpus

CLI = str(Path(sys.executable).parent / "sae-core")


def test_the_reader_hears_instrument_and_drums_in_corpus_windows_it_was_not_fitted_on(tmp_path: Path) -> None:
    from sae_core.truth.steering import ConceptReader

    synth_corpus(tmp_path, n_tracks=48, seconds=8, seed=4, sr=16000)
    reader = ConceptReader.fit(tmp_path, seconds=4.0)
    assert reader.accuracy["instrument"] >= 0.5, reader.accuracy  # six instruments: chance 0.17
    assert reader.accuracy["drums"] >= 0.75, reader.accuracy  # drums yes / no
    assert set(reader.classifiers) >= {"mode", "tempo", "register", "instrument", "drums"}


@pytest.fixture(scope="module")
def matched_run(
    tiny_model_dir: Path, small_corpus: Path, extracted_small: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A run of the tiny model: a real SAE and features at layer 3, and concepts.parquet with
    the best mode=minor feature declared matched (AUROC set to 0.95)."""
    from sae_core.features.stage import FeaturesConfig, run_features
    from sae_core.sae import SaeConfig, ShardedActivations, TrainConfig, Trainer
    from sae_core.truth.concepts import ConceptsConfig, concept_detection

    run = tmp_path_factory.mktemp("truth") / "run"
    run.mkdir()
    (run / "acts").symlink_to(extracted_small)
    source = ShardedActivations(extracted_small / "layer_3", holdout_fraction=0.0)
    cfg = SaeConfig(d_in=64, num_latents=128, k=4, layer=3)
    Trainer(
        cfg, TrainConfig(batch_size=128, epochs=2, lr=2e-3), source, run / "sae" / "layer_3", progress=False
    ).fit()
    features = run / "features" / "layer_3"
    run_features(
        FeaturesConfig(run / "sae" / "layer_3", extracted_small / "layer_3", small_corpus, features), False
    )
    table = concept_detection(ConceptsConfig(run=run, corpus=small_corpus, min_positive_frames=5))
    minor = (table["method"] == "sae") & (table["concept"] == "mode") & (table["value"] == "minor")
    assert minor.sum() == 1
    table["auroc"] = np.where(minor, 0.95, np.minimum(table["auroc"], 0.6))
    save_table(table, run / "concepts" / "concepts.parquet", CONCEPTS)
    return run


def test_steering_truth_steers_the_matched_feature_on_prompts_lacking_its_concept(
    matched_run: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "truth"
    where = [
        str(matched_run),
        "--corpus",
        str(small_corpus),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
    ]
    sweep = ["--strengths", "1,4", "--seeds", "0,1", "--prompts", "1", "--duration", "1"]
    cmd = [CLI, "steering-truth", *where, *sweep]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    summary = load_table(out / "steering_truth.parquet", STEERING_TRUTH)
    assert summary[["concept", "value"]].drop_duplicates().values.tolist() == [["mode", "minor"]]
    assert summary["strength"].tolist() == [1.0, 4.0] and (summary["n"] == 2).all()  # 1 prompt x 2 seeds
    chosen = summary[["chose_steered", "chose_baseline", "chose_control"]].sum(axis=1)
    assert np.allclose(chosen, 1.0)  # every case picks exactly one of its three clips
    assert summary["read_baseline"].nunique() == 1  # the same baselines serve every strength
    gens = pd.read_parquet(out / "generations.parquet")
    assert len(gens) == 4 and gens["prompt"].nunique() == 1
    prompt = gens["prompt"].iloc[0]
    assert "major" in prompt and "minor" not in prompt  # a prompt lacking the concept
    for who in ("p_steered", "p_baseline", "p_control"):
        assert gens[who].between(0, 1).all()
    # Same prompt and seed: one baseline per seed, steered clips that differ with strength.
    clips = sorted(p.name for p in (out / "layer_3" / "mode=minor").glob("*.flac"))
    assert len([c for c in clips if c.startswith("baseline")]) == 2 and len(clips) == 2 + 2 * 2 * 2
    assert (out / "steering_truth.png").is_file() and (out / "steering_truth.svg").is_file()
    assert (out / "run.json").is_file()
    assert "mode" in done.stdout and "minor" in done.stdout


def test_steering_truth_without_concepts_or_matches_says_so(
    matched_run: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    base = [CLI, "steering-truth", "--corpus", str(small_corpus), "--model", str(tiny_model_dir)]
    missing = subprocess.run([*base, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert missing.returncode == 2 and "RUN" in missing.stderr and "sae-core concepts" in missing.stderr
    unmatched = tmp_path / "run"
    (unmatched / "concepts").mkdir(parents=True)
    table = load_table(matched_run / "concepts" / "concepts.parquet", CONCEPTS)
    save_table(table.assign(auroc=0.6), unmatched / "concepts" / "concepts.parquet", CONCEPTS)
    done = subprocess.run([*base, str(unmatched)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "nothing to steer" in done.stdout
    assert load_table(unmatched / "steering_truth" / "steering_truth.parquet", STEERING_TRUTH).empty


def test_prompts_and_reader_labels_come_from_a_real_corpus_tag_column(tmp_path: Path) -> None:
    """Issue 18.6: a corpus with a genre column and no synthetic concepts.csv. Prompts for
    genre=jazz are the captions of tracks that are not jazz; readers label windows by tag."""
    from sae_core.truth.concepts import concept_spans
    from sae_core.truth.steering import _labels_at, prompts_lacking

    rows = [
        {
            "track_id": f"t{i}",
            "path": f"t{i}.wav",
            "caption": f"a {g} tune number {i}",
            "tags": "",
            "genre": g,
        }
        for i, g in enumerate(["jazz", "rock", "jazz", "folk", "rock"])
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    assert prompts_lacking(tmp_path, "genre", "jazz", 5) == [
        "a rock tune number 1",
        "a folk tune number 3",
        "a rock tune number 4",
    ]
    assert prompts_lacking(tmp_path, "genre", "jazz", 1) == ["a rock tune number 1"]
    spans = concept_spans(tmp_path)
    labels = _labels_at(spans[spans["concept"] == "genre"], [("t0", 1.0), ("t3", 250.0), ("nope", 0.0)])
    assert labels.tolist() == ["jazz", "folk", ""]  # a tag holds for its whole track
