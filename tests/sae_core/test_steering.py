"""sae-core steer: exact interventions, bit-identical baselines, paired outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from artifact_schemas import FEATURES, STEERING, load_table, save_table
from sae_core.models import Intervention, load_model
from sae_core.sae import SaeConfig, ShardedActivations, SparseCoder, TrainConfig, Trainer
from sae_core.steering.generate import random_like, steering_vector

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def sae_dir(extracted_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sae") / "layer_3"
    source = ShardedActivations(extracted_small / "layer_3", holdout_fraction=0.0)
    cfg = SaeConfig(d_in=64, num_latents=128, k=4, layer=3)
    Trainer(cfg, TrainConfig(batch_size=128, epochs=2, lr=2e-3), source, out, progress=False).fit()
    return out


def test_vectors_absolute_relative_and_random(sae_dir: Path) -> None:
    sae = SparseCoder.load_from_disk(sae_dir)
    direction = sae.W_dec[7].detach() / sae.W_dec[7].detach().norm()
    torch.testing.assert_close(steering_vector(sae, 7, 2.5, None), 2.5 * direction)
    relative = steering_vector(sae, 7, 0.5, beta=4.0)
    torch.testing.assert_close(relative, 0.5 * 4.0 * direction / float(sae.input_scale))
    control = random_like(relative, seed=3)
    assert control.norm() == pytest.approx(float(relative.norm()), rel=1e-5)
    assert abs(float(torch.nn.functional.cosine_similarity(control, relative, dim=0))) < 0.5
    torch.testing.assert_close(control, random_like(relative, seed=3))
    with pytest.raises(ValueError, match="feature 999 does not exist"):
        steering_vector(sae, 999, 1.0, None)


def test_residual_moves_by_exactly_the_vector(
    sae_dir: Path, tiny_model_dir: Path, small_corpus: Path
) -> None:
    model = load_model(str(tiny_model_dir))
    sae = SparseCoder.load_from_disk(sae_dir)
    audio = torch.from_numpy(sf.read(small_corpus / "track_0001.flac", dtype="float32")[0][None, :32000])
    codes = model.encode_audio(audio)
    vector = steering_vector(sae, 11, 3.0, None)
    plain = model.residuals(codes, [1, 3])
    with model.hooks(interventions=[Intervention(3, vector)]):
        steered = model.residuals(codes, [1, 3])
    torch.testing.assert_close(steered[1], plain[1], rtol=0, atol=0)  # upstream layers untouched
    torch.testing.assert_close(steered[3] - plain[3], vector.expand_as(plain[3]), rtol=0, atol=1e-5)


def _steer(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sae-core"), "steer", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_cli_pairs_with_bit_identical_zero_strength(
    sae_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("simple melody\n\na fast piano melody\n")
    features = tmp_path / "features.parquet"
    table = pd.DataFrame(
        {
            "feature_id": range(128),
            "layer": 3,
            "frequency": 0.1,
            "max_activation": 2.0,
            "n_tracks": 3,
            "kept": True,
            "filter_reason": None,
        }
    )
    save_table(table, features, FEATURES)
    out = tmp_path / "steering"
    result = _steer(
        [
            "--model",
            str(tiny_model_dir),
            "--sae",
            str(sae_dir),
            "--features",
            "2,9",
            "--prompts",
            str(prompts),
            "--seeds",
            "0,1",
            "--strengths",
            "0,1",
            "--relative",
            "--features-table",
            str(features),
            "--duration",
            "1",
            "--out",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    pairs = load_table(out / "steering.parquet", STEERING)
    assert len(pairs) == 2 * 2 * 2 * 2  # features x prompts x seeds x strengths
    assert pairs.groupby(["prompt", "seed"])["baseline_path"].nunique().eq(1).all()
    for row in pairs.itertuples():
        steered, baseline = (out / row.path).read_bytes(), (out / row.baseline_path).read_bytes()
        if row.strength == 0:
            assert steered == baseline  # bit for bit: the intervention is the only difference
        else:
            assert steered != baseline
            assert (out / row.random_path).read_bytes() not in (steered, baseline)
        audio, sr = sf.read(out / row.path)
        assert sr == 32000 and len(audio) == 32000 and np.isfinite(audio).all()
    assert pairs.loc[pairs.strength == 1, "vector_norm"].gt(0).all()
    # Issue 34.2: each row says how far (log-mel dB) its steered and control clips are from
    # the baseline, as sae_core.clips.log_mel_distance reads the files; an identical clip is 0.
    from sae_core.clips import log_mel_distance

    for row in pairs.itertuples():
        base, sr = sf.read(out / row.baseline_path)
        for column, path in (("steered_db", row.path), ("random_db", row.random_path)):
            measured = log_mel_distance(sf.read(out / path)[0], base, sr)
            assert getattr(row, column) == pytest.approx(measured, abs=0.05), (column, path)
        if row.strength == 0:
            assert row.steered_db == 0


def test_cli_errors_are_one_clear_line(sae_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("simple melody\n")
    common = [
        "--model",
        str(tiny_model_dir),
        "--sae",
        str(sae_dir),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
    ]
    result = _steer([*common, "--features", "2", "--relative"])
    assert result.returncode == 2 and "--relative needs --features-table" in result.stderr
    result = _steer([*common, "--features", "two"])
    assert result.returncode == 2 and "--features" in result.stderr


def test_the_config_is_resolved_into_a_copy_and_never_changed(tmp_path: Path) -> None:
    # One config from flag to generation (no second "plan" copying its fields): top:N and
    # relative are read from features.parquet into a copy; the caller's config stays as given.
    from artifact_schemas import FieldError
    from sae_core.steering.generate import SteerConfig

    table = pd.DataFrame(
        {
            "feature_id": [0, 1, 2, 3],
            "layer": 3,
            "frequency": 0.1,
            "max_activation": [1.0, 5.0, 9.0, 3.0],
            "n_tracks": 2,
            "kept": [True, True, False, True],
            "filter_reason": [None, None, "too rare", None],
        }
    )
    features = save_table(table, tmp_path / "features.parquet", FEATURES)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("slow piano\n\nfast drums\n")
    cfg = SteerConfig("m", tmp_path, "top:2", prompts, tmp_path / "o", relative=True, features_table=features)
    run = cfg.resolved()
    assert run.features == [1, 3] and run.betas == {1: 5.0, 3: 3.0}  # the unkept feature 2 is not chosen
    assert run.prompts == ["slow piano", "fast drums"] and run.beta(3) == 3.0
    assert cfg.features == "top:2" and cfg.prompts == prompts and cfg.betas is None
    assert run.resolved() == run  # what generate_pairs does again changes nothing
    # Prompts and betas given directly (steering-truth): no files needed, each feature its beta.
    given = SteerConfig("m", tmp_path, [4], ["a"], tmp_path / "o", relative=True, betas={4: 2.0})
    assert given.resolved().beta(4) == 2.0
    with pytest.raises(FieldError) as err:
        SteerConfig("m", tmp_path, [4, 5], ["a"], tmp_path / "o", relative=True, betas={4: 2.0})
    assert err.value.field == "betas" and "[5]" in str(err.value)
