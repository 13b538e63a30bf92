"""Online SAE training (issue 22.2b): one forward pass feeds every layer's SAE, nothing on disk
but the checkpoints, and an interrupted run resumes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from sae_core.sae import SparseCoder, TrainConfig
from sae_core.sae.online import OnlineTrainConfig, train_online
from sae_core.sae.trainer import Trainer

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def _config(model: Path, corpus: Path, out: Path, layers: list[int], **train: object) -> OnlineTrainConfig:
    schedule = TrainConfig(batch_size=64, epochs=6, holdout_fraction=0.2, seed=3, log_every=5, **train)  # type: ignore[arg-type]
    return OnlineTrainConfig(
        model=str(model), corpus=corpus, out=out, layers=layers, k=4, expansion=2,
        train=schedule, window_seconds=1.0, batch_seconds=2.0, shuffle_rows=256, progress=False,
    )  # fmt: skip


def test_online_sae_per_layer_from_one_forward_pass_and_no_activations_on_disk(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_core.models.base import MusicModel

    calls = {"n": 0}
    residuals = MusicModel.residuals

    def counted(self: MusicModel, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        return residuals(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MusicModel, "residuals", counted)
    metrics = train_online(_config(tiny_model_dir, small_corpus, tmp_path / "two", [1, 3]))
    two_layers = calls["n"]
    calls["n"] = 0
    train_online(_config(tiny_model_dir, small_corpus, tmp_path / "one", [1]))
    assert two_layers == calls["n"] > 0  # the second layer costs no forward pass of its own

    assert set(metrics) == {1, 3}
    for layer, m in metrics.items():
        sae = SparseCoder.load_from_disk(tmp_path / "two" / f"layer_{layer}")
        assert sae.cfg.layer == layer and sae.cfg.num_latents == 128
        assert m.steps > 0 and 0 < m.holdout_fvu < 0.8, m  # it learned the held-out tracks
        saved = json.loads((tmp_path / "two" / f"layer_{layer}" / "metrics.json").read_text())
        assert saved["holdout_fvu"] == pytest.approx(m.holdout_fvu)
    written = {p.name for p in (tmp_path / "two").rglob("*.safetensors")}
    assert written == {"sae.safetensors"}  # checkpoints only: no activation shards
    assert (tmp_path / "two" / "run.json").is_file()


def test_interrupted_online_training_resumes_from_its_checkpoint(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sae"
    cfg = _config(tiny_model_dir, small_corpus, out, [1, 3], checkpoint_every=10)
    step = Trainer.train_batch

    def crash_at_25(self: Trainer, x: object) -> bool:
        if self.step == 25:
            raise KeyboardInterrupt
        return step(self, x)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "train_batch", crash_at_25)
    with pytest.raises(KeyboardInterrupt):
        train_online(cfg)
    monkeypatch.setattr(Trainer, "train_batch", step)
    assert not (out / "run.json").exists()  # an interrupted run is not recorded as done
    state = json.loads((out / "online_state.json").read_text())
    assert state["chunk"] >= 0
    cfg.resume = True
    metrics = train_online(cfg)
    for layer in (1, 3):
        history = json.loads((out / f"layer_{layer}" / "metrics.json").read_text())["history"]
        steps = [h["step"] for h in history]
        assert steps == sorted(set(steps)) and steps[0] == 5  # one run, continued, not restarted
        assert metrics[layer].steps == history[-1]["step"] and metrics[layer].holdout_fvu < 0.8


def test_train_command_runs_online_and_two_ranks_train_the_same_saes(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Under torchrun with --parallel layers the layers are dealt out to the ranks; each SAE
    equals the one-process SAE."""
    import os

    from safetensors.torch import load_file

    def run(out: Path, launcher: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [*launcher, "train", "--model", str(tiny_model_dir), "--out", str(out), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)

    single = [str(BIN / "sae-core")]
    missing = run(tmp_path / "x", single)
    assert missing.returncode == 2 and "--model needs --corpus and --layers" in missing.stderr
    options = ["--corpus", str(small_corpus), "--layers", "1,3", "--batch-size", "64", "--k", "4",
               "--expansion", "2", "--epochs", "2", "--shuffle-rows", "256", "--window-seconds", "1",
               "--threads", "1"]  # fmt: skip
    done = run(tmp_path / "one", single, *options)
    assert done.returncode == 0, done.stderr
    rows = ("│ 1 ", "│ 3 ", "1 ", "3 ")
    assert len([line for line in done.stdout.splitlines() if line.strip().startswith(rows)]) == 2, done.stdout
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "sae_core"]
    two = run(tmp_path / "two", torchrun, *options, "--parallel", "layers")
    assert two.returncode == 0, two.stderr
    for layer in (1, 3):
        one_sae = load_file(tmp_path / "one" / f"layer_{layer}" / "sae.safetensors")
        two_sae = load_file(tmp_path / "two" / f"layer_{layer}" / "sae.safetensors")
        assert one_sae.keys() == two_sae.keys()
        for name in one_sae:
            assert torch.equal(one_sae[name], two_sae[name]), (layer, name)
    assert (tmp_path / "two" / "run.json").is_file()


def test_online_sae_is_as_good_as_extract_then_train_at_the_same_settings(
    tiny_model_dir: Path, small_corpus: Path, extracted_small: Path, tmp_path: Path
) -> None:
    """Issue 22's bar: held-out FVU within 0.02 of the offline path (same windows, same
    schedule, the same held-out track; the buffer holds a whole epoch, so both shuffle fully)."""
    from sae_core.sae import TrainSaeConfig, train_sae

    schedule = TrainConfig(batch_size=64, epochs=6, holdout_fraction=0.2, seed=3)
    shape = {"k": 4, "expansion": 2, "train": schedule}
    online = train_online(
        OnlineTrainConfig(
            model=str(tiny_model_dir),
            corpus=small_corpus,
            out=tmp_path / "online",
            layers=[3],
            shuffle_rows=4096,
            progress=False,
            **shape,  # type: ignore[arg-type]
        )
    )[3]
    _, offline = train_sae(
        TrainSaeConfig(acts=extracted_small / "layer_3", out=tmp_path / "offline", **shape)
    )  # type: ignore[arg-type]
    assert online.steps == offline.steps
    assert abs(online.holdout_fvu - offline.holdout_fvu) <= 0.02, (online.holdout_fvu, offline.holdout_fvu)


def test_bf16_forward_trains_an_sae_as_good_as_fp32(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """--bf16-forward: the model under bf16 autocast (GPUs' fast path); the SAEs stay fp32."""
    fp32 = train_online(_config(tiny_model_dir, small_corpus, tmp_path / "fp32", [3]))[3]
    cfg = _config(tiny_model_dir, small_corpus, tmp_path / "bf16", [3])
    cfg.bf16_forward = True
    bf16 = train_online(cfg)[3]
    assert SparseCoder.load_from_disk(tmp_path / "bf16" / "layer_3").W_dec.dtype == torch.float32
    assert abs(bf16.holdout_fvu - fp32.holdout_fvu) < 0.05, (bf16.holdout_fvu, fp32.holdout_fvu)
