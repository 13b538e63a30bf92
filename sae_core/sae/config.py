"""Configuration of a sparse autoencoder and of its training run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from artifact_schemas.settings import check_settings, setting

Activation = Literal["topk", "batchtopk", "relu"]
ACTIVATIONS: tuple[Activation, ...] = ("topk", "batchtopk", "relu")


@dataclass
class SaeConfig:
    """Shape and sparsity mechanism of one SAE (stored as ``cfg.json`` in a checkpoint)."""

    d_in: int
    num_latents: int
    k: int = setting(32, ge=1)
    """Active latents per frame (topk), or on average per frame (batchtopk)."""
    activation: Activation = setting("topk", choices=ACTIVATIONS)
    """The sparsity mechanism: topk (Gao et al. 2024), batchtopk, or relu with an L1 penalty."""
    l1_coefficient: float = setting(5.0, ge=0)
    """Weight of the L1 penalty; used only by ``relu``."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss on dead latents (Gao et al. 2024, appendix A.2)."""
    dead_after_tokens: int = 10_000_000
    """A latent that has not fired for this many tokens counts as dead (Gao et al.: 10M)."""
    layer: int | None = None
    """The model layer whose residual stream the SAE reads (steering adds its directions there)."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.d_in < 1 or self.num_latents < 1:
            raise ValueError(f"d_in and num_latents must be >= 1, got {self.d_in}, {self.num_latents}")
        if self.activation != "relu" and not 1 <= self.k <= self.num_latents:
            raise ValueError(f"k must be in 1..num_latents ({self.num_latents}), got {self.k}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SAE config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


@dataclass
class TrainConfig:
    """How to train: batch, schedule, budget, held-out data, checkpoints."""

    batch_size: int = setting(4096, ge=1)
    """Frames per step."""
    lr: float | None = setting(None, gt=0)
    """Adam learning rate; default 2e-3 / sqrt(num_latents / 2**14): ten times Gao et al.'s
    (2024, sec. 2.4) rule, which was fitted to runs of millions of steps. With theirs the
    dictionary stays near its random start for hundreds or thousands of steps (issue 38:
    held-out FVU 0.54 after 200 steps on the demo's activations, 0.06 with ten times it;
    docs/sae.md has the ablation). Pass theirs with ``lr`` for runs of millions of steps."""
    epochs: float = setting(1.0, ge=0)
    """Passes over the training rows (fractions allowed); ignored when ``max_tokens`` is set."""
    max_tokens: int | None = setting(None, ge=1)
    """Stop after this many frames (overrides ``epochs``)."""
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    """The learning rate decays linearly to 0 over this final fraction of training."""
    holdout_fraction: float = setting(0.05, ge=0, le=0.9)
    """Share of *tracks* (or of rows, without an index) kept out of training for held-out FVU."""
    seed: int = setting(0, ge=0)
    """Seed of the SAE's initialisation, the held-out tracks and the batch order."""
    checkpoint_every: int = setting(1000, ge=0)
    """Steps between checkpoints (for resume); 0 = only at the end."""
    log_every: int = 50
    buffer_shards: int = 4
    """Shards held in memory at once for shuffling; bounds memory for data larger than RAM."""

    def __post_init__(self) -> None:
        check_settings(self)

    def learning_rate(self, num_latents: int) -> float:
        return self.lr if self.lr is not None else 2e-3 / math.sqrt(num_latents / 2**14)
