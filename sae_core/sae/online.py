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

Under ``torchrun`` (``parallel``, issue 38): ``data`` deals each epoch's shuffled track
order to the ranks (rank r reads tracks r, r+N, ... of it, as torch's DistributedSampler
deals) and the ranks step one SAE per layer together, its gradients summed over them
(``Trainer(data_parallel=True)``): one forward per frame, N x ``batch_size`` frames a
step. Each rank keeps its own position (``online_state.rank<r>.json``, with its tracks),
so a restarted launch resumes every rank in its own share. ``layers`` deals the layers
instead: every rank runs every forward.
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
from artifact_schemas.settings import check_settings, same_as, setting
from sae_core.activations.extract import ExtractConfig, batch_residuals, list_tracks, window_batches
from sae_core.layers import LayerChoice, check_layers, resolve_layers
from sae_core.models import load_model
from sae_core.runtime import (
    Parallel,
    barrier,
    every_rank,
    gather_objects,
    init_distributed,
    rank,
    set_threads,
    world_size,
)
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
    layers: LayerChoice
    window_seconds: float = same_as(ExtractConfig, "window_seconds")
    batch_seconds: float = same_as(ExtractConfig, "batch_seconds")
    text_condition: Literal["empty", "caption"] = same_as(ExtractConfig, "text_condition")
    shuffle_rows: int = setting(65536, ge=1)
    """Frames mixed in each layer's buffer before batches are drawn from it."""
    backend: str = same_as(ExtractConfig, "backend")
    bf16_forward: bool = False
    """Run the model's forward under bf16 autocast (GPUs; the SAEs still train in fp32)."""
    parallel: Parallel = setting(Parallel.DATA, choices=tuple(Parallel))
    """Under torchrun: ``data`` splits the tracks over the ranks and sums the SAEs' gradients
    (the forward splits; a step is N x ``batch_size`` frames); ``layers`` deals the layers
    (every rank runs every forward; each SAE is exactly the one-process SAE)."""
    progress: bool = True

    def __post_init__(self) -> None:
        self.corpus, self.out = Path(self.corpus), Path(self.out)
        check_settings(self)
        self.parallel = Parallel(self.parallel)
        if not self.corpus.is_dir():
            raise FieldError("corpus", f"{self.corpus}: no such directory")
        self.layers = check_layers(self.layers)
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

    for chunk, batch in enumerate(window_batches(model, tracks, cfg.window_seconds, cfg.batch_seconds, [])):
        if chunk < skip:
            continue  # resuming: these were trained on before the checkpoint
        acts, _ = batch_residuals(model, batch, layers, cfg.text_condition, cfg.bf16_forward)
        yield chunk, {layer: acts[layer].reshape(-1, model.d_model).float() for layer in layers}


Step = tuple[int, dict[int, Tensor], dict[int, list[Tensor]]]
"""(chunk, one batch per layer, the shuffle-buffer flush it came from: every layer's batches)."""


class TrainingStream:
    """The batches a rank trains on: its tracks' forward batches, through one shuffle buffer
    per layer, one batch per layer at a time. ``forward_passes`` counts the model's forwards.

    The order depends only on the tracks, the epoch and ``cfg``, so a test (or a resumed
    run) can rebuild any rank's batches from its tracks.
    """

    def __init__(self, model: Any, cfg: OnlineTrainConfig, layers: list[int], forward_passes: int = 0):
        self.model, self.cfg, self.layers = model, cfg, layers
        self.forward_passes = forward_passes

    def steps(self, tracks: list[Any], epoch: int, skip: int = 0) -> Iterator[Step]:
        """One epoch over ``tracks`` (in this order), after its first ``skip`` chunks."""
        seed, batch_size = self.cfg.train.seed, self.cfg.train.batch_size
        shufflers = {
            layer: _Shuffler(batch_size, self.cfg.shuffle_rows, seed + 7919 * epoch + layer)
            for layer in self.layers
        }
        chunk = skip - 1
        for chunk, rows in _forward(self.model, self.cfg, self.layers, tracks, skip):
            self.forward_passes += 1
            yield from self._each({layer: shufflers[layer].add(rows[layer]) for layer in self.layers}, chunk)
        # The end of the epoch: what waits in the buffers.
        yield from self._each({layer: shufflers[layer].flush() for layer in self.layers}, chunk)

    def _each(self, ready: dict[int, list[Tensor]], chunk: int) -> Iterator[Step]:
        for i in range(len(ready[self.layers[0]])):
            yield chunk, {layer: ready[layer][i] for layer in self.layers}, ready


