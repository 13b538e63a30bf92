"""The mini MusicGen trainer (issue 17.2): MusicGen's delay pattern, training that learns,
and a saved model that loads through the adapter real checkpoints use.

Small on purpose; the shipped model's prompt adherence is benchmarks/bench_mini_models.py's.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from artifact_schemas import FieldError
from sae_core.cli import app
from sae_core.mini.codec import CodecTrainConfig, train_codec
from sae_core.mini.musicgen import MusicgenTrainConfig, corpus_codes, delay_labels, train_musicgen
from sae_core.mini.spectral import CodecFitConfig, fit_codec
from sae_core.models import load_model
from sae_core.models.codec import EncodecCodec, SpectralCodec, load_codec
from sae_core.models.transformers_musicgen import TransformersMusicGen
from sae_core.synth import synth_corpus

CLI = str(Path(sys.executable).parent / "sae-core")


@pytest.fixture(scope="module")
def codecs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny corpus, an EnCodec trained a few steps on it and a spectral codec fitted to it."""
    root = tmp_path_factory.mktemp("mini-musicgen")
    synth_corpus(root / "corpus", n_tracks=6, seconds=2, seed=6, sr=16000)
    cfg = CodecTrainConfig(
        corpus=root / "corpus",
        out=root / "codec",
        num_filters=4,
        hidden_size=16,
        codebook_size=32,
        batch_size=2,
        crop_seconds=0.5,
        steps=6,
        progress=False,
    )
    train_codec(cfg)
    fit_codec(
        CodecFitConfig(
            corpus=root / "corpus", out=root / "spectral", pca_dims=16, codebook_size=32, kmeans_iters=5
        )
    )
    return {"corpus": root / "corpus", "encodec": root / "codec", "spectral": root / "spectral"}


@pytest.fixture
def corpus_and_codec(codecs: dict[str, Path]) -> tuple[Path, Path]:
    return codecs["corpus"], codecs["encodec"]


def test_labels_enter_the_decoder_where_the_adapter_reads_frames(corpus_and_codec: tuple[Path, Path]) -> None:
    """Training and extraction must agree on the delay pattern, or features misalign in time."""
    from transformers.models.musicgen.modeling_musicgen import shift_tokens_right

    codes = torch.randint(0, 32, (2, 4, 10))
    labels = delay_labels(codes, pad=32)
    assert labels.shape == (2, 10 + 3, 4)
    shifted = shift_tokens_right(labels, 32, 32)  # what the model does with labels: [batch, K, positions]
    model = TransformersMusicGen.__new__(TransformersMusicGen)
    model._pad = 32
    ours = model.delayed_input_ids(codes).reshape(2, 4, 11)  # the adapter's teacher forcing
    assert torch.equal(shifted[..., :11], ours)


@pytest.mark.parametrize("kind", ["encodec", "spectral"])
def test_training_learns_and_the_model_loads_like_real_weights(
    codecs: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    corpus, codec = codecs["corpus"], codecs[kind]
    cfg = MusicgenTrainConfig(
        corpus=corpus,
        codec=codec,
        out=tmp_path / "musicgen",
        layers=2,
        hidden_size=32,
        ffn_dim=64,
        text_hidden_size=16,
        # The fitted codec uses all its entries (the briefly trained EnCodec a few), so
        # its tokens take longer to learn: 150 steps end at 0.70 of the first loss.
        steps=150 if kind == "spectral" else 40,
        batch_size=3,
        crop_frames=0,
        lr=3e-3,
        log_every=5,
        checkpoint_every=0,
        progress=False,
    )
    metrics = train_musicgen(cfg)
    first, last = metrics.history[0]["loss"], metrics.loss
    learned = 0.8 if kind == "spectral" else 0.7
    assert first > 0.8 * math.log(32) and last < learned * first, (first, last)  # from chance to learned
    model = load_model(str(cfg.out))  # the code path of real checkpoints
    assert isinstance(model, TransformersMusicGen)
    # The model directory says which codec it has: a fitted one travels in codec/.
    assert isinstance(model.codec, SpectralCodec if kind == "spectral" else EncodecCodec)
    assert (cfg.out / "codec" / "codec.json").is_file() == (kind == "spectral")
    assert (model.d_model, model.n_layers, model.sample_rate, model.frame_rate, model.num_codebooks) == (
        32,
        2,
        16000,
        50,
        4,
    )
    codes, _ = corpus_codes(load_codec(codec), corpus)
    # Teacher-forced on its training tracks, the saved model scores them as training did.
    with torch.no_grad():
        tok = model.tokenizer(["A slow melody"], return_tensors="pt")
        loss = model.model(**tok, labels=delay_labels(codes[:1], 32)).loss.item()
    assert loss < 0.8 * math.log(32)
    gen, audio = model.generate_codes(["A fast minor flute melody, with drums."], seconds=0.5, seed=0)
    assert gen.shape == (1, 4, 25) and audio.shape == (1, 8000) and torch.isfinite(audio).all()
    # What a listener hears is the model's codec decoding the sampled tokens (not, for a
    # fitted codec, the placeholder EnCodec inside the transformers model).
    assert torch.allclose(audio, model.codec.decode(gen), atol=1e-6)
    residuals = model.residuals(codes[:1], [0, 1], texts=["A slow melody"])
    assert residuals[1].shape == (1, codes.shape[-1], 32)
    if kind == "spectral":
        # Copied without its codec/, the model would decode noise through its placeholder.
        bare = tmp_path / "bare"
        shutil.copytree(cfg.out, bare, ignore=shutil.ignore_patterns("codec"))
        with pytest.raises(FieldError, match="trained over a fitted codec, which is missing"):
            load_model(str(bare))
        # Retrained over an EnCodec in the same --out, the old fitted codec must not stay.
        (cfg.out / "trainer_state.pt").unlink()  # else the loop offers to resume the old run
        train_musicgen(replace(cfg, codec=codecs["encodec"], steps=2))
        assert not (cfg.out / "codec").exists()
        assert isinstance(load_model(str(cfg.out)).codec, EncodecCodec)  # type: ignore[attr-defined]


def test_the_command_names_bad_fields(corpus_and_codec: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, codec = corpus_and_codec
    # In this process, through the same command: a subprocess each re-imported torch. No
    # --threads: it would set this process's torch threads for the tests after.
    base = ["train-musicgen", "--corpus", str(corpus), "--out", str(tmp_path / "m")]
    for extra, field in (
        (["--codec", str(tmp_path)], "codec: no codec in"),
        (["--codec", str(codec), "--crop-frames", "500"], "crop_frames: 500 is longer than the tracks"),
        (["--codec", str(codec), "--condition-dropout", "1.5"], "--condition-dropout must be in [0, 1)"),
        (["--codec", str(codec), "--hidden-size", "30"], "heads"),
    ):
        bad = CliRunner().invoke(app, [*base, *extra])
        assert bad.exit_code == 2 and field in bad.stderr, (extra, bad.stderr)
        assert bad.exception is None or isinstance(bad.exception, SystemExit)  # no traceback
