"""The ``train`` stage: one SAE on one layer's activations, with its run record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from artifact_schemas import FieldError, recorded_run
from artifact_schemas.settings import check_settings, same_as, setting
from sae_core.runtime import set_threads
from sae_core.sae.config import Activation, SaeConfig, TrainConfig
from sae_core.sae.data import ShardedActivations
from sae_core.sae.trainer import Trainer, TrainMetrics


@dataclass(kw_only=True)
class SaeOptions:
    """The SAE's shape and its training, shared by offline (``train_sae``) and online
    (``sae.online.train_online``) training."""

    k: int = same_as(SaeConfig, "k")
    expansion: int = setting(8, ge=1)
    """Latents = expansion x the model's width (d_model)."""
    num_latents: int | None = setting(None, ge=1)
    """Overrides ``expansion``."""
    activation: Activation = same_as(SaeConfig, "activation")
    l1_coefficient: float = same_as(SaeConfig, "l1_coefficient")
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False
    """Continue from the checkpoint in ``out``."""
    device: str = "cpu"
    """Where the SAE trains (and, online, the model runs): cpu, cuda, cuda:1 ..."""
    threads: int | None = setting(None, ge=1)
    """CPU threads."""

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
        check_settings(self)
        self.acts, self.out = Path(self.acts), Path(self.out)
        if not self.acts.is_dir():
            raise FieldError(
                "acts", f"{self.acts}: no such directory (expected one layer of 'sae-core extract' output)"
            )


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
