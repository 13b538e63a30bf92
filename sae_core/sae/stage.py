"""The ``train`` stage: one SAE on one layer's activations, with its run record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from artifact_schemas import FieldError, recorded_run
from sae_core.runtime import set_threads
from sae_core.sae.config import ACTIVATIONS, Activation, SaeConfig, TrainConfig
from sae_core.sae.data import ShardedActivations
from sae_core.sae.trainer import Trainer, TrainMetrics


@dataclass(kw_only=True)
class SaeOptions:
    """The SAE's shape and its training, shared by offline (``train_sae``) and online
    (``sae.online.train_online``) training."""

    k: int = 32
    expansion: int = 8
    num_latents: int | None = None
    """Overrides ``expansion``."""
    activation: Activation = "topk"
    l1_coefficient: float = 5.0
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False
    device: str = "cpu"
    threads: int | None = None

    def check_options(self) -> None:
        if self.activation not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise FieldError("activation", f"must be one of {allowed}, got {self.activation!r}")
        for name in ("k", "expansion"):
            if getattr(self, name) < 1:
                raise FieldError(name, f"must be >= 1, got {getattr(self, name)}")

    def sae_config(self, d_in: int, layer: int | None) -> SaeConfig:
        return SaeConfig(
            d_in=d_in,
            num_latents=self.num_latents or self.expansion * d_in,
            k=self.k,
            activation=self.activation,
            l1_coefficient=self.l1_coefficient,
            layer=layer,
        )


@dataclass
class TrainSaeConfig(SaeOptions):
    """What ``train_sae`` needs; validated on construction, naming the field at fault."""

    acts: Path
    """One layer's activations (``sae-core extract`` output, e.g. runs/R/acts/layer_8)."""
    out: Path

    def __post_init__(self) -> None:
        self.acts, self.out = Path(self.acts), Path(self.out)
        if not self.acts.is_dir():
            raise FieldError(
                "acts", f"{self.acts}: no such directory (expected one layer of 'sae-core extract' output)"
            )
        self.check_options()


def train_sae(cfg: TrainSaeConfig) -> tuple[SaeConfig, TrainMetrics]:
    """Train (or with ``cfg.resume`` continue) the SAE; write the checkpoint and run.json."""
    set_threads(cfg.threads)  # training runs in one process
    source = ShardedActivations(
        cfg.acts, holdout_fraction=cfg.train.holdout_fraction, buffer_shards=cfg.train.buffer_shards
    )
    sae_cfg = cfg.sae_config(source.d_in, source.meta.get("layer"))
    config = {"sae": sae_cfg.to_dict(), "train": asdict(cfg.train)}
    with recorded_run(cfg.out, "train", config=config, seeds={"seed": cfg.train.seed}, inputs=[cfg.acts]):
        metrics = Trainer(sae_cfg, cfg.train, source, cfg.out, device=cfg.device).fit(resume=cfg.resume)
    return sae_cfg, metrics


def metrics_table(sae_dir: str | Path) -> pd.DataFrame:
    """One row per SAE checkpoint under ``sae_dir`` (its ``*/metrics.json``, or its own)."""
    sae_dir = Path(sae_dir)
    files = sorted(sae_dir.glob("*/metrics.json")) or sorted(sae_dir.glob("metrics.json"))
    if not files:
        raise FieldError("sae_dir", f"{sae_dir}: no */metrics.json found (train SAEs with 'sae-core train')")
    rows = []
    for path in files:
        m = json.loads(path.read_text())
        rows.append(
            {
                "layer dir": path.parent.name,
                "latents": m["sae"]["num_latents"],
                "k": m["sae"]["k"],
                "steps": m["steps"],
                "FVU": m["fvu"],
                "held-out FVU": m["holdout_fvu"],
                "L0": m["l0"],
                "dead": m["dead_fraction"],
                "frames/s": m["tokens_per_second"],
            }
        )
    return pd.DataFrame(rows)
