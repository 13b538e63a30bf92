"""Train SAEs online: the model teacher-forced over the corpus, one SAE per layer fed by the
same forward pass, no activations on disk (issue 22.2b; the design of EleutherAI's sparsify).

At the paper's scale every frame of five layers of MusicGen-Large is ~1.6 TB; online
training reads the audio instead. Each forward batch of windows (``batch_seconds``)
gives rows for every chosen layer; each layer's rows go through its own shuffle
buffer (``shuffle_rows``: frames of many tracks mixed, so a batch is not one track's
neighbouring frames) into its own :class:`~sae_core.sae.trainer.Trainer`. The layers
step in lockstep (a forward gives every layer the same number of rows).

The order is fixed by ``(seed, epoch)``: tracks are shuffled per epoch and buffers
permuted with a seeded generator. Whole tracks are held out by the same stable hash
as extraction's ``ShardedActivations``; their held-out FVU is measured in one more
pass at the end. Each layer's checkpoint is the offline trainer's, in
``out/layer_<l>/`` (cfg.json, sae.safetensors, metrics.json, trainer_state.pt), so
``features``, ``steer`` and ``--resume`` read it as they read any other.

Resume: checkpoints are written every ``train.checkpoint_every`` steps with the stream's
position (``online_state.json``); a resumed run continues with the next forward batch of
the same order. Frames waiting in the shuffle buffers at the checkpoint (at most
``shuffle_rows`` per layer) are not replayed, so a resumed run is close to, not
bit-for-bit, an uninterrupted one (the offline trainer is exact).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from artifact_schemas import FieldError, recorded_run, write_text_atomic
from artifact_schemas.console import step_progress
from sae_core.runtime import barrier, init_distributed, rank, set_threads, world_size
from sae_core.sae.data import Split, stable_fraction
from sae_core.sae.stage import SaeOptions
from sae_core.sae.trainer import HoldoutStats, Trainer, TrainMetrics

STATE = "online_state.json"


@dataclass
class OnlineTrainConfig(SaeOptions):
    """What ``train_online`` needs; validated on construction, naming the field at fault."""

    model: str
    corpus: Path
    out: Path
    """Checkpoints go to ``out/layer_<l>/`` (e.g. runs/R/sae)."""
    layers: list[int] | Literal["paper"]
    window_seconds: float = 10.0
    batch_seconds: float = 40.0
    text_condition: Literal["empty", "caption"] = "empty"
    shuffle_rows: int = 65536
    """Frames mixed in each layer's buffer before batches are drawn from it."""
    backend: str = "transformers"
    bf16_forward: bool = False
    """Run the model's forward under bf16 autocast (GPUs; the SAEs still train in fp32)."""
    progress: bool = True

    def __post_init__(self) -> None:
        self.corpus, self.out = Path(self.corpus), Path(self.out)
        if not self.corpus.is_dir():
            raise FieldError("corpus", f"{self.corpus}: no such directory")
        if self.layers != "paper" and (not self.layers or min(self.layers) < 0):
            raise FieldError("layers", f"must be layer numbers >= 0 or 'paper', got {self.layers}")
        self.check_options()
        if self.text_condition not in ("empty", "caption"):
            raise FieldError("text_condition", f"must be empty or caption, got {self.text_condition!r}")
        for name in ("window_seconds", "batch_seconds"):
            if not getattr(self, name) > 0:
                raise FieldError(name, f"must be > 0, got {getattr(self, name)}")
        if self.shuffle_rows < self.train.batch_size:
            raise FieldError("shuffle_rows", f"must be >= the batch size {self.train.batch_size}")

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


@dataclass
class _Planned:
    """What a Trainer asks of its source before training: the width and the rows per epoch
    (estimated from the audio's length; the schedule needs it, the rows come from the stream)."""

    d_in: int
    rows: int

    def count(self, split: Split) -> int:
        return self.rows if split == "train" else 0

    def batches(self, batch_size: int, seed: int, epoch: int, split: Split) -> Iterator[Tensor]:
        raise NotImplementedError("online training feeds its trainers from the model's forward passes")

    def sample(self, n: int, seed: int) -> Tensor:
        raise NotImplementedError("online training initialises from the first shuffle buffer")


