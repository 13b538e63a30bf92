"""The training loop the mini models share: warm-up and cosine decay, checkpoints, exact resume.

A subclass says what its state is (``modules``), what one step does (``train_step``) and
which of its config fields must match for a checkpoint to be resumed (``identity``).
The loop owns the rest, so every mini-model command resumes the same way: the same
batches follow (they are drawn from ``(seed, step)``), torch's generator is restored,
and a resumed run ends bit-for-bit where an uninterrupted one would (tested).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from artifact_schemas import atomic_path, recorded_run, write_text_atomic
from artifact_schemas.console import step_progress
from artifact_schemas.settings import check_settings, setting
from sae_core.runtime import set_threads

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"


@dataclass
class LossMetrics:
    """``metrics.json`` of a trainer with one loss: its end value and the loss curve."""

    steps: int
    loss: float
    """Mean of the last 10% of logged losses."""
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(kw_only=True)
class LoopConfig:
    """The fields every mini-model trainer has; subclasses add theirs and validate them."""

    corpus: Path
    """A corpus directory (sae-core synth-corpus; captions in metadata.csv)."""
    out: Path
    """Directory to save the model into."""
    steps: int = setting(3000, ge=1)
    """Optimizer steps."""
    batch_size: int = setting(8, ge=1)
    """Training examples per step."""
    lr: float = setting(1e-3, gt=0)
    """Peak learning rate (Adam/AdamW, after warm-up)."""
    seed: int = 1
    """Seed of the weights and of every draw of the training data."""
    device: str = "cpu"
    """cpu or cuda[:N]."""
    checkpoint_every: int = 250
    log_every: int = 50
    resume: bool = False
    """Continue from the checkpoint in out."""
    progress: bool = True
    threads: int | None = setting(None, ge=1)
    """CPU threads."""

    # Fields that do not change what is trained: a checkpoint resumes across them.
    RUNNING = frozenset(
        {"out", "steps", "device", "checkpoint_every", "log_every", "resume", "progress", "threads"}
    )

    def __post_init__(self) -> None:
        check_settings(self)
        self.corpus, self.out = Path(self.corpus), Path(self.out)
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device: cpu or cuda[:N], got {self.device!r}")
        if not (self.corpus / "metadata.csv").is_file():
            raise ValueError(f"corpus: no metadata.csv in {self.corpus} (sae-core synth-corpus writes one)")

    def identity(self) -> dict[str, Any]:
        """What makes a checkpoint this model's: every field but the running ones."""
        fields = asdict(self).items()
        return {k: str(v) if isinstance(v, Path) else v for k, v in fields if k not in self.RUNNING}

    def record(self) -> dict[str, Any]:
        """Every field, JSON-ready (for run.json)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def recorded(self, stage: str, *inputs: Path) -> Any:
        """Set the CPU threads; the context that writes ``out/run.json`` when training ends well."""

        set_threads(self.threads)
        return recorded_run(
            self.out, stage, config=self.record(), seeds={"seed": self.seed}, inputs=list(inputs)
        )


class StepLoop:
    """``steps`` optimizer steps with checkpoints every ``checkpoint_every`` into ``out``."""

    name = "model"

    def __init__(self, cfg: LoopConfig) -> None:
        self.loop = cfg
        self.out, self.steps, self.peak_lr = cfg.out, cfg.steps, cfg.lr
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self.optimizer: torch.optim.Optimizer

    # -- what a subclass provides --------------------------------------------------------

    def modules(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold (optimizer included)."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (the config's identity by default)."""
        return self.loop.identity()

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step at ``self.step``; returns its losses (detached on logging)."""
        raise NotImplementedError

    def set_train(self, training: bool) -> None:
        for module in self.modules().values():
            if isinstance(module, torch.nn.Module):
                module.train(training)

    # -- the loop ----------------------------------------------------------------------

    def lr(self) -> float:
        """Linear warm-up over 2% of the steps, then cosine decay to a tenth of the peak."""
        warm = max(1, self.steps // 50)
        if self.step < warm:
            return self.peak_lr * (self.step + 1) / warm
        done = min(1.0, (self.step - warm) / max(1, self.steps - warm))
        return self.peak_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))

    def run(self) -> None:
        state = self.out / STATE_FILE
        if state.is_file() and not self.loop.resume:
            raise ValueError(
                f"resume: {self.out} holds a checkpoint of an earlier run; resume it (--resume) "
                "or choose another out directory"
            )
        if state.is_file():
            self._load(state)
            log.info("resumed %s training at step %d from %s", self.name, self.step, state)
        started = time.perf_counter() - self.elapsed
        self.set_train(True)
        with step_progress(disable=not self.loop.progress) as bar:
            task = bar.add_task(f"training {self.name}", total=self.steps, completed=self.step, info="")
            while self.step < self.steps:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr()
                losses = self.train_step()
                self.step += 1
                if self.step % self.loop.log_every == 0 or self.step == self.steps:
                    entry = {"step": self.step, **{k: v.item() for k, v in losses.items()}, "lr": self.lr()}
                    self.history.append(entry)
                    shown = " ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
                    bar.update(task, info=shown)
                bar.update(task, completed=self.step)
                if self.loop.checkpoint_every and self.step % self.loop.checkpoint_every == 0:
                    self.elapsed = time.perf_counter() - started
                    self._save(state)
        self.elapsed = time.perf_counter() - started
        self._save(state)
        self.set_train(False)

    def write_metrics(self) -> LossMetrics:
        """Write ``metrics.json`` (end loss, wall time, the whole curve) into ``out``."""
        tail = self.history[-max(1, len(self.history) // 10) :]
        metrics = LossMetrics(
            steps=self.step,
            loss=sum(h["loss"] for h in tail) / max(1, len(tail)),
            wall_seconds=self.elapsed,
            history=self.history,
        )
        write_text_atomic(self.out / METRICS_FILE, json.dumps(asdict(metrics), indent=2) + "\n")
        return metrics

    def _save(self, path: Path) -> None:
        payload = {
            "identity": self.identity(),
            "step": self.step,
            "elapsed": self.elapsed,
            "history": self.history,
            "state": {name: m.state_dict() for name, m in self.modules().items()},
            # Dead-code restarts, dropout and condition dropping draw from torch's
            # generator: restore it, and a resumed run takes the same draws.
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def _load(self, path: Path) -> None:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        theirs, ours = payload["identity"], self.identity()
        changed = sorted(k for k in ours if theirs.get(k) != ours[k])
        if changed:
            raise ValueError(
                f"{path}: a checkpoint of a different {self.name} ({', '.join(changed)} differ); "
                "use another out directory or delete the checkpoint"
            )
        for name, module in self.modules().items():
            module.load_state_dict(payload["state"][name])
        torch.set_rng_state(payload["torch_rng"])
        self.step, self.elapsed, self.history = payload["step"], payload["elapsed"], payload["history"]


def load_state(out: Path) -> dict[str, Any]:
    """The module states of the checkpoint in ``out`` (tests and exports)."""
    return dict(torch.load(out / STATE_FILE, map_location="cpu", weights_only=False)["state"])
