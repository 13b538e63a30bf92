"""``extract``, ``train``, ``metrics``: activations and the SAEs trained on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from artifact_schemas import FieldError
from artifact_schemas.console import print_error, stdout_console
from sae_core.commands._common import parse_layers, reporting


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
    backend: str = typer.Option("transformers", "--backend", help="transformers or audiocraft."),
    text_condition: str = typer.Option(
        "empty", "--text-condition", help="empty, or caption (metadata.csv captions)."
    ),
    window_seconds: float = typer.Option(
        10.0, "--window-seconds", min=0.1, help="Context window per forward pass."
    ),
    batch_seconds: float = typer.Option(
        40.0, "--batch-seconds", min=0.1, help="Audio seconds per forward batch."
    ),
    tracks_per_shard: int = typer.Option(8, "--tracks-per-shard", min=1, help="Tracks per resumable shard."),
    dtype: str = typer.Option("float16", "--dtype", help="Storage type: float16 or float32."),
    keep_fraction: float = typer.Option(
        1.0, "--keep-fraction", help="Store this share of each window's frames (seeded; e.g. 0.25)."
    ),
    keep_seed: int = typer.Option(0, "--keep-seed", help="Seed of the frames --keep-fraction keeps."),
    bf16_forward: bool = typer.Option(False, "--bf16-forward", help="The decoder under bf16 autocast (GPU)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads (same value = same bytes)."
    ),
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
    from sae_core.activations.extract import ExtractConfig, extract_activations

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
    k: int = typer.Option(32, "--k", min=1, help="Active latents per frame (topk, batchtopk)."),
    expansion: int = typer.Option(8, "--expansion", min=1, help="Latents = expansion x d_model."),
    num_latents: int | None = typer.Option(None, "--num-latents", min=1, help="Overrides --expansion."),
    activation: str = typer.Option("topk", "--activation", help="topk, batchtopk or relu (L1)."),
    l1_coefficient: float = typer.Option(5.0, "--l1-coefficient", help="L1 weight (relu only)."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Frames per step."),
    lr: float | None = typer.Option(
        None, "--lr", help="Default: 2e-3 / sqrt(latents / 16384), ten times Gao et al.'s long-run rule."
    ),
    epochs: float = typer.Option(1.0, "--epochs", min=0.0, help="Passes over the training frames."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Stop after this many frames."),
    holdout: float = typer.Option(0.05, "--holdout", min=0.0, max=0.9, help="Share of tracks held out."),
    seed: int = typer.Option(0, "--seed", min=0),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", min=0, help="Steps between checkpoints."
    ),
    shuffle_rows: int = typer.Option(65536, "--shuffle-rows", min=1, help="Online: frames mixed per layer."),
    window_seconds: float = typer.Option(10.0, "--window-seconds", min=0.1, help="Online: context window."),
    batch_seconds: float = typer.Option(
        40.0, "--batch-seconds", min=0.1, help="Online: audio seconds per forward batch."
    ),
    bf16_forward: bool = typer.Option(
        False, "--bf16-forward", help="Online: the forward under bf16 autocast."
    ),
    parallel: str = typer.Option(
        "data",
        "--parallel",
        help="Online under torchrun: data (each rank a share of the tracks, gradients summed: "
        "the forward splits) or layers (rank r trains layers r, r+N, ...; every rank runs every forward).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
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
    from sae_core.sae import TrainConfig, TrainSaeConfig, train_sae
    from sae_core.sae.online import OnlineTrainConfig, train_online

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
    from sae_core.sae import metrics_table

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
