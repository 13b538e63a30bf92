"""``fit-codec``, ``train-codec``, ``train-musicgen``, ``train-clap``: mini models that learn the corpus."""

from __future__ import annotations

import math
from pathlib import Path

from artifact_schemas.console import stdout_console
from sae_core.commands._common import option, parse_list, reporting
from sae_core.mini import clap as mini_clap
from sae_core.mini import codec as mini_codec
from sae_core.mini import musicgen as mini_musicgen
from sae_core.mini import spectral
from sae_core.mini.clap import ClapTrainConfig
from sae_core.mini.codec import CodecTrainConfig
from sae_core.mini.musicgen import MusicgenTrainConfig
from sae_core.mini.recipe import MiniModelsConfig, build_mini_models
from sae_core.mini.spectral import CodecFitConfig


def fit_codec(
    corpus: Path = option(CodecFitConfig, "corpus"),
    out: Path = option(CodecFitConfig, "out"),
    sample_rate: int = option(CodecFitConfig, "sample_rate"),
    n_fft: int = option(CodecFitConfig, "n_fft"),
    hop_length: int = option(CodecFitConfig, "hop_length"),
    pca_dims: int = option(CodecFitConfig, "pca_dims"),
    codebooks: int = option(CodecFitConfig, "codebooks"),
    codebook_size: int = option(CodecFitConfig, "codebook_size"),
    griffin_lim_iters: int = option(CodecFitConfig, "griffin_lim_iters"),
    kmeans_iters: int = option(CodecFitConfig, "kmeans_iters"),
    max_fit_frames: int = option(CodecFitConfig, "max_fit_frames"),
    seed: int = option(CodecFitConfig, "seed"),
    threads: int | None = option(CodecFitConfig, "threads"),
) -> None:
    """Fit a spectral codec on a corpus (no gradient descent; minutes on 2 CPU cores).

    STFT log-magnitude -> PCA -> residual k-means codebooks; decoded by Griffin-Lim.
    Writes codec.json and codec.safetensors (sae-core train-musicgen --codec reads them)
    and run.json with the corpus checksum; prints each codebook's share of entries used.

    Example: sae-core fit-codec --corpus corpus16k --out models/mini/codec
    """
    with reporting():
        fit = spectral.fit_codec(
            CodecFitConfig(
                corpus=corpus, out=out, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                pca_dims=pca_dims, codebooks=codebooks, codebook_size=codebook_size,
                griffin_lim_iters=griffin_lim_iters, kmeans_iters=kmeans_iters,
                max_fit_frames=max_fit_frames, seed=seed, threads=threads,
            )
        )  # fmt: skip
    usage = ", ".join(f"{u:.0%}" for u in fit.codebook_usage)
    stdout_console().print(
        f"codec saved to {out}: {fit.frames} frames, PCA keeps {fit.explained_variance:.1%} of the "
        f"variance, codebook use {usage} ({fit.wall_seconds:.0f} s)"
    )


def mini_models(
    out: Path = option(MiniModelsConfig, "out"),
    corpus: Path = option(MiniModelsConfig, "corpus"),
    only: str = option(MiniModelsConfig, "parts"),
    threads: int | None = option(MiniModelsConfig, "threads"),
) -> None:
    """Retrain the shipped mini models from nothing: corpus, fitted codec, mini MusicGen, mini CLAP.

    The recipe (every config field) is sae_core.mini.recipe; a test checks that the
    shipped weights' run.json files match it. About an hour on 2 CPU cores.

    Example: sae-core mini-models            (what 'make mini-models' runs)
    """
    with reporting():
        written = build_mini_models(
            MiniModelsConfig(
                out=out,
                corpus=corpus,
                parts=tuple(p.strip() for p in parse_list(only, str, "--only")),
                threads=threads,
            )
        )
    stdout_console().print("mini models written: " + ", ".join(str(p) for p in written))


def train_codec(
    corpus: Path = option(CodecTrainConfig, "corpus"),
    out: Path = option(CodecTrainConfig, "out", help="Directory to save the codec into."),
    sample_rate: int = option(CodecTrainConfig, "sample_rate"),
    codebooks: int = option(CodecTrainConfig, "codebooks"),
    codebook_size: int = option(CodecTrainConfig, "codebook_size"),
    steps: int = option(CodecTrainConfig, "steps"),
    batch_size: int = option(CodecTrainConfig, "batch_size", help="Crops per step."),
    crop_seconds: float = option(CodecTrainConfig, "crop_seconds"),
    lr: float = option(CodecTrainConfig, "lr", help="Peak Adam learning rate."),
    seed: int = option(CodecTrainConfig, "seed", help="Seed of the weights and the crops."),
    resume: bool = option(CodecTrainConfig, "resume"),
    device: str = option(CodecTrainConfig, "device"),
    threads: int | None = option(CodecTrainConfig, "threads"),
) -> None:
    """Train a small EnCodec (transformers EncodecModel) on a corpus and save it.

    Waveform L1 + multi-resolution STFT and mel losses, residual VQ with EMA codebooks,
    k-means init and dead-code restarts (no adversarial losses). Writes config.json and
    model.safetensors (EncodecModel.from_pretrained loads them), metrics.json with the
    loss curve, trainer_state.pt for --resume, and run.json with the corpus checksum.

    Example: sae-core train-codec --corpus corpus16k --out models/mini-codec --steps 3000
    """
    with reporting():
        metrics = mini_codec.train_codec(
            CodecTrainConfig(
                corpus=corpus,
                out=out,
                sample_rate=sample_rate,
                codebooks=codebooks,
                codebook_size=codebook_size,
                steps=steps,
                batch_size=batch_size,
                crop_seconds=crop_seconds,
                lr=lr,
                seed=seed,
                resume=resume,
                device=device,
                threads=threads,
            )
        )
    usage = ", ".join(f"{u:.0%}" for u in metrics.codebook_usage)
    stdout_console().print(
        f"codec saved to {out}: {metrics.steps} steps, L1 {metrics.l1:.4f}, spectral loss "
        f"{metrics.stft:.3f}, codebook use {usage}"
    )


