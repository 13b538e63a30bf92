"""Online SAE training (issue 22.2b): one forward pass feeds every layer's SAE, nothing on disk
but the checkpoints, and an interrupted run resumes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

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


def test_train_command_runs_online_and_names_what_is_missing(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    common = [str(BIN / "sae-core"), "train", "--model", str(tiny_model_dir), "--out", str(tmp_path / "sae")]
    missing = subprocess.run(common, capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "--model needs --corpus and --layers" in missing.stderr
    done = subprocess.run(
        [*common, "--corpus", str(small_corpus), "--layers", "1,3", "--batch-size", "64", "--k", "4",
         "--expansion", "2", "--epochs", "2", "--shuffle-rows", "256", "--window-seconds", "1"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sae" / "layer_1" / "sae.safetensors").is_file()
    assert (tmp_path / "sae" / "layer_3" / "metrics.json").is_file()
    lines = [
        line for line in done.stdout.splitlines() if line.strip().startswith(("│ 1 ", "│ 3 ", "1 ", "3 "))
    ]
    assert len(lines) == 2, done.stdout
