"""sae-core features: statistics that match a brute-force count, filters, diverse example clips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyloudnorm
import pytest
import soundfile as sf
import torch

from artifact_schemas import EXAMPLES, FEATURES, load_table, save_table
from sae_core.features.stage import (
    ExampleSelection,
    FeatureFilters,
    apply_filters,
    compute_feature_stats,
    write_features,
)
from sae_core.sae import SaeConfig, ShardedActivations, SparseCoder, TrainConfig, Trainer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def sae_dir(extracted_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sae") / "layer_3"
    source = ShardedActivations(extracted_small / "layer_3", holdout_fraction=0.0)
    cfg = SaeConfig(d_in=64, num_latents=128, k=4, layer=3)
    Trainer(cfg, TrainConfig(batch_size=128, epochs=3, lr=2e-3), source, out, progress=False).fit()
    return out


@pytest.fixture(scope="module")
def written(
    sae_dir: Path, extracted_small: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory
):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("features")
    selection = ExampleSelection(top=4, clip_seconds=1.0)
    filters = FeatureFilters(min_frequency=0.0, max_frequency=1.0, min_tracks=1, min_max_activation=0.0)
    stats = compute_feature_stats(SparseCoder.load_from_disk(sae_dir), extracted_small / "layer_3", selection)
    features, examples = write_features(
        stats,
        small_corpus,
        out,
        filters,
        selection,
        target_lufs=-20.0,
        progress=False,
    )
    save_table(features, out / "features.parquet", FEATURES)
    save_table(examples, out / "examples.parquet", EXAMPLES)
    return out


def _all_codes(sae_dir: Path, acts: Path) -> tuple[np.ndarray, pd.DataFrame]:
    sae = SparseCoder.load_from_disk(sae_dir)
    source = ShardedActivations(acts, holdout_fraction=0.0)
    data = torch.cat([source.load_shard(i) for i in range(len(source.shards))])
    code = sae.encode(data)
    dense = torch.zeros(len(data), sae.cfg.num_latents).scatter(1, code.latent_indices, code.latent_acts)
    return dense.numpy(), pd.read_parquet(acts / "index.parquet")


def test_statistics_match_a_brute_force_count(written: Path, sae_dir: Path, extracted_small: Path) -> None:
    features = load_table(written / "features.parquet", FEATURES)
    dense, _ = _all_codes(sae_dir, extracted_small / "layer_3")
    np.testing.assert_allclose(features["frequency"], (dense > 0).mean(axis=0))
    np.testing.assert_allclose(features["max_activation"], dense.max(axis=0), rtol=1e-6)
    fired = (dense > 0).sum(axis=0)
    mean = np.divide(dense.sum(axis=0), fired, out=np.zeros(len(fired)), where=fired > 0)
    np.testing.assert_allclose(features["mean_activation"], mean, rtol=1e-5)
    assert [sum(h) for h in features["histogram"]] == fired.tolist()


def test_examples_are_the_diverse_top_moments(written: Path, sae_dir: Path, extracted_small: Path) -> None:
    examples = load_table(written / "examples.parquet", EXAMPLES)
    features = pd.read_parquet(written / "features.parquet").set_index("feature_id")
    dense, index = _all_codes(sae_dir, extracted_small / "layer_3")
    assert len(examples) > 0
    for feature, group in examples.groupby("feature_id"):
        group = group.sort_values("rank")
        assert group["rank"].tolist() == list(range(1, len(group) + 1)) and len(group) <= 4
        assert group["peak_activation"].is_monotonic_decreasing
        assert group["peak_activation"].iloc[0] == pytest.approx(features.loc[feature, "max_activation"])
        for track, same in group.groupby("track_id"):  # at most one per track per 1 s window
            times = np.sort(same["peak_time_s"].to_numpy())
            assert np.all(np.diff(times) >= 1.0), (feature, track, times)
        row = index[(index.track_id == group["track_id"].iloc[0]) & (index.frame == group["frame"].iloc[0])]
        assert dense[row.index[0], feature] == pytest.approx(group["peak_activation"].iloc[0])
        assert features.loc[feature, "n_tracks"] == group["track_id"].nunique()


def test_clips_are_real_windows_at_the_target_loudness(written: Path, small_corpus: Path) -> None:
    examples = load_table(written / "examples.parquet", EXAMPLES)
    for row in examples.head(12).itertuples():
        clip, sr = sf.read(written / row.path)
        assert sr == 32000 and len(clip) == pytest.approx(32000 * (row.end_s - row.start_s), abs=2)
        assert row.start_s <= row.peak_time_s <= row.end_s and row.end_s - row.start_s == pytest.approx(1.0)
        assert np.max(np.abs(clip)) <= 10 ** (-1 / 20) + 1e-3
        loudness = pyloudnorm.Meter(sr).integrated_loudness(clip)
        assert loudness == pytest.approx(-20.0, abs=0.5) or np.max(np.abs(clip)) > 0.85
        source, _ = sf.read(small_corpus / f"{row.track_id}.flac")
        segment = source[round(row.start_s * sr) : round(row.end_s * sr)]
        middle = slice(len(clip) // 4, 3 * len(clip) // 4)  # away from the fades
        assert np.corrcoef(clip[middle], segment[middle])[0, 1] > 0.99


def test_filters_name_the_first_reason() -> None:
    table = pd.DataFrame(
        {
            "feature_id": range(6),
            "layer": 1,
            "frequency": [0.0, 0.5, 0.001, 0.05, 0.05, 0.05],
            "max_activation": [0.0, 3.0, 3.0, 0.01, 3.0, 3.0],
            "n_tracks": [0, 9, 9, 9, 1, 9],
        }
    )
    out = apply_filters(table, FeatureFilters())
    assert out["filter_reason"].tolist() == [
        "dead",
        "too_dense",
        "too_rare",
        "too_weak",
        "single_track",
        None,
    ]
    assert out["kept"].tolist() == [False] * 5 + [True]


def test_cli_features_writes_valid_tables(
    sae_dir: Path, extracted_small: Path, small_corpus: Path, tmp_path: Path
) -> None:
    cmd = [
        str(BIN / "sae-core"),
        "features",
        "--sae",
        str(sae_dir),
        "--acts",
        str(extracted_small / "layer_3"),
        "--corpus",
        str(small_corpus),
        "--out",
        str(tmp_path),
        "--top",
        "3",
        "--clip-seconds",
        "1",
        "--min-tracks",
        "1",
        "--format",
        "wav",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "features kept" in result.stdout
    features = load_table(tmp_path / "features.parquet", FEATURES)
    examples = load_table(tmp_path / "examples.parquet", EXAMPLES)
    assert set(examples["feature_id"]) <= set(features.loc[features["kept"], "feature_id"])
    assert all((tmp_path / p).is_file() and p.endswith(".wav") for p in examples["path"])
    assert (tmp_path / "run.json").is_file()
    bad = subprocess.run(
        [
            str(BIN / "sae-core"),
            "features",
            "--sae",
            "/nonexistent",
            "--acts",
            str(tmp_path),
            "--corpus",
            str(tmp_path),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "--sae /nonexistent" in bad.stderr


def test_tallies_of_parts_merge_into_the_tally_of_the_whole() -> None:
    """What ranks rely on: counts, sums, maxima and top candidates merge exactly, ties included."""
    from sae_core.features.stage import LatentTally
    from sae_core.sae.sparse_coder import EncoderOutput

    rng = np.random.default_rng(5)
    acts = torch.from_numpy(rng.choice([0.0, 0.5, 1.0, 2.0], size=(600, 3)).astype(np.float32))  # many ties
    idx = torch.from_numpy(rng.integers(0, 16, size=(600, 3)))
    rows = rng.permutation(600) * 7  # any unique ids, in any order

    def tally(parts: list[slice]) -> LatentTally:
        total = LatentTally(16, candidates=5)
        for part in parts:
            piece = LatentTally(16, candidates=5)
            for start in range(part.start, part.stop, 50):
                stop = min(start + 50, part.stop)
                piece.add(EncoderOutput(acts[start:stop], idx[start:stop]), rows[start:stop])
            total.merge(piece)
        return total

    whole, split = tally([slice(0, 600)]), tally([slice(400, 600), slice(0, 170), slice(170, 400)])
    assert whole.frames == split.frames == 600
    assert np.array_equal(whole.count, split.count) and np.array_equal(whole.hist, split.hist)
    assert np.array_equal(whole.peak, split.peak) and np.allclose(whole.total, split.total)
    for a, b in zip(whole.pool, split.pool, strict=True):
        assert np.array_equal(a, b)
    feats, _, ids = whole.pool
    assert np.bincount(feats).max() == 5  # each latent keeps its 5 best, ties to the smaller id
    for f in range(16):
        mine = ids[feats == f]
        live = (idx.numpy() == f) & (acts.numpy() > 0)
        pairs = sorted(((-acts.numpy()[live][i], r) for i, r in enumerate(np.repeat(rows, 3)[live.ravel()])))
        assert list(mine) == [r for _, r in pairs[:5]], f


def _extract_fp32(model_dir: Path, corpus: Path, out: Path) -> Path:
    from sae_core.activations.extract import ExtractConfig, extract
    from sae_core.models import load_model

    cfg = ExtractConfig(
        model=str(model_dir), layers=[3], window_seconds=1.0, batch_seconds=1.0, dtype="float32"
    )
    assert extract(load_model(str(model_dir)), cfg, corpus, out, progress=False).finished
    return out / "layer_3"


def test_features_from_the_model_equal_those_from_stored_activations(
    sae_dir: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """After online training nothing is stored: the model's own forward gives the same table
    and the same example moments as an extraction (in fp32, with the same windows)."""
    from sae_core.activations.extract import list_tracks
    from sae_core.features.stage import StreamSource, stream_feature_stats
    from sae_core.models import load_model

    sae = SparseCoder.load_from_disk(sae_dir)
    selection = ExampleSelection(top=4, clip_seconds=1.0)
    stored = compute_feature_stats(
        sae, _extract_fp32(tiny_model_dir, small_corpus, tmp_path / "acts"), selection
    )
    source = StreamSource(load_model(str(tiny_model_dir)), list_tracks(small_corpus), 3, 1.0, 1.0)
    streamed = stream_feature_stats(sae, source, selection, progress=False)
    assert streamed is not None
    exact = ["feature_id", "layer", "frequency", "max_activation", "n_tracks"]
    pd.testing.assert_frame_equal(streamed.features[exact], stored.features[exact])
    assert np.allclose(streamed.features["mean_activation"], stored.features["mean_activation"])
    assert (streamed.features["frequency"] > 0).sum() > 10  # not an empty comparison
    pd.testing.assert_frame_equal(streamed.examples, stored.examples)


def test_features_command_under_torchrun_merges_the_ranks_into_the_one_process_result(
    sae_dir: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    import os

    def run(out: Path, launcher: list[str]) -> subprocess.CompletedProcess[str]:
        cmd = [*launcher, "features", "--sae", str(sae_dir), "--model", str(tiny_model_dir),
               "--corpus", str(small_corpus), "--out", str(out), "--window-seconds", "1",
               "--batch-seconds", "1", "--top", "3", "--clip-seconds", "1", "--min-tracks", "1"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)

    one = run(tmp_path / "one", [str(BIN / "sae-core")])
    assert one.returncode == 0, one.stderr
    two = run(
        tmp_path / "two", [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "sae_core"]
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("features kept") == 1  # rank 0 reports, once
    a, b = (load_table(tmp_path / d / "features.parquet", FEATURES) for d in ("one", "two"))
    exact = ["feature_id", "frequency", "max_activation", "kept", "filter_reason"]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    assert np.allclose(a["mean_activation"], b["mean_activation"])
    ex_a, ex_b = (load_table(tmp_path / d / "examples.parquet", EXAMPLES) for d in ("one", "two"))
    pd.testing.assert_frame_equal(ex_a, ex_b)
    assert len(ex_a) > 0 and all((tmp_path / "two" / p).is_file() for p in ex_b["path"])
    both = subprocess.run(
        [str(BIN / "sae-core"), "features", "--sae", str(sae_dir), "--acts", str(tmp_path), "--model", "m",
         "--corpus", str(small_corpus), "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert both.returncode == 2 and "--acts" in both.stderr and "one of the two" in both.stderr


def test_features_from_the_model_default_to_the_windows_the_sae_was_trained_with(
    sae_dir: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """After online training the SAE sits in RUN/sae/layer_L beside the online run.json: its
    windows and text condition are the features pass's defaults (other windows would feed
    the SAE rows it never saw); flags still override; an offline SAE keeps extraction's."""
    import shutil

    from artifact_schemas import recorded_run
    from sae_core.features.stage import FeaturesConfig

    online = tmp_path / "sae"
    shutil.copytree(sae_dir, online / "layer_3")
    trained = {"window_seconds": 2.5, "batch_seconds": 5.0, "text_condition": "caption"}
    with recorded_run(online, "train-online", config={"model": str(tiny_model_dir), **trained}):
        pass

    def cfg(sae: Path, **flags: object) -> FeaturesConfig:
        return FeaturesConfig(sae, None, small_corpus, tmp_path / "out", model=str(tiny_model_dir), **flags)  # type: ignore[arg-type]

    got = cfg(online / "layer_3")
    assert (got.window_seconds, got.batch_seconds, got.text_condition) == (2.5, 5.0, "caption")
    assert cfg(online / "layer_3", window_seconds=1.0).window_seconds == 1.0
    offline = cfg(sae_dir)
    assert (offline.window_seconds, offline.batch_seconds, offline.text_condition) == (10.0, 40.0, "empty")
