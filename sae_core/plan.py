"""How much disk, memory and time an experiment needs, by each path (issue 22.2c).

Two paths: **extract then train** (``sae-core extract`` writes every kept frame's
activations at every chosen layer, then ``sae-core train`` reads them) and **online**
(the model runs teacher-forced and the SAEs train on its activations as they come; only
checkpoints are written). Both run the model over every frame once and train the same
SAEs on the same rows, so their compute is the same; they differ in disk and memory.
On several devices online training splits the tracks (data-parallel, the default of
``sae-core train --parallel``: the forward divides, plus an all-reduce of the SAEs'
gradients each step) or deals the layers (every device runs every forward).

The times are derived from *measured* per-frame costs, never guessed: a costs file
(default ``sae_core/plan_costs.json``, written by ``benchmarks/bench_costs.py`` on the
machine it names) holds the model forward's frames/s for one preset and the SAE step's
tokens/s at one shape; other presets scale by decoder parameters (the forward is ~2
FLOPs per parameter per frame) and other SAE shapes by d_in x latents (the dense encoder
matmul is the step's cost: ``docs/sae.md``). Every figure printed says which it is.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_schemas import FieldError
from artifact_schemas.settings import check_settings, same_as, setting
from sae_core.activations.extract import ExtractConfig
from sae_core.layers import paper_layers
from sae_core.presets.real import DECODERS, build_real_musicgen
from sae_core.sae.config import TrainConfig

COSTS = Path(__file__).with_name("plan_costs.json")
FRAME_RATE = 50.0  # every MusicGen: 32 kHz EnCodec, hop 640


@functools.cache
def parameter_counts(model: str) -> tuple[int, int]:
    """(decoder, whole model) parameters of a published configuration, counted on the meta
    device (presets.real): small 0.42 B / 0.59 B, medium 1.84 B / 2.01 B, large 3.26 B / 3.42 B."""

    built = build_real_musicgen(model, device="meta")
    return sum(p.numel() for p in built.decoder.parameters()), sum(p.numel() for p in built.parameters())


@dataclass(frozen=True)
class PlanConfig:
    clips: int = setting(ge=1)
    """Number of clips, e.g. 160000."""
    clip_seconds: float = setting(10.0, gt=0)
    """Seconds per clip."""
    model: str = setting("musicgen-small", choices=tuple(DECODERS))
    """Which MusicGen: its width and depth set the costs."""
    layers: int | str = "paper"
    """How many layers get an SAE, or ``paper``: the paper's choice for this model's depth."""
    expansion: int = setting(32, ge=1)
    """SAE latents per model dimension (the paper's 32; sae-core train's 8 is for mini models)."""
    devices: int = setting(1, ge=1)
    """GPUs (or processes) sharing the work."""
    keep_fraction: float = same_as(ExtractConfig, "keep_fraction")
    batch_size: int = same_as(TrainConfig, "batch_size")
    storage_bytes: int = 2  # float16 activations
    costs: Path = COSTS
    allreduce_gb_per_s: float = setting(25.0, gt=0)
    """Bus bandwidth of the data-parallel gradient all-reduce between devices: assumed, not
    measured (PCIe 4.0 x16 is ~25 GB/s; NVLink several times more)."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.layers != "paper" and not (isinstance(self.layers, int) and self.layers >= 1):
            raise FieldError("layers", f"must be 'paper' or a count >= 1, got {self.layers!r}")

    @property
    def n_layers(self) -> int:
        """Layers that get an SAE (``paper``: five for 24 and 48 blocks, by ``paper_layers``)."""
        if isinstance(self.layers, int):
            return self.layers
        return len(paper_layers(DECODERS[self.model][1]))


@dataclass
class Plan:
    frames: float
    kept_frames: float
    d_model: int
    latents: int
    paths: dict[str, dict[str, float]]  # path -> {"disk_gb", "memory_gb", "hours"}
    notes: list[str] = field(default_factory=list)
    source: str = ""


def load_costs(path: Path) -> dict[str, Any]:
    try:
        costs = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a readable costs file ({exc}); write one with benchmarks/bench_costs.py"
        ) from None
    for key in ("machine", "measured", "forward", "sae"):
        if key not in costs:
            raise ValueError(f"{path}: field '{key}' is missing; write it with benchmarks/bench_costs.py")
    return dict(costs)


