"""``fit-codec``, ``train-codec``, ``train-musicgen``, ``train-clap``: mini models that learn the corpus."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from artifact_schemas.console import stdout_console
from sae_core.commands._common import parse_list, reporting

_DEVICE = typer.Option("cpu", "--device", help="cpu or cuda.")
_THREADS = typer.Option(None, "--threads", min=1, help="CPU threads.")
_RESUME = typer.Option(False, "--resume", help="Continue from the checkpoint in --out.")


def fit_codec(
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (sae-core synth-corpus)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the codec into."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="Audio rate of the codec (Hz)."),
    n_fft: int = typer.Option(1024, "--n-fft", help="STFT size."),
    hop_length: int = typer.Option(
        320, "--hop-length", help="STFT hop: sample_rate / hop frames per second."
    ),
    pca_dims: int = typer.Option(128, "--pca-dims", help="PCA dimensions kept of the log-magnitude frames."),
    codebooks: int = typer.Option(4, "--codebooks", help="Residual codebooks (MusicGen: 4)."),
    codebook_size: int = typer.Option(1024, "--codebook-size", help="Entries per codebook."),
    griffin_lim_iters: int = typer.Option(32, "--griffin-lim-iters", help="Phase reconstruction iterations."),
    kmeans_iters: int = typer.Option(30, "--kmeans-iters", help="k-means iterations per codebook."),
    max_fit_frames: int = typer.Option(
        60000, "--max-fit-frames", help="Frames k-means sees (seeded sample)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the frame sample and the k-means init."),
    threads: int | None = _THREADS,
) -> None:
    """Fit a spectral codec on a corpus (no gradient descent; minutes on 2 CPU cores).

    STFT log-magnitude -> PCA -> residual k-means codebooks; decoded by Griffin-Lim.
    Writes codec.json and codec.safetensors (sae-core train-musicgen --codec reads them)
    and run.json with the corpus checksum; prints each codebook's share of entries used.

    Example: sae-core fit-codec --corpus corpus16k --out models/mini/codec
    """
    from sae_core.mini.spectral import CodecFitConfig, fit_codec

    with reporting():
        fit = fit_codec(
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
    out: Path = typer.Option(
        Path("mini-models"), "--out", help="Where the weights go (the repository's mini-models/)."
    ),
    corpus: Path = typer.Option(
        Path("build/mini-corpus"),
        "--corpus",
        help="Where the training corpus is rendered (reused when it matches).",
    ),
    only: str = typer.Option(
        "codec,musicgen,clap", "--only", help="Which parts to (re)train: codec, musicgen, clap."
    ),
    threads: int | None = _THREADS,
) -> None:
    """Retrain the shipped mini models from nothing: corpus, fitted codec, mini MusicGen, mini CLAP.

    The recipe (every config field) is sae_core.mini.recipe; a test checks that the
    shipped weights' run.json files match it. About an hour on 2 CPU cores.

    Example: sae-core mini-models            (what 'make mini-models' runs)
    """
    from sae_core.mini.recipe import MiniModelsConfig, build_mini_models

    with reporting({"parts": "--only"}):
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
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (sae-core synth-corpus)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the codec into."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="16000, 24000 or 32000 (50 frames/s)."),
    codebooks: int = typer.Option(4, "--codebooks", help="Residual codebooks (MusicGen: 4)."),
    codebook_size: int = typer.Option(256, "--codebook-size", help="Entries per codebook."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(8, "--batch-size", help="Crops per step."),
    crop_seconds: float = typer.Option(1.0, "--crop-seconds", help="Length of each training crop."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak Adam learning rate."),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights and the crops."),
    resume: bool = _RESUME,
    device: str = _DEVICE,
    threads: int | None = _THREADS,
) -> None:
    """Train a small EnCodec (transformers EncodecModel) on a corpus and save it.

    Waveform L1 + multi-resolution STFT and mel losses, residual VQ with EMA codebooks,
    k-means init and dead-code restarts (no adversarial losses). Writes config.json and
    model.safetensors (EncodecModel.from_pretrained loads them), metrics.json with the
    loss curve, trainer_state.pt for --resume, and run.json with the corpus checksum.

    Example: sae-core train-codec --corpus corpus16k --out models/mini-codec --steps 3000
    """
    from sae_core.mini.codec import CodecTrainConfig, train_codec

    with reporting():
        metrics = train_codec(
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
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (captions in metadata.csv)."),
    codec: Path = typer.Option(..., "--codec", help="A trained codec (sae-core train-codec)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    layers: int = typer.Option(4, "--layers", help="Decoder blocks."),
    hidden_size: int = typer.Option(128, "--hidden-size", help="Decoder width (d_model)."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="Tracks per step."),
    crop_frames: int = typer.Option(
        250, "--crop-frames", help="Frames per example, cut at a seeded offset (0: whole tracks)."
    ),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
    condition_dropout: float = typer.Option(
        0.15, "--condition-dropout", help="Share of examples trained without their caption (for CFG)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights, the batches and the drops."),
    resume: bool = _RESUME,
    device: str = _DEVICE,
    threads: int | None = _THREADS,
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
    from sae_core.mini.musicgen import MusicgenTrainConfig, train_musicgen

    with reporting():
        metrics = train_musicgen(
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
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (captions in metadata.csv)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    steps: int = typer.Option(900, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Clip-text pairs per step (distinct tracks)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights, the batches and the texts."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="The feature extractor's rate (Hz)."),
    fft_window_size: int = typer.Option(2048, "--fft-window-size", help="STFT window (samples)."),
    hop_length: int = typer.Option(320, "--hop-length", help="STFT hop (samples)."),
    num_mel_bins: int = typer.Option(128, "--num-mel-bins", help="Mel bins (divides --spec-size)."),
    frequency_min: float = typer.Option(1000.0, "--frequency-min", help="Lowest mel frequency (Hz)."),
    frequency_max: float = typer.Option(8000.0, "--frequency-max", help="Highest mel frequency (Hz)."),
    spec_size: int = typer.Option(256, "--spec-size", help="HTSAT's square spectrogram image side."),
    patch_size: int = typer.Option(8, "--patch-size", help="HTSAT's patch side (and stride)."),
    resume: bool = _RESUME,
    device: str = _DEVICE,
    threads: int | None = _THREADS,
) -> None:
    """Train a mini CLAP (transformers ClapModel) contrastively on a corpus's clips and texts.

    Each track is paired with its caption or one to three of its concepts in words
    ("minor key", "flute"). The front end (mel settings, saved with the extractor)
    defaults to 16 kHz, 128 mel bins over 1-8 kHz: about 0.3 of a semitone a bin.
    Writes a save_pretrained directory that '--clap DIR' loads like real weights,
    metrics.json with the loss curve, run.json and trainer_state.pt for --resume.

    Example: sae-core train-clap --corpus corpus --out models/mini/clap
    """
    from sae_core.mini.clap import ClapTrainConfig, train_clap

    with reporting():
        cfg = ClapTrainConfig(
            corpus=corpus, out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
            sample_rate=sample_rate, fft_window_size=fft_window_size, hop_length=hop_length,
            num_mel_bins=num_mel_bins, frequency_min=frequency_min, frequency_max=frequency_max,
            spec_size=spec_size, patch_size=patch_size, resume=resume, device=device, threads=threads,
        )  # fmt: skip
        metrics = train_clap(cfg)
    said = f"{metrics.steps} steps, loss {metrics.loss:.3f} (chance {math.log(cfg.batch_size):.3f})"
    stdout_console().print(f"CLAP saved to {out}: {said}")
