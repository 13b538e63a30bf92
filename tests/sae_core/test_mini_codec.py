"""The mini codec (issue 17.1): it learns, it saves as transformers' EncodecModel, it resumes.

Small on purpose (a few tracks, tens of steps): these check the trainer's behaviour, not
the quality of the shipped codec, which benchmarks/bench_mini_models.py measures.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_core.cli import app
from sae_core.mini.codec import CodecTrainConfig, CodecTrainer, _Crops, load_corpus_audio, train_codec
from sae_core.mini.loop import load_state
from sae_core.synth import synth_corpus

CLI = str(Path(sys.executable).parent / "sae-core")


@pytest.fixture(scope="module")
def corpus16k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus16k")
    synth_corpus(out, n_tracks=6, seconds=2, seed=5, sr=16000)
    return out


def _config(corpus: Path, out: Path, **changes: object) -> CodecTrainConfig:
    small = dict(
        num_filters=4, hidden_size=16, codebook_size=32, batch_size=4, crop_seconds=0.5, progress=False
    )
    return CodecTrainConfig(corpus=corpus, out=out, **{**small, "steps": 60, **changes})  # type: ignore[arg-type]


def test_training_lowers_the_reconstruction_loss_and_encodec_reads_its_codes(
    corpus16k: Path, tmp_path: Path
) -> None:
    from transformers import EncodecModel

    cfg = _config(corpus16k, tmp_path / "codec", checkpoint_every=0)
    tracks, _ = load_corpus_audio(corpus16k, cfg.sample_rate)
    crops = _Crops(tracks, int(cfg.crop_seconds * cfg.sample_rate), seed=99)  # not the training crops
    held = crops.batch(0, 8)
    untrained = CodecTrainer(cfg)
    with torch.no_grad():
        untrained.rvq.train()
        before = untrained.losses(untrained.forward(held)[0], held)[1].item()  # k-means-initialised
    metrics = train_codec(cfg)
    loaded = EncodecModel.from_pretrained(cfg.out).eval()
    with torch.no_grad():
        out = loaded.encode(held, bandwidth=cfg.bandwidth)
        codes = out.audio_codes[0]  # [batch, codebooks, frames]
        assert codes.shape == (8, cfg.codebooks, int(cfg.crop_seconds * 50))
        decoded = loaded.decode(out.audio_codes, out.audio_scales).audio_values[..., : held.shape[-1]]
        after = untrained.losses(decoded, held)[1].item()
    assert after < 0.8 * before, (before, after)  # it has learned, on crops it never saw
    assert metrics.steps == 60 and len(metrics.history) == 60 // cfg.log_every + (60 % cfg.log_every > 0)
    # The quantizer copied into EncodecModel is the one trained: same codes as training's RVQ.
    trainer = CodecTrainer(cfg)
    state = load_state(cfg.out)
    trainer.model.load_state_dict(state["model"])
    trainer.rvq.load_state_dict(state["rvq"])
    trainer.set_train(False)
    with torch.no_grad():
        ours = trainer.forward(held)[1].permute(0, 2, 1)
    assert torch.equal(ours, codes)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    corpus16k: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _config(corpus16k, tmp_path / "whole", steps=20, checkpoint_every=10)
    train_codec(whole)
    cut = replace(whole, out=tmp_path / "resumed")
    batch = _Crops.batch

    def killed_at_15(self: _Crops, step: int, size: int) -> torch.Tensor:
        if step == 15:
            raise KeyboardInterrupt  # the machine goes away after the checkpoint at step 10
        return batch(self, step, size)

    monkeypatch.setattr(_Crops, "batch", killed_at_15)
    with pytest.raises(KeyboardInterrupt):
        train_codec(cut)
    monkeypatch.setattr(_Crops, "batch", batch)
    assert not (cut.out / "model.safetensors").exists()  # nothing half-written to load
    with pytest.raises(ValueError, match=r"^resume: .* holds a checkpoint"):
        train_codec(cut)
    train_codec(replace(cut, resume=True))
    a = torch.load(whole.out / "trainer_state.pt", weights_only=False)
    b = torch.load(cut.out / "trainer_state.pt", weights_only=False)
    assert a["step"] == b["step"] == 20 and a["history"] == b["history"]
    for name, value in a["state"]["model"].items():
        assert torch.equal(value, b["state"]["model"][name]), name
    with pytest.raises(ValueError, match="hidden_size"):  # another codec's checkpoint
        train_codec(replace(cut, steps=30, resume=True, hidden_size=32))


def test_the_command_saves_a_loadable_codec_and_names_bad_fields(corpus16k: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-codec"
    args = [CLI, "train-codec", "--corpus", str(corpus16k), "--out", str(out), "--threads", "1"]
    done = subprocess.run(
        [*args, "--steps", "4", "--batch-size", "2", "--crop-seconds", "0.5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "codec saved to" in done.stdout
    assert {"config.json", "model.safetensors", "metrics.json", "run.json"} <= {p.name for p in out.iterdir()}
    run = (out / "run.json").read_text()
    assert '"stage": "train-codec"' in run and str(corpus16k) in run  # the corpus and its checksum
    for extra, field in (
        (["--sample-rate", "22050"], "--sample-rate must be one of 16000, 24000, 32000"),
        (["--codebook-size", "100"], "--codebook-size must be a power of two"),
        (["--steps", "4"], "resume"),  # out already holds a checkpoint
    ):
        # In this process, through the same command: a subprocess each re-imported torch.
        # No --threads: it would set this process's torch threads for the tests after.
        bad = CliRunner().invoke(app, [*args[1:-2], *extra])
        assert bad.exit_code == 2 and field in bad.stderr, (extra, bad.stderr)
        assert bad.exception is None or isinstance(bad.exception, SystemExit)  # no traceback
    missing = CliRunner().invoke(
        app, ["train-codec", "--corpus", str(tmp_path), "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2 and "corpus: no metadata.csv" in missing.stderr