def _epoch_tracks(tracks: list[Any], seed: int, epoch: int, me: int = 0, ranks: int = 1) -> list[Any]:
    """Rank ``me``'s tracks of an epoch, in order: every ``ranks``-th of the epoch's shuffled
    order (torch's DistributedSampler deals so), so the ranks' shares are disjoint and
    together every track; one rank reads them all."""
    order = np.random.default_rng([seed, epoch]).permutation(len(tracks))
    return [tracks[i] for i in order[me::ranks]]


def _together(steps: Iterator[Step], ranks: int, device: str) -> Iterator[Step]:
    """``steps`` while every rank has one: the ranks step together, so an epoch ends for all
    when one rank's share runs out (the others' last batches of it are dropped: at most
    what one share of the tracks holds more than another)."""
    for step in steps:
        if ranks > 1 and not every_rank(True, device):
            return
        yield step
    if ranks > 1:
        every_rank(False, device)


def train_online(cfg: OnlineTrainConfig) -> dict[int, TrainMetrics]:
    """Train one SAE per layer of ``cfg.layers`` from the model's forward passes over the corpus.

    Under torchrun with ``parallel`` ``data`` only rank 0 returns the metrics (the others
    return an empty dict); with ``layers`` each rank returns its own layers'.
    """

    set_threads(cfg.threads)
    device = init_distributed(cfg.device)
    model = load_model(cfg.model, backend=cfg.backend, device=device)
    chosen = resolve_layers(cfg.layers, model.n_layers)
    for layer in chosen:
        model._check_layer(layer)
    data_parallel = cfg.parallel == Parallel.DATA and world_size() > 1
    me, ranks = (rank(), world_size()) if data_parallel else (0, 1)
    # Layer-dealing: every rank runs the same forward passes in the same order and trains
    # its own layers' SAEs, so each SAE is exactly the one a single process would train
    # (tested with two CPU ranks).
    layers = chosen if cfg.parallel == Parallel.DATA else chosen[rank() :: world_size()]
    if not layers:
        raise FieldError("layers", f"{len(chosen)} layers for {world_size()} ranks: at least one per rank")
    train_tracks, held = _split_tracks(list_tracks(cfg.corpus), cfg.train.holdout_fraction)
    if len(train_tracks) < ranks:
        raise FieldError(
            "corpus", f"{len(train_tracks)} training tracks for {ranks} ranks: at least one per rank"
        )
    planned = _Planned(model.d_model, _frames(train_tracks, model.frame_rate))
    trainers = {
        layer: Trainer(
            cfg.sae_config(model.d_model, layer),
            cfg.train,
            planned,
            cfg.out / f"layer_{layer}",
            device=device,
            progress=False,
            data_parallel=data_parallel,
        )
        for layer in layers
    }
    recording = (
        recorded_run(
            cfg.out, "train-online", config=cfg.record(), seeds={"seed": cfg.train.seed}, inputs=[cfg.corpus]
        )
        if rank() == 0
        else contextlib.nullcontext()
    )
    with recording:
        _run(cfg, model, layers, train_tracks, trainers, me, ranks)
        stats = {layer: HoldoutStats() for layer in layers}
        for _, rows in _forward(model, cfg, layers, held[me::ranks]):
            for layer in layers:
                stats[layer].add(trainers[layer].sae, rows[layer].to(trainers[layer].device))
        if data_parallel:
            stats = {layer: _over_ranks(stats[layer]) for layer in layers}
        metrics = {layer: trainers[layer].finish(stats[layer]) for layer in layers}
        barrier()  # run.json only once every rank's SAEs are written
    return metrics if trainers[layers[0]].writes else {}