class _Shuffler:
    """Rows in, seeded-permuted batches of ``batch_size`` out once ``capacity`` rows wait."""

    def __init__(self, batch_size: int, capacity: int, seed: int) -> None:
        self.batch_size, self.capacity, self.seed = batch_size, capacity, seed
        self.parts: list[Tensor] = []
        self.waiting = 0
        self.flushes = 0

    def add(self, rows: Tensor) -> list[Tensor]:
        self.parts.append(rows)
        self.waiting += rows.shape[0]
        return self.flush() if self.waiting >= self.capacity else []

    def flush(self) -> list[Tensor]:
        """Every whole batch of what waits, shuffled; the remainder keeps waiting."""
        if not self.parts:
            return []
        rows = torch.cat(self.parts)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.flushes)
        rows = rows[torch.randperm(rows.shape[0], generator=g)]
        self.flushes += 1
        n = rows.shape[0] // self.batch_size * self.batch_size
        self.parts = [rows[n:]] if n < rows.shape[0] else []
        self.waiting = rows.shape[0] - n
        return list(rows[:n].split(self.batch_size)) if n else []


def _split_tracks(tracks: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """(training, held-out) tracks: whole tracks by a stable hash of their id."""
    held = [t for t in tracks if stable_fraction(t.track_id) < fraction]
    if fraction > 0 and not held and len(tracks) > 1:
        held = [min(tracks, key=lambda t: stable_fraction(t.track_id))]  # too few to hash out
    if len(held) == len(tracks):
        held = held[:-1]
    names = {t.track_id for t in held}
    return [t for t in tracks if t.track_id not in names], held


def _frames(tracks: list[Any], frame_rate: float) -> int:
    return sum(math.ceil(sf.info(t.path).duration * frame_rate) for t in tracks)


def _forward(
    model: Any, cfg: OnlineTrainConfig, layers: list[int], tracks: list[Any], skip: int = 0
) -> Iterator[tuple[int, dict[int, Tensor]]]:
    """(chunk number, rows of every layer) per forward batch of windows, after ``skip`` chunks."""
    from sae_core.extract import batch_residuals, window_batches

    for chunk, batch in enumerate(window_batches(model, tracks, cfg.window_seconds, cfg.batch_seconds, [])):
        if chunk < skip:
            continue  # resuming: these were trained on before the checkpoint
        acts, _ = batch_residuals(model, batch, layers, cfg.text_condition, cfg.bf16_forward)
        yield chunk, {layer: acts[layer].reshape(-1, model.d_model).float() for layer in layers}


def train_online(cfg: OnlineTrainConfig) -> dict[int, TrainMetrics]:
    """Train one SAE per layer of ``cfg.layers`` from the model's forward passes over the corpus."""
    from sae_core.extract import list_tracks
    from sae_core.models import load_model, paper_layers

    set_threads(cfg.threads)
    device = init_distributed(cfg.device)
    model = load_model(cfg.model, backend=cfg.backend, device=device)
    chosen = paper_layers(model.n_layers) if cfg.layers == "paper" else sorted(set(cfg.layers))
    for layer in chosen:
        model._check_layer(layer)
    # Under torchrun the layers are dealt out to the ranks: every rank runs the same
    # forward passes in the same order and trains its own layers' SAEs, so each SAE is
    # exactly the one a single process would train (tested with two CPU ranks).
    layers = chosen[rank() :: world_size()]
    if not layers:
        raise FieldError("layers", f"{len(chosen)} layers for {world_size()} ranks: at least one per rank")
    train_tracks, held = _split_tracks(list_tracks(cfg.corpus), cfg.train.holdout_fraction)
    planned = _Planned(model.d_model, _frames(train_tracks, model.frame_rate))
    trainers = {layer: _trainer(cfg, model.d_model, layer, planned, device) for layer in layers}
    recording = (
        recorded_run(
            cfg.out, "train-online", config=cfg.record(), seeds={"seed": cfg.train.seed}, inputs=[cfg.corpus]
        )
        if rank() == 0
        else contextlib.nullcontext()
    )
    with recording:
        _run(cfg, model, layers, train_tracks, trainers)
        stats = {layer: HoldoutStats() for layer in layers}
        for _, rows in _forward(model, cfg, layers, held):
            for layer in layers:
                stats[layer].add(trainers[layer].sae, rows[layer].to(trainers[layer].device))
        metrics = {layer: trainers[layer].finish(stats[layer]) for layer in layers}
        barrier()  # run.json only once every rank's SAEs are written
    return metrics


def _trainer(cfg: OnlineTrainConfig, d_model: int, layer: int, planned: _Planned, device: str) -> Trainer:
    return Trainer(
        cfg.sae_config(d_model, layer),
        cfg.train,
        planned,
        cfg.out / f"layer_{layer}",
        device=device,
        progress=False,
    )


def _run(
    cfg: OnlineTrainConfig, model: Any, layers: list[int], tracks: list[Any], trainers: dict[int, Trainer]
) -> None:
    """The training passes: epochs of the shuffled track order until every trainer is done."""
    state_path = cfg.out / (STATE if world_size() == 1 else f"online_state.rank{rank()}.json")
    epoch, skip = 0, 0
    if cfg.resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"resume: no {state_path.name} in {cfg.out}; nothing to resume")
        position = json.loads(state_path.read_text())
        epoch, skip = int(position["epoch"]), int(position["chunk"]) + 1
        for trainer in trainers.values():
            trainer.start(resume=True)
    first = next(iter(trainers.values()))
    initialised = cfg.resume

    def consume(ready: dict[int, list[Tensor]], chunk: int) -> None:
        nonlocal initialised
        if not initialised:  # the first buffer is the data the SAEs start from
            for layer in layers:
                trainers[layer].start(resume=False, sample=torch.cat(ready[layer])[:65536])
            initialised = True
        if _steps(trainers, layers, ready, first):
            write_text_atomic(state_path, json.dumps({"epoch": epoch, "chunk": chunk}) + "\n")

    with step_progress(disable=not cfg.progress) as bar:
        task = bar.add_task(
            f"SAEs at layers {layers}", total=first.total_steps, completed=first.step, info=""
        )
        while first.step < first.total_steps:
            order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(tracks))
            shufflers = {
                layer: _Shuffler(
                    cfg.train.batch_size, cfg.shuffle_rows, cfg.train.seed + 7919 * epoch + layer
                )
                for layer in layers
            }
            produced, chunk = False, skip - 1
            for chunk, rows in _forward(model, cfg, layers, [tracks[i] for i in order], skip):
                ready = {layer: shufflers[layer].add(rows[layer]) for layer in layers}
                if ready[layers[0]]:
                    produced = True
                    consume(ready, chunk)
                    bar.update(task, completed=first.step, info=f"fvu {first.fvu_history[-1]:.3f}")
                if first.step >= first.total_steps:
                    break
            else:  # the end of the epoch: what waits in the buffers
                ready = {layer: shufflers[layer].flush() for layer in layers}
                if ready[layers[0]]:
                    produced = True
                    consume(ready, chunk)
            if not produced and skip == 0:
                raise ValueError(f"corpus: {cfg.corpus} holds fewer training frames than one batch")
            epoch, skip = epoch + 1, 0
    write_text_atomic(state_path, json.dumps({"epoch": epoch, "chunk": -1}) + "\n")


def _steps(
    trainers: dict[int, Trainer], layers: list[int], ready: dict[int, list[Tensor]], first: Trainer
) -> bool:
    """Train every layer on its ready batches; True when a checkpoint was written."""
    checkpointed = False
    for i in range(len(ready[layers[0]])):
        if first.step >= first.total_steps:
            break
        for layer in layers:
            checkpointed |= trainers[layer].train_batch(ready[layer][i].to(trainers[layer].device))
    return checkpointed
