"""Labelers and CLAP scores on real audio of the synthetic corpus."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from artifact_schemas import EXAMPLES, LABELS, ArtifactError, load_table, save_table
from sae_core.clap import ClapScorer, build_tiny_clap
from sae_core.labels.labelers import clap_vocabulary_labels, descriptor_labels, manual_labels, score_labels
from sae_core.synth import synth_corpus

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus12")
    synth_corpus(out, n_tracks=12, seconds=10, seed=0)
    return out


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("models") / "tiny-clap")


def _pseudo_features(meta: pd.DataFrame, concept: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """'Features' whose examples are 4 s windows of tracks sharing one value of ``concept``."""
    rows, truth = [], {}
    for fid, (value, group) in enumerate(meta.groupby(concept)):
        for rank, track in enumerate(group["track_id"], 1):
            rows.append(
                {"feature_id": fid, "layer": 0, "rank": rank, "track_id": track, "start_s": 3.0, "end_s": 7.0}
            )
        truth[fid] = str(value)
    return pd.DataFrame(rows), truth


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["librosa", "essentia"])
@pytest.mark.parametrize(("concept", "word"), [("tempo", "{} tempo"), ("mode", "{} key")])
def test_descriptor_labels_match_ground_truth(corpus: Path, concept: str, word: str, backend: str) -> None:
    meta = pd.read_csv(corpus / "metadata.csv")
    paths = {r.track_id: str(corpus / r.path) for r in meta.itertuples()}
    examples, truth = _pseudo_features(meta, concept)
    labels = descriptor_labels(examples, paths, backend=backend)
    got = labels[labels["descriptor"] == concept].set_index("feature_id")["label"]
    agreement = np.mean([got.get(fid) == word.format(value) for fid, value in truth.items()])
    assert agreement >= 0.8, (concept, got.to_dict(), truth)


def test_a_word_every_feature_of_a_layer_gets_is_no_label(corpus: Path) -> None:
    """The demo's corpus read "low pitched" everywhere: each feature's best-agreed word was
    the same, and a study asked it of every feature. Such a word goes; the words that tell
    the features apart stay, and a layer of few features keeps a word they share."""
    meta = pd.read_csv(corpus / "metadata.csv")
    paths = {r.track_id: str(corpus / r.path) for r in meta.itertuples()}
    tracks = list(meta["track_id"][:6])
    tempo = dict(zip(meta["track_id"], meta["tempo"], strict=True))
    heads = {
        t: sf.read(paths[t], frames=4000, dtype="float32", always_2d=True)[0].mean(axis=1) for t in tracks
    }

    def describe(y: np.ndarray, sr: int, backend: str) -> dict[str, str]:
        # Which track the labeler read, told by its first samples (each example is a whole track).
        track = next(t for t, head in heads.items() if np.allclose(head, y[:4000]))
        return {"register": "low pitched", "tempo": f"{tempo[track]} tempo"}

    examples = pd.DataFrame(
        [
            {"feature_id": fid, "layer": 0, "rank": 1, "track_id": t, "start_s": 0.0, "end_s": 10.0}
            for fid, t in enumerate(tracks)
        ]
    )
    labels = descriptor_labels(examples, paths, backend="librosa", describe=describe)
    assert "low pitched" not in set(labels["label"])
    assert set(labels["feature_id"]) == set(range(6))
    assert list(labels.sort_values("feature_id")["label"]) == [f"{tempo[t]} tempo" for t in tracks]
    few = descriptor_labels(examples[:3], paths, backend="librosa", describe=describe)
    assert (few["label"] == "low pitched").sum() == 3


def _clip_examples(corpus: Path, root: Path) -> pd.DataFrame:
    """Two features whose 'clips' are whole corpus tracks copied under ``root``."""
    rows = []
    for fid, tracks in enumerate((["track_0000", "track_0001"], ["track_0002", "track_0003", "track_0004"])):
        for rank, track in enumerate(tracks, 1):
            (root / "clips").mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / f"{track}.flac", root / "clips" / f"{track}.flac")
            rows.append(
                {
                    "feature_id": fid,
                    "layer": 2,
                    "rank": rank,
                    "track_id": track,
                    "start_s": 0.0,
                    "end_s": 10.0,
                    "peak_time_s": 5.0,
                    "peak_activation": 1.0,
                    "path": f"clips/{track}.flac",
                }
            )
    return pd.DataFrame(rows)


def test_clap_vocab_and_scores(corpus: Path, clap_dir: Path, tmp_path: Path) -> None:
    examples = _clip_examples(corpus, tmp_path)
    scorer = ClapScorer.load(str(clap_dir), cache_dir=tmp_path / "cache")
    labels = clap_vocabulary_labels(examples, tmp_path, scorer, ["piano", "drums", "organ", "flute"], top_n=2)
    assert labels.groupby("feature_id").size().tolist() == [2, 2]
    assert labels["confidence"].between(0, 1).all()
    scored, per_clip = score_labels(labels, examples, tmp_path, scorer)
    for row in scored.itertuples():
        paths = [tmp_path / p for p in examples.loc[examples.feature_id == row.feature_id, "path"]]
        sims = scorer.similarity([row.label], paths)[0]
        assert row.clap_score == pytest.approx(float(sims.mean()), abs=1e-6)
    assert len(per_clip) == 2 * 2 + 2 * 3
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5  # one embedding per distinct clip
    again = ClapScorer.load(str(clap_dir), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        again.embed_audio([tmp_path / p for p in examples["path"]]),
        scorer.embed_audio([tmp_path / p for p in examples["path"]]),
    )


def test_manual_labels_name_missing_columns(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("feature_id,layer,label\n3,2,warm pads\n")
    assert manual_labels(good)["labeler"].tolist() == ["manual"]
    bad = tmp_path / "bad.csv"
    bad.write_text("feature,layer,label\n3,2,warm pads\n")
    with pytest.raises(ArtifactError, match=r"bad\.csv: field 'feature_id'"):
        manual_labels(bad)


def test_cli_label_writes_scored_labels(corpus: Path, clap_dir: Path, tmp_path: Path) -> None:
    features_dir = tmp_path / "features" / "layer_2"
    save_table(_clip_examples(corpus, features_dir), features_dir / "examples.parquet", EXAMPLES)
    manual = tmp_path / "manual.csv"
    manual.write_text("feature_id,layer,label,confidence\n1,2,drum groove,0.9\n")
    out = tmp_path / "labels.parquet"
    cmd = [
        str(BIN / "sae-core"),
        "label",
        "--features",
        str(features_dir),
        "--labelers",
        "descriptors,clap-vocab,manual",
        "--corpus",
        str(corpus),
        "--clap",
        str(clap_dir),
        "--manual",
        str(manual),
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    labels = load_table(out, LABELS)
    assert set(labels["labeler"]) == {"descriptors", "clap-vocab", "manual"}
    assert labels["clap_score"].notna().all()
    assert (tmp_path / "clap_examples.parquet").is_file() and (tmp_path / "labels.run.json").is_file()
    missing = subprocess.run(
        [*cmd[:5], "descriptors", "--out", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert missing.returncode == 2 and "needs --corpus" in missing.stderr