def train_musicgen(
    corpus: Path = option(MusicgenTrainConfig, "corpus"),
    codec: Path = option(MusicgenTrainConfig, "codec"),
    out: Path = option(MusicgenTrainConfig, "out"),
    layers: int = option(MusicgenTrainConfig, "layers"),
    hidden_size: int = option(MusicgenTrainConfig, "hidden_size"),
    steps: int = option(MusicgenTrainConfig, "steps"),
    batch_size: int = option(MusicgenTrainConfig, "batch_size"),
    crop_frames: int = option(MusicgenTrainConfig, "crop_frames"),
    lr: float = option(MusicgenTrainConfig, "lr", help="Peak AdamW learning rate."),
    condition_dropout: float = option(MusicgenTrainConfig, "condition_dropout"),
    seed: int = option(MusicgenTrainConfig, "seed", help="Seed of the weights, the batches and the drops."),
    resume: bool = option(MusicgenTrainConfig, "resume"),
    device: str = option(MusicgenTrainConfig, "device"),
    threads: int | None = option(MusicgenTrainConfig, "threads"),
) -> None:
    """Train a mini MusicGen (transformers MusicgenForConditionalGeneration) on a corpus.

    The codec's tokens in the delay pattern, the captions through a small T5 and word
    tokenizer, the condition dropped for --condition-dropout of the examples so that
    classifier-free guidance works. Writes a save_pretrained directory that '--model DIR'
    loads like real weights, metrics.json with the loss curve, run.json and
    trainer_state.pt for --resume.

    --codec is a fitted codec (sae-core fit-codec; saved into the model's codec/) or a
    trained EnCodec (sae-core train-codec; the model's audio_encoder).

    Example: sae-core train-musicgen --corpus corpus16k --codec models/mini/codec --out models/mini/musicgen
    """
    with reporting():
        metrics = mini_musicgen.train_musicgen(
            MusicgenTrainConfig(
                corpus=corpus,
                codec=codec,
                out=out,
                layers=layers,
                hidden_size=hidden_size,
                ffn_dim=4 * hidden_size,
                steps=steps,
                batch_size=batch_size,
                crop_frames=crop_frames,
                lr=lr,
                condition_dropout=condition_dropout,
                seed=seed,
                resume=resume,
                device=device,
                threads=threads,
            )
        )
    stdout_console().print(
        f"MusicGen saved to {out}: {metrics.steps} steps, cross-entropy {metrics.loss:.3f} per token"
    )


def train_clap(
    corpus: Path = option(ClapTrainConfig, "corpus"),
    out: Path = option(ClapTrainConfig, "out"),
    steps: int = option(ClapTrainConfig, "steps"),
    batch_size: int = option(ClapTrainConfig, "batch_size"),
    lr: float = option(ClapTrainConfig, "lr", help="Peak AdamW learning rate."),
    seed: int = option(ClapTrainConfig, "seed", help="Seed of the weights, the batches and the texts."),
    sample_rate: int = option(ClapTrainConfig, "sample_rate"),
    fft_window_size: int = option(ClapTrainConfig, "fft_window_size"),
    hop_length: int = option(ClapTrainConfig, "hop_length"),
    num_mel_bins: int = option(ClapTrainConfig, "num_mel_bins"),
    frequency_min: float = option(ClapTrainConfig, "frequency_min"),
    frequency_max: float = option(ClapTrainConfig, "frequency_max"),
    spec_size: int = option(ClapTrainConfig, "spec_size"),
    patch_size: int = option(ClapTrainConfig, "patch_size"),
    resume: bool = option(ClapTrainConfig, "resume"),
    device: str = option(ClapTrainConfig, "device"),
    threads: int | None = option(ClapTrainConfig, "threads"),
) -> None:
    """Train a mini CLAP (transformers ClapModel) contrastively on a corpus's clips and texts.

    Each track is paired with its caption or one to three of its concepts in words
    ("minor key", "flute"). The front end (mel settings, saved with the extractor)
    defaults to 16 kHz, 128 mel bins over 1-8 kHz: about 0.3 of a semitone a bin.
    Writes a save_pretrained directory that '--clap DIR' loads like real weights,
    metrics.json with the loss curve, run.json and trainer_state.pt for --resume.

    Example: sae-core train-clap --corpus corpus --out models/mini/clap
    """
    with reporting():
        cfg = ClapTrainConfig(
            corpus=corpus, out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
            sample_rate=sample_rate, fft_window_size=fft_window_size, hop_length=hop_length,
            num_mel_bins=num_mel_bins, frequency_min=frequency_min, frequency_max=frequency_max,
            spec_size=spec_size, patch_size=patch_size, resume=resume, device=device, threads=threads,
        )  # fmt: skip
        metrics = mini_clap.train_clap(cfg)
    said = f"{metrics.steps} steps, loss {metrics.loss:.3f} (chance {math.log(cfg.batch_size):.3f})"
    stdout_console().print(f"CLAP saved to {out}: {said}")
