"""Steered generation: the same prompt and seed with and without a feature's direction added.

At the SAE's layer, every generated position gets ``h <- h + v`` with
``v = strength * d_f`` (absolute) or ``v = strength * beta_f * d_f / s`` (relative), where
``d_f`` is feature f's unit decoder row, ``beta_f`` its largest activation on the corpus
(``features.parquet``) and ``s`` the SAE's input scale (so ``beta_f * d_f / s`` is what the
feature at its peak adds to the residual stream in the model's own units; Singh et al.
steer with ``alpha * beta * d``, alpha in (0, 1]). A random-direction control of the same
norm, same prompt and same seed is generated beside each steered clip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from sae_core.audio import write_audio
from sae_core.models.base import ApplyTo, Intervention, MusicModel
from sae_core.sae.sparse_coder import SparseCoder

log = logging.getLogger(__name__)


@dataclass
class SteeringPlan:
    features: list[int]
    prompts: list[str]
    seeds: list[int]
    strengths: list[float]
    relative: bool = False
    seconds: float = 8.0
    guidance_scale: float = 3.0
    apply_to: ApplyTo = "both"
    random_control: bool = True
    audio_format: str = "flac"


def steering_vector(sae: SparseCoder, feature: int, strength: float, beta: float | None) -> torch.Tensor:
    """``strength * d_f`` (absolute, beta None) or ``strength * beta * d_f / input_scale``."""
    if not 0 <= feature < sae.cfg.num_latents:
        raise ValueError(
            f"feature {feature} does not exist: the SAE has latents 0..{sae.cfg.num_latents - 1}"
        )
    direction = sae.W_dec[feature].detach().float()
    direction = direction / direction.norm()
    if beta is None:
        return strength * direction
    return strength * beta * direction / float(sae.input_scale)


def random_like(vector: torch.Tensor, seed: int) -> torch.Tensor:
    """A random direction with the norm of ``vector`` (the paper's control condition)."""
    g = torch.Generator().manual_seed(seed)
    random = torch.randn(vector.shape, generator=g)
    return random / random.norm() * vector.norm()


def generate_pairs(
    model: MusicModel,
    sae: SparseCoder,
    layer: int,
    plan: SteeringPlan,
    out: str | Path,
    betas: dict[int, float] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Generate baselines once per (prompt, seed), then steered (and control) clips; return the table."""
    out = Path(out)
    if plan.relative and betas is None:
        raise ValueError("relative strengths need each feature's max activation (features.parquet)")
    model._check_layer(layer)
    rows = []
    baselines: dict[tuple[int, int], str] = {}
    total = len(plan.prompts) * len(plan.seeds) * (1 + len(plan.features) * len(plan.strengths))
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("generating", total=total)

        def render(name: str, interventions: Sequence[Intervention], prompt: str, seed: int) -> str:
            audio = model.generate(
                [prompt], plan.seconds, seed, interventions, guidance_scale=plan.guidance_scale
            )
            write_audio(out / name, np.clip(audio[0].numpy(), -1, 1), model.sample_rate, plan.audio_format)
            return name

        for p, prompt in enumerate(plan.prompts):
            for seed in plan.seeds:
                baselines[(p, seed)] = render(f"baseline_p{p}_s{seed}.{plan.audio_format}", [], prompt, seed)
                bar.advance(task)
                for feature in plan.features:
                    beta = betas[feature] if plan.relative and betas is not None else None
                    for strength in plan.strengths:
                        vector = steering_vector(sae, feature, strength, beta)
                        stem = f"f{feature}_p{p}_s{seed}_a{strength:g}"
                        steered = render(
                            f"{stem}.{plan.audio_format}",
                            [Intervention(layer, vector, 1.0, plan.apply_to)],
                            prompt,
                            seed,
                        )
                        random_path = None
                        if plan.random_control:
                            control = random_like(vector, seed=feature * 1_000_003 + seed)
                            random_path = render(
                                f"random_{stem}.{plan.audio_format}",
                                [Intervention(layer, control, 1.0, plan.apply_to)],
                                prompt,
                                seed,
                            )
                        rows.append(
                            {
                                "feature_id": feature,
                                "layer": layer,
                                "prompt": prompt,
                                "seed": seed,
                                "strength": strength,
                                "relative": plan.relative,
                                "vector_norm": float(vector.norm()),
                                "path": steered,
                                "baseline_path": baselines[(p, seed)],
                                "random_path": random_path,
                                "apply_to": plan.apply_to,
                                "guidance_scale": plan.guidance_scale,
                            }
                        )
                        bar.advance(task)
    return pd.DataFrame(rows)
