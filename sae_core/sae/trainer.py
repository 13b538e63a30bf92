"""Training loop: Adam, warm-up and linear decay, AuxK, unit-norm decoder, checkpoints, resume.

Data parallelism (``data_parallel``, under ``torchrun``): every rank holds the same SAE and
steps it on its own ``batch_size`` rows. The losses are normalised by the whole step's
variance (``SparseCoder.forward``'s ``across``) and the gradients summed over the ranks, so
a step of N ranks is the step one process would take on their N x ``batch_size`` rows at
once (tested with two CPU ranks against one); which latents fired is summed too, so AuxK's
dead latents are the same everywhere. Rank 0 writes the checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from artifact_schemas import atomic_path, write_text_atomic
from artifact_schemas.console import step_progress
from sae_core.runtime import gather_rows, rank, sum_over_ranks
from sae_core.sae.config import SaeConfig, TrainConfig
from sae_core.sae.data import ActivationSource
from sae_core.sae.sparse_coder import SparseCoder

log = logging.getLogger(__name__)


def training_problems(metrics: TrainMetrics) -> list[str]:
    """What a user must hear about a finished run: an SAE that reconstructs worse than the
    mean (held-out FVU >= 1), or one whose latents are mostly dead (issue 38: a run with the
    old default learning rate ended at FVU 2.07 and said nothing)."""
    problems = []
    if metrics.holdout_fvu >= 1:
        problems.append(
            f"held-out FVU {metrics.holdout_fvu:.3g} >= 1: the SAE reconstructs worse than predicting "
            f"the mean after {metrics.steps} steps (check --lr: too high diverges, too low never "
            "leaves the random start; and train longer)"
        )
    if metrics.dead_fraction > 0.5:
        problems.append(
            f"{metrics.dead_fraction:.0%} of the latents are dead (none fired in the last "
            f"{metrics.dead_window_tokens} rows): fewer latents, or more data"
        )
    return problems


STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"


@dataclass
class TrainMetrics:
    """What a trained SAE is judged by (written to ``metrics.json``)."""

    steps: int
    tokens: int
    fvu: float
    """Training FVU, averaged over the last 10% of steps."""
    holdout_fvu: float
    """FVU on held-out rows (tracks never seen in training)."""
    l0: float
    """Mean number of active latents per held-out row."""
    dead_fraction: float
    """Latents that did not fire in the last ``dead_window_tokens`` of training."""
    dead_window_tokens: int
    tokens_per_second: float
    wall_seconds: float


class HoldoutStats:
    """Held-out reconstruction error of an SAE, gathered batch by batch.

    Streamed, so a held-out split of millions of frames never sits in memory at once. The
    FVU denominator, sum ||x - mean||^2 over all rows, is built with Chan et al.'s pairwise
    update of (count, mean, M2) in float64: the same value as the two-pass formula, without
    cancellation when the mean is large.
    """

    def __init__(self) -> None:
        self.err = self.active = self.m2 = 0.0
        self.rows = 0
        self.mean: Tensor | None = None

    def merge(self, other: HoldoutStats) -> None:
        """Add another's rows (another rank's share of the held-out tracks)."""
        self.err += other.err
        self.active += other.active
        if other.mean is not None:
            self._combine(other.rows, other.mean, other.m2)

    @torch.no_grad()
    def add(self, sae: SparseCoder, x: Tensor) -> None:
        sae.eval()
        code = sae.encode(x)
        recon = sae.decode(code.latent_acts, code.latent_indices)
        sae.train()
        self.err += float((recon - x).double().pow(2).sum())
        self.active += float((code.latent_acts > 0).sum())
        xd = x.double()
        mean_b = xd.mean(dim=0)
        self._combine(xd.shape[0], mean_b, float((xd - mean_b).pow(2).sum()))

    def _combine(self, n_b: int, mean_b: Tensor, m2_b: float) -> None:
        if self.mean is None:
            self.mean, self.m2 = mean_b, m2_b
        else:
            delta = mean_b - self.mean
            self.m2 += m2_b + float(delta.pow(2).sum()) * self.rows * n_b / (self.rows + n_b)
            self.mean = self.mean + delta * (n_b / (self.rows + n_b))
        self.rows += n_b


class Trainer:
    def __init__(
        self,
        sae_cfg: SaeConfig,
        train_cfg: TrainConfig,
        source: ActivationSource,
        out_dir: str | Path | None = None,
        device: str = "cpu",
        progress: bool = True,
        data_parallel: bool = False,
    ) -> None:
        if sae_cfg.d_in != source.d_in:
            raise ValueError(f"SAE d_in {sae_cfg.d_in} != activation width {source.d_in}")
        self.ranks = torch.distributed.get_world_size() if data_parallel else 1
        self.writes = not data_parallel or rank() == 0
        # Rows of one step, every rank's: the schedule, the token counts and the dead-latent
        # window count these, so N ranks follow the schedule of one process with N x the batch.
        self.step_rows = train_cfg.batch_size * self.ranks
        n_train = source.count("train")
        if n_train < self.step_rows:
            ranks = f" x {self.ranks} ranks" if self.ranks > 1 else ""
            raise ValueError(
                f"only {n_train} training rows, fewer than --batch-size {train_cfg.batch_size}{ranks}; "
                "use a smaller batch or extract more audio"
            )
        self.sae_cfg, self.cfg, self.source = sae_cfg, train_cfg, source
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = device
        self.progress = progress
        if train_cfg.max_tokens is not None:
            self.total_steps = max(1, train_cfg.max_tokens // self.step_rows)
        else:
            self.total_steps = max(1, int(train_cfg.epochs * (n_train // self.step_rows)))
        self.steps_per_epoch = n_train // self.step_rows
        total_tokens = self.total_steps * self.step_rows
        # A short run never reaches Gao et al.'s 10M-token window; a tenth of the run
        # keeps AuxK useful there without calling a latent dead after one batch.
        self.dead_window = min(sae_cfg.dead_after_tokens, max(self.step_rows, total_tokens // 10))
        self.sae = SparseCoder(sae_cfg, device=device)
        # fused: one kernel per parameter instead of foreach temporaries the size of the
        # dictionary (each freshly mapped and zero-filled on CPU): 0.44 s of a 1.2 s step at
        # 1024 x 8192 on the 2-core machine, the same update to 1e-7.
        self.optimizer = torch.optim.Adam(
            self.sae.parameters(),
            lr=train_cfg.learning_rate(sae_cfg.num_latents),
            eps=6.25e-10,
            fused=torch.device(device).type in ("cpu", "cuda"),
        )
        self.step = 0
        self.tokens_since_fired = torch.zeros(sae_cfg.num_latents, dtype=torch.long, device=device)
        self.fvu_history: list[float] = []
        self.elapsed = 0.0
        self._started = time.perf_counter()
        self.history: list[dict[str, float]] = []

    # -- schedule --------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        base = self.cfg.learning_rate(self.sae_cfg.num_latents)
        warmup = max(1, int(self.cfg.warmup_fraction * self.total_steps))
        decay_start = int((1 - self.cfg.decay_fraction) * self.total_steps)
        if step < warmup:
            return base * (step + 1) / warmup
        if step >= decay_start and self.total_steps > decay_start:
            return base * max(0.0, (self.total_steps - step) / (self.total_steps - decay_start))
        return base

    def _batches(self) -> Iterator[Tensor]:
        epoch = 0
        while True:
            produced = False
            for batch in self.source.batches(self.cfg.batch_size, self.cfg.seed, epoch, "train"):
                produced = True
                yield batch
            if not produced:
                raise RuntimeError("the activation source produced no training batch")
            epoch += 1

    # -- training ------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> TrainMetrics:
        """Train on the source's batches to the end of the schedule; evaluate and save."""
        self.start(resume)
        batches = self._batches()
        # Deterministic batches: skipping the ones already used resumes exactly where we were.
        for _ in range(self.step):
            next(batches)
        with step_progress(disable=not self.progress) as bar:
            task = bar.add_task("training SAE", total=self.total_steps, completed=self.step, info="")
            while self.step < self.total_steps:
                self.train_batch(next(batches))
                if self.history and self.history[-1]["step"] == self.step:
                    entry = self.history[-1]
                    info = f"fvu {entry['fvu']:.3f} l0 {entry['l0']:.1f} dead {entry['dead_fraction']:.1%}"
                    bar.update(task, info=info)
                bar.update(task, completed=self.step)
        return self.finish()

    def start(self, resume: bool = False, sample: Tensor | None = None) -> None:
        """Load the checkpoint (``resume``) or initialise from ``sample`` (default: the source's)."""
        if resume:
            self._load_state()
        else:
            if sample is None:
                sample = self.source.sample(min(self.source.count("train"), 65536), self.cfg.seed)
            sample = sample.to(self.device)
            # Every rank starts from every rank's first rows, so from the same SAE.
            self.sae.init_from_data(gather_rows(sample) if self.ranks > 1 else sample)
        if self.ranks > 1:
            for tensor in self.sae.state_dict().values():  # and bit for bit rank 0's, as DDP does
                torch.distributed.broadcast(tensor, src=0)
        self._started = time.perf_counter() - self.elapsed

    def train_batch(self, x: Tensor) -> bool:
        """One optimizer step on ``x``, logged and checkpointed on schedule; True if checkpointed."""
        out = self._train_step(x.to(self.device))
        self.step += 1
        if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
            self.history.append(
                {
                    "step": self.step,
                    "fvu": out[0],
                    "auxk": out[1],
                    "l0": out[2],
                    "lr": self.lr_at(self.step - 1),
                    "dead_fraction": self._dead_fraction(),
                }
            )
        if self.out_dir and self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
            self.elapsed = time.perf_counter() - self._started
            self._save_state()
            return True
        return False

    def finish(self, holdout: HoldoutStats | None = None) -> TrainMetrics:
        """Evaluate (on the source's held-out rows unless ``holdout`` was gathered already)
        and write the checkpoint, the SAE and metrics.json."""
        self.elapsed = time.perf_counter() - self._started
        metrics = self.evaluate(holdout)
        for problem in training_problems(metrics) if self.writes else []:
            log.warning("%s%s", f"{self.out_dir}: " if self.out_dir else "", problem)
        if self.out_dir and self.writes:
            self._save_state()
            self.sae.save_to_disk(self.out_dir)
            payload = {
                **asdict(metrics),
                "sae": self.sae_cfg.to_dict(),
                "train": asdict(self.cfg),
                "history": self.history,
            }
            write_text_atomic(self.out_dir / METRICS_FILE, json.dumps(payload, indent=2) + "\n")
        return metrics

    def _train_step(self, x: Tensor) -> tuple[float, float, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        dead = self.tokens_since_fired >= self.dead_window
        out = self.sae(x, dead_mask=dead, across=sum_over_ranks if self.ranks > 1 else None)
        if self.sae_cfg.activation == "relu":
            loss = out.fvu + self.sae_cfg.l1_coefficient * out.l1_loss / self.sae_cfg.d_in
        else:
            loss = out.fvu + self.sae_cfg.auxk_alpha * out.auxk_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.ranks > 1:
            # Each rank's loss is its share of the step's loss: the sum is the step's gradient.
            for param in self.sae.parameters():
                if param.grad is not None:
                    sum_over_ranks(param.grad)
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.optimizer.step()
        self.sae.set_decoder_norm_to_unit_norm()
        with torch.no_grad():
            active = out.latent_acts > 0
            latents = self.sae_cfg.num_latents
            # Per-latent firing counts, then the losses' and the active count's shares: one sum
            # over the ranks gives every rank the whole step's.
            tally = torch.cat(
                [
                    torch.bincount(out.latent_indices[active], minlength=latents).double(),
                    torch.stack([out.fvu.detach(), out.auxk_loss.detach(), active.sum()]).double(),
                ]
            )
            if self.ranks > 1:
                sum_over_ranks(tally)
                if self.sae_cfg.activation == "batchtopk":  # each rank's batch moved it its own way
                    sum_over_ranks(self.sae.threshold).div_(self.ranks)
            self.tokens_since_fired += self.step_rows
            self.tokens_since_fired[tally[:latents] > 0] = 0
            fvu, auxk, n_active = tally[latents:].tolist()
        self.fvu_history.append(fvu)
        return fvu, auxk, n_active / self.step_rows

    def _dead_fraction(self) -> float:
        return float((self.tokens_since_fired >= self.dead_window).float().mean())

    @torch.no_grad()
    def evaluate(self, holdout: HoldoutStats | None = None) -> TrainMetrics:
        """Held-out FVU and L0 with the inference-time encoder; training summaries."""
        if holdout is None:
            holdout = HoldoutStats()
            for batch in self.source.batches(self.cfg.batch_size, self.cfg.seed, 0, "holdout"):
                holdout.add(self.sae, batch.to(self.device))
        tail = self.fvu_history[-max(1, len(self.fvu_history) // 10) :] or [math.nan]
        tokens = self.step * self.step_rows
        return TrainMetrics(
            steps=self.step,
            tokens=tokens,
            fvu=sum(tail) / len(tail),
            holdout_fvu=holdout.err / holdout.m2 if holdout.m2 else math.nan,
            l0=holdout.active / holdout.rows if holdout.rows else math.nan,
            dead_fraction=self._dead_fraction(),
            dead_window_tokens=self.dead_window,
            tokens_per_second=tokens / self.elapsed if self.elapsed else math.nan,
            wall_seconds=self.elapsed,
        )

    # -- checkpoint / resume ---------------------------------------------------------------

    def _save_state(self) -> None:
        assert self.out_dir is not None
        if not self.writes:
            return
        self.sae.save_to_disk(self.out_dir)
        state: dict[str, Any] = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "tokens_since_fired": self.tokens_since_fired.cpu(),
            "fvu_history": self.fvu_history,
            "history": self.history,
            "elapsed": self.elapsed,
            "total_steps": self.total_steps,
            "sae": self.sae_cfg.to_dict(),
            "train": asdict(self.cfg),
        }
        with atomic_path(self.out_dir / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def _load_state(self) -> None:
        if self.out_dir is None or not (self.out_dir / STATE_FILE).is_file():
            raise FileNotFoundError(f"--resume: no {STATE_FILE} in {self.out_dir}; nothing to resume")
        state = torch.load(self.out_dir / STATE_FILE, map_location=self.device, weights_only=False)
        if state["sae"] != self.sae_cfg.to_dict() or state["train"] != asdict(self.cfg):
            raise ValueError(
                f"--resume: the checkpoint in {self.out_dir} was trained with other settings "
                f"({state['sae']}, {state['train']}); use the same options or a new --out"
            )
        loaded = SparseCoder.load_from_disk(self.out_dir, device=self.device)
        self.sae.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.tokens_since_fired = state["tokens_since_fired"].to(self.device)
        self.fvu_history = list(state["fvu_history"])
        self.history = list(state["history"])
        self.elapsed = float(state["elapsed"])
        log.info("resuming at step %d of %d", self.step, self.total_steps)
