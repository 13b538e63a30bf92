"""``extract``, ``train``, ``metrics``: activations and the SAEs trained on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from artifact_schemas import FieldError
from artifact_schemas.console import print_error, stdout_console
from sae_core.activations.extract import ExtractConfig, extract_activations
from sae_core.commands._common import option, parse_layers, reporting
from sae_core.sae import TrainConfig, TrainSaeConfig, metrics_table, train_sae
from sae_core.sae.online import OnlineTrainConfig, train_online
from sae_core.sae.stage import SaeOptions


def extract(
    model: str = typer.Option(
        ..., "--model", help="MusicGen directory or hub id (e.g. facebook/musicgen-small)."
    ),
    corpus: Path = typer.Option(..., "--corpus", help="Directory of audio files (+ optional metadata.csv)."),
    layers: str = typer.Option(
        ...,
        "--layers",
        help="Comma-separated decoder layers, e.g. 4,8 (0-based), or 'paper': "
        "layer 2, 25%, 50%, 75% depth and the second-to-last layer (Singh et al.).",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory, e.g. runs/R/acts."),
    backend: str = option(ExtractConfig, "backend"),
    text_condition: str = option(ExtractConfig, "text_condition"),
    window_seconds: float = option(ExtractConfig, "window_seconds"),
    batch_seconds: float = option(ExtractConfig, "batch_seconds"),
    tracks_per_shard: int = option(ExtractConfig, "tracks_per_shard"),
    dtype: str = option(ExtractConfig, "dtype"),
    keep_fraction: float = option(ExtractConfig, "keep_fraction"),
    keep_seed: int = option(ExtractConfig, "keep_seed"),
    bf16_forward: bool = option(ExtractConfig, "bf16_forward"),
    device: str = option(ExtractConfig, "device"),
    threads: int | None = option(ExtractConfig, "threads"),
) -> None:
    """Record residual-stream activations of a corpus at chosen layers.

    Writes layer_<l>/shard_*.safetensors, layer_<l>/index.parquet (track, frame, time of every
    row), layer_<l>/meta.json and run.json. Interrupted runs resume: rerun the same command and
    finished shards are kept. Unreadable audio files are skipped and listed at the end.
    Under 'torchrun --nproc_per_node=N' each rank takes every N-th shard (gloo on CPU).
    --keep-fraction 0.25 stores a seeded quarter of the frames (disk and SAE data shrink
    alike; later stages find each kept row's track and time in the index).

    Example: sae-core extract --model models/tiny --corpus corpus --layers 1,3 --out runs/R/acts
    """
    try:
        with reporting():
            cfg = ExtractConfig(
                model=model,
                layers=parse_layers(layers),
                backend=backend,
                text_condition=text_condition,  # type: ignore[arg-type]  # the config checks it
                window_seconds=window_seconds,
                batch_seconds=batch_seconds,
                tracks_per_shard=tracks_per_shard,
                dtype=dtype,  # type: ignore[arg-type]  # the config checks it
                keep_fraction=keep_fraction,
                keep_seed=keep_seed,
                bf16_forward=bf16_forward,
                corpus=corpus,
                out=out,
                device=device,
                threads=threads,
            )
            result = extract_activations(cfg)
    except KeyboardInterrupt:
        print_error("interrupted", f"finished shards are kept in {out}; rerun the same command to resume")
        raise typer.Exit(130) from None
    if result.rank != 0:
        return
    stdout_console().print(
        f"extracted {result.rows} frames x layers {result.layers} ({result.d_model} dims) to {out}: "
        f"{result.shards_computed} shards computed, {result.shards_reused} reused"
    )
    for item in result.skipped:
        print_error("skipped", item["error"])


def train(
    acts: Path | None = typer.Option(
        None, "--acts", help="One layer's activations, e.g. runs/R/acts/layer_8."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Checkpoint directory, e.g. runs/R/sae/layer_8 (online: runs/R/sae, one layer_<l> each).",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Online: train from this MusicGen's forward passes."
    ),
    corpus: Path | None = typer.Option(None, "--corpus", help="Online: the corpus to run the model over."),
    layers: str | None = typer.Option(None, "--layers", help="Online: comma-separated layers, or 'paper'."),
    k: int = option(SaeOptions, "k"),
    expansion: int = option(SaeOptions, "expansion"),
    num_latents: int | None = option(SaeOptions, "num_latents", help="Overrides --expansion."),
    activation: str = option(SaeOptions, "activation"),
    l1_coefficient: float = option(SaeOptions, "l1_coefficient"),
    batch_size: int = option(TrainConfig, "batch_size"),
    lr: float | None = option(
        TrainConfig, "lr", help="Default: 2e-3 / sqrt(latents / 16384), ten times Gao et al.'s long-run rule."
    ),
    epochs: float = option(TrainConfig, "epochs"),
    max_tokens: int | None = option(TrainConfig, "max_tokens", help="Stop after this many frames."),
    holdout: float = option(TrainConfig, "holdout_fraction"),
    seed: int = option(TrainConfig, "seed"),
    checkpoint_every: int = option(TrainConfig, "checkpoint_every"),
    shuffle_rows: int = option(OnlineTrainConfig, "shuffle_rows", help="Online: frames mixed per layer."),
    window_seconds: float = option(OnlineTrainConfig, "window_seconds", help="Online: context window."),
    batch_seconds: float = option(
        OnlineTrainConfig, "batch_seconds", help="Online: audio seconds per forward batch."
    ),
    bf16_forward: bool = option(
        OnlineTrainConfig, "bf16_forward", help="Online: the forward under bf16 autocast."
    ),
    parallel: str = option(
        OnlineTrainConfig,
        "parallel",
        help="Online under torchrun: data (each rank a share of the tracks, gradients summed: "
        "the forward splits) or layers (rank r trains layers r, r+N, ...; every rank runs every forward).",
    ),
    resume: bool = option(SaeOptions, "resume"),
    device: str = option(SaeOptions, "device"),
    threads: int | None = option(SaeOptions, "threads"),
) -> None:
    """Train a sparse autoencoder on one layer's activations, or online on several layers.

    TopK (Gao et al. 2024) by default, BatchTopK or ReLU+L1 as options; unit-norm decoder,
    AuxK loss for dead latents, b_dec from the data's geometric median, warm-up and linear
    decay. Writes cfg.json + sae.safetensors + metrics.json (FVU, held-out FVU, L0, dead
    fraction) and run.json; --resume continues an interrupted run.
    Online (--model, --corpus, --layers instead of --acts): the model runs teacher-forced
    over the corpus and every chosen layer's SAE trains from the same forward pass, with
    no activations written (docs/sae.md). Under 'torchrun --nproc_per_node=N' the ranks split
    the tracks and train one SAE per layer together (--parallel data), or split the layers.

    Example: sae-core train --acts runs/R/acts/layer_8 --out runs/R/sae/layer_8 --k 32 --expansion 8
    """
    with reporting():
        schedule = TrainConfig(batch_size, lr, epochs, max_tokens, holdout_fraction=holdout, seed=seed,
                               checkpoint_every=checkpoint_every)  # fmt: skip
        shape = {"k": k, "expansion": expansion, "num_latents": num_latents, "activation": activation,
                 "l1_coefficient": l1_coefficient, "train": schedule, "resume": resume, "device": device,
                 "threads": threads}  # fmt: skip
        if model is not None:
            if corpus is None or layers is None:
                raise FieldError("model", "needs {other} and --layers (online training)", other="corpus")
            chosen = parse_layers(layers)
            online = {"shuffle_rows": shuffle_rows, "window_seconds": window_seconds,
                      "batch_seconds": batch_seconds, "bf16_forward": bf16_forward,
                      "parallel": parallel}  # fmt: skip
            cfg = OnlineTrainConfig(model, corpus, out, chosen, **online, **shape)  # type: ignore[arg-type]
            results = train_online(cfg)
            if not results:
                return  # a rank other than 0 of a data-parallel launch: rank 0 reports
        elif acts is None:
            raise FieldError("acts", "is needed (or --model, --corpus and --layers to train online)")
        else:
            sae_cfg, metrics = train_sae(TrainSaeConfig(acts, out, **shape))  # type: ignore[arg-type]
            results = {sae_cfg.layer if sae_cfg.layer is not None else -1: metrics}
    table = Table("layer", *_METRICS, title=f"SAEs in {out}: {activation} k={k}, expansion {expansion}")
    for layer, m in results.items():
        table.add_row(str(layer), *(show(m) for show in _METRICS.values()))
    stdout_console().print(table)


_METRICS: dict[str, Callable[[Any], str]] = {
    "steps": lambda m: str(m.steps),
    "frames": lambda m: str(m.tokens),
    "FVU": lambda m: f"{m.fvu:.3f}",
    "held-out FVU": lambda m: f"{m.holdout_fvu:.3f}",
    "L0": lambda m: f"{m.l0:.1f}",
    "dead": lambda m: f"{m.dead_fraction:.1%}",
    "frames/s": lambda m: f"{m.tokens_per_second:,.0f}",
}


def metrics(
    sae_dir: Path = typer.Argument(..., help="A run's sae/ directory (holding layer_<l>/ checkpoints)."),
) -> None:
    """Print the training metrics of every SAE checkpoint under a directory, one row per layer.

    Example: sae-core metrics runs/R/sae
    """
    with reporting({"sae_dir": "SAE_DIR"}):
        rows = metrics_table(sae_dir)
    formats = {
        "FVU": "{:.3f}",
        "held-out FVU": "{:.3f}",
        "L0": "{:.1f}",
        "dead": "{:.1%}",
        "frames/s": "{:,.0f}",
    }
    table = Table(*rows.columns, title=f"SAEs in {sae_dir}")
    for row in rows.itertuples(index=False):
        table.add_row(*(formats.get(c, "{}").format(v) for c, v in zip(rows.columns, row, strict=True)))
    stdout_console().print(table)