def plan(cfg: PlanConfig) -> Plan:
    """Disk, memory per device and wall time of both paths for ``cfg``."""
    costs = load_costs(cfg.costs)
    d = DECODERS[cfg.model][0]
    latents = cfg.expansion * d
    frames = cfg.clips * cfg.clip_seconds * FRAME_RATE
    kept = frames * cfg.keep_fraction
    fwd, sae = costs["forward"], costs["sae"]
    # The forward: measured frames/s of one preset, scaled by decoder parameters.
    fwd_fps = fwd["frames_per_s"] * parameter_counts(fwd["model"])[0] / parameter_counts(cfg.model)[0]
    # The SAE step: measured tokens/s at one shape, scaled by d_in x latents.
    sae_tps = sae["tokens_per_s"] * (sae["d_in"] * sae["latents"]) / (d * latents)
    n = cfg.devices
    forward_h = frames / fwd_fps / 3600  # on one device
    sae_h = kept * cfg.n_layers / sae_tps / 3600  # every layer's SAE, on one device
    online_sae_h = (
        sae_h / cfg.keep_fraction
    )  # online SAEs see every frame (--keep-fraction thins extraction only)
    sae_params = 2 * d * latents + latents + d
    # Parameters, gradients and Adam's two moments in fp32, plus the batch's kept
    # [batch, latents] pre-activation buffer and its top-k bookkeeping.
    sae_gb = (4 * 4 * sae_params + 2 * 4 * cfg.batch_size * latents) / 1e9
    model_gb = 4 * parameter_counts(cfg.model)[1] / 1e9  # fp32 weights; half in bf16
    checkpoints_gb = cfg.n_layers * 3 * 4 * sae_params / 1e9  # weights + Adam state
    # Data-parallel: every step sums every layer's fp32 gradients over the devices; a ring
    # all-reduce sends and receives 2 (n - 1) / n of them per device.
    steps = frames / (n * cfg.batch_size)
    gradient_gb = 4 * sae_params * cfg.n_layers / 1e9
    allreduce_h = steps * gradient_gb * 2 * (n - 1) / n / cfg.allreduce_gb_per_s / 3600
    layers_per_device = math.ceil(cfg.n_layers / n)
    paths = {
        "extract then train": {
            "disk_gb": kept * cfg.n_layers * d * cfg.storage_bytes / 1e9 + checkpoints_gb,
            "memory_gb": max(model_gb, sae_gb),  # the stages run one after the other
            "hours": (forward_h + sae_h) / n,  # shards, then layers, dealt to the devices
        },
        # Each device: the model and every layer's SAE, on its share of the tracks.
        "online" if n == 1 else "online, data-parallel": {
            "disk_gb": checkpoints_gb,
            "memory_gb": model_gb + cfg.n_layers * sae_gb,
            "hours": (forward_h + online_sae_h) / n + allreduce_h,
        },
    }
    if n > 1:
        paths["online, layers dealt"] = {
            "disk_gb": checkpoints_gb,
            "memory_gb": model_gb + layers_per_device * sae_gb,
            # Every device runs every forward and trains its share of the layers.
            "hours": forward_h + online_sae_h * layers_per_device / cfg.n_layers,
        }
    notes = [
        f"forward: {fwd['frames_per_s']:,.0f} frames/s measured on {fwd['model']}"
        + (
            f", scaled by decoder parameters to {fwd_fps:,.0f} for {cfg.model}"
            if fwd["model"] != cfg.model
            else ""
        ),
        f"SAE step: {sae['tokens_per_s']:,.0f} tokens/s measured at {sae['d_in']} x {sae['latents']}"
        + (
            f", scaled by d_in x latents to {sae_tps:,.0f} at {d} x {latents}"
            if (sae["d_in"], sae["latents"]) != (d, latents)
            else ""
        ),
        "the extract path also writes and reads its activations once; disk speed is not in its hours",
        "online (sae-core train --model): one epoch; each further epoch is another forward pass",
    ]
    if n > 1:
        notes.append(
            f"data-parallel: each of {steps:,.0f} steps ({n} x {cfg.batch_size} frames) all-reduces "
            f"{gradient_gb:.2f} GB of SAE gradients, at an assumed {cfg.allreduce_gb_per_s:g} GB/s "
            f"(--allreduce-gbps; not measured): {allreduce_h:.2f} h of its hours"
        )
    source = f"{cfg.costs} (measured {costs['measured']} on {costs['machine']})"
    return Plan(frames, kept, d, latents, paths, notes, source)