def _over_ranks(stats: HoldoutStats) -> HoldoutStats:
    """Every rank's held-out statistics merged, in rank order (the same on every rank)."""
    if stats.mean is not None:
        stats.mean = stats.mean.cpu()
    merged = HoldoutStats()
    for part in gather_objects(stats):
        merged.merge(part)
    return merged


def _run(
    cfg: OnlineTrainConfig,
    model: Any,
    layers: list[int],
    tracks: list[Any],
    trainers: dict[int, Trainer],
    me: int,
    ranks: int,
) -> None:
    """The training passes: epochs of this rank's share of the shuffled track order (all of
    it without data parallelism) until every trainer is done."""
    state_path = cfg.out / (STATE if world_size() == 1 else f"online_state.rank{rank()}.json")
    first = next(iter(trainers.values()))
    epoch, skip, forwards = 0, 0, 0
    if cfg.resume:
        epoch, skip, forwards = _position(state_path, cfg, tracks, me, ranks)
        for trainer in trainers.values():
            trainer.start(resume=True)
    stream = TrainingStream(model, cfg, layers, forwards)
    initialised = cfg.resume

    def save_position(chunk: int, shard: list[Any]) -> None:
        position = {
            "epoch": epoch,
            "chunk": chunk,
            "rank": me,
            "ranks": ranks,
            "forward_passes": stream.forward_passes,
            "tracks": [t.track_id for t in shard],
        }
        write_text_atomic(state_path, json.dumps(position) + "\n")

    with step_progress(disable=not cfg.progress or not first.writes) as bar:
        task = bar.add_task(
            f"SAEs at layers {layers}", total=first.total_steps, completed=first.step, info=""
        )
        while first.step < first.total_steps:
            shard = _epoch_tracks(tracks, cfg.train.seed, epoch, me, ranks)
            stepped, chunk = False, skip - 1
            for chunk, batch, flush in _together(stream.steps(shard, epoch, skip), ranks, first.device):
                if not initialised:  # the first buffer is the data the SAEs start from
                    for layer in layers:
                        trainers[layer].start(resume=False, sample=torch.cat(flush[layer])[: 65536 // ranks])
                    initialised = True
                stepped = True
                checkpointed = False
                for layer in layers:
                    checkpointed |= trainers[layer].train_batch(batch[layer].to(trainers[layer].device))
                if checkpointed:
                    save_position(chunk, shard)
                bar.update(task, completed=first.step, info=f"fvu {first.fvu_history[-1]:.3f}")
                if first.step >= first.total_steps:
                    break
            if not stepped and skip == 0:
                per_rank = f" (each of {ranks} ranks' share)" if ranks > 1 else ""
                raise ValueError(f"corpus: {cfg.corpus} holds fewer training frames than one batch{per_rank}")
            if first.step >= first.total_steps:
                save_position(chunk, shard)  # where it ended: a resume finds nothing left
                break
            epoch, skip = epoch + 1, 0


def _position(
    state_path: Path, cfg: OnlineTrainConfig, tracks: list[Any], me: int, ranks: int
) -> tuple[int, int, int]:
    """(epoch, first chunk to run, forward passes so far) of this rank's saved position."""
    if not state_path.is_file():
        raise FileNotFoundError(f"resume: no {state_path.name} in {cfg.out}; nothing to resume")
    position = json.loads(state_path.read_text())
    epoch = int(position["epoch"])
    if position.get("ranks", 1) != ranks:
        raise ValueError(
            f"resume: {state_path} was written by a launch of {position['ranks']} data-parallel "
            f"rank(s), this one has {ranks}: resume with the same --parallel and number of ranks"
        )
    shard = [t.track_id for t in _epoch_tracks(tracks, cfg.train.seed, epoch, me, ranks)]
    if position.get("tracks", shard) != shard:
        raise ValueError(f"resume: the corpus {cfg.corpus} changed since {state_path} was written")
    return epoch, int(position["chunk"]) + 1, int(position.get("forward_passes", 0))
