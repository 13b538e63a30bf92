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
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from artifact_schemas import FEATURES, STEERING, FieldError, load_table, recorded_run, save_table
from artifact_schemas.settings import check_settings, same_as, setting
from sae_core.activations.extract import ExtractConfig
from sae_core.audio import check_write_format, write_audio
from sae_core.clips import log_mel_distance, loudness_normalise
from sae_core.models import load_model
from sae_core.models.base import GUIDANCE_SCALE, ApplyTo, Intervention, MusicModel
from sae_core.sae.sparse_coder import SparseCoder

log = logging.getLogger(__name__)


@dataclass
class SteerConfig:
    """What ``run_steering`` (and ``generate_pairs``) need; validated on construction,
    naming the field at fault. :meth:`resolved` fills in what is read from files."""

    model: str
    """MusicGen directory or hub id."""
    sae: Path
    """SAE checkpoint directory (its layer is steered)."""
    features: list[int] | str
    """Feature ids, or ``top:N``: the N kept features with the largest max activation."""
    prompts: Path | list[str]
    """A text file, one prompt per line; or the prompts themselves."""
    out: Path
    """Output directory, e.g. runs/R/steering."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Sampling seeds (comma-separated)."""
    strengths: list[float] = field(default_factory=lambda: [1.0])
    """Strengths (alpha): each multiplies the feature's unit decoder direction (comma-separated)."""
    relative: bool = False
    """Strength x the feature's max activation (in the model's units)."""
    features_table: Path | None = None
    """features.parquet of the SAE's layer (``top:N`` and ``relative`` read it)."""
    seconds: float = setting(8.0, ge=0.1)
    """Seconds of audio per generation."""
    guidance_scale: float = GUIDANCE_SCALE
    """Classifier-free guidance scale (1 = off; MusicGen's default 3)."""
    apply_to: ApplyTo = setting("both", choices=("both", "conditional"))
    """Which half of the CFG batch is steered: both, or conditional only."""
    random_control: bool = True
    """Also generate a random direction of the same norm, as a control."""
    layer: int | None = None
    """Overrides the layer the SAE records."""
    backend: str = same_as(ExtractConfig, "backend")
    device: str = "cpu"
    """Where the model runs: cpu, cuda ..."""
    audio_format: str = "flac"
    """flac or wav."""
    betas: dict[int, float] | None = None
    """Relative steering: each feature's largest activation (else read from ``features_table``)."""

    def __post_init__(self) -> None:
        check_settings(self)
        self.sae, self.out = Path(self.sae), Path(self.out)
        if not isinstance(self.prompts, list):
            self.prompts = Path(self.prompts)
            if not self.prompts.is_file():
                raise FieldError("prompts", f"{self.prompts}: no such file")
        for name in ("features", "prompts", "seeds", "strengths"):
            if not getattr(self, name):
                raise FieldError(name, "needs at least one value")
        if isinstance(self.features, str) and not re.fullmatch(r"top:[1-9]\d*", self.features):
            raise FieldError("features", f"must be feature ids or top:N, got {self.features!r}")
        check_write_format(self.audio_format)
        if self.features_table is None:
            if isinstance(self.features, str):
                raise FieldError("features", "top:N needs {other}", other="features_table")
            if self.relative and self.betas is None:
                raise FieldError(
                    "relative", "needs {other} (features.parquet with max_activation)", other="features_table"
                )
        if self.relative and self.betas is not None and isinstance(self.features, list):
            missing = [f for f in self.features if f not in self.betas]
            if missing:
                raise FieldError("betas", f"relative steering needs the max activation of features {missing}")

    def prompt_list(self) -> list[str]:
        if isinstance(self.prompts, list):
            return self.prompts
        prompts = [line.strip() for line in self.prompts.read_text().splitlines() if line.strip()]
        if not prompts:
            raise FieldError("prompts", f"{self.prompts}: no prompts (one per line)")
        return prompts

    def resolved(self) -> SteerConfig:
        """A copy with the features chosen, the prompts read and, when relative, each
        feature's beta (this config is left as it is)."""
        table = None
        needs_table = isinstance(self.features, str) or (self.relative and self.betas is None)
        if needs_table and self.features_table is not None:  # a resolved copy reads nothing again
            table = load_table(self.features_table, FEATURES).set_index("feature_id")
        if isinstance(self.features, str):
            assert table is not None  # checked in __post_init__
            n_top = int(self.features.removeprefix("top:"))
            chosen = table[table["kept"]].nlargest(n_top, "max_activation").index.astype(int).tolist()
            if not chosen:
                raise FieldError("features_table", f"{self.features_table}: no kept features")
        else:
            chosen = list(self.features)
        betas = self.betas
        if self.relative and betas is None:
            assert table is not None  # checked in __post_init__
            missing = [f for f in chosen if f not in table.index]
            if missing:
                raise FieldError("features", f"{missing}: not in {self.features_table}")
            peaks = table["max_activation"].astype(float)
            betas = {f: float(peaks.loc[f]) for f in chosen}
        return replace(self, features=chosen, prompts=self.prompt_list(), betas=betas)

    def beta(self, feature: int) -> float | None:
        return self.betas[feature] if self.relative and self.betas is not None else None


def run_steering(cfg: SteerConfig, progress: bool = True) -> tuple[pd.DataFrame, SteerConfig, int]:
    """The ``steer`` stage: audio, steering.parquet and run.json in ``cfg.out``.

    Returns the table, the config as run (:meth:`SteerConfig.resolved`) and the layer steered.
    """

    run = cfg.resolved()
    coder = SparseCoder.load_from_disk(cfg.sae)
    layer = cfg.layer if cfg.layer is not None else coder.cfg.layer
    if layer is None:
        raise FieldError("layer", f"is needed: the checkpoint {cfg.sae} does not record its layer")
    seeds = {f"sampling_{i}": s for i, s in enumerate(run.seeds)}
    with recorded_run(cfg.out, "steer", config=asdict(run), seeds=seeds, inputs=[cfg.sae]):
        model = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
        pairs = generate_pairs(model, coder, layer, run, progress=progress)
        save_table(pairs, cfg.out / "steering.parquet", STEERING)
    return pairs, run, layer


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


#: The level every generated clip is written at (the study config's default loudness).
GENERATION_LUFS = -23.0


def generate_pairs(
    model: MusicModel,
    sae: SparseCoder,
    layer: int,
    cfg: SteerConfig,
    progress: bool = True,
    level: bool = True,
) -> pd.DataFrame:
    """Generate baselines once per (prompt, seed), then steered (and control) clips into
    ``cfg.out``; return the table.

    Each row records the steered (and control) clip's log-mel distance from its baseline in
    dB (``steered_db``, ``random_db``), which stimuli-builder build checks is audible.

    ``level``: write each clip at ``GENERATION_LUFS`` (what listeners hear); without it the
    model's own level is kept (only clipped at full scale), for measurements of loudness.
    """
    cfg = cfg.resolved()  # a copy: the caller's config is left as it is
    out = cfg.out
    assert isinstance(cfg.features, list) and isinstance(cfg.prompts, list)  # as resolved() leaves them
    model._check_layer(layer)
    rows = []
    baselines: dict[tuple[int, int], str] = {}
    total = len(cfg.prompts) * len(cfg.seeds) * (1 + len(cfg.features) * len(cfg.strengths))
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("generating", total=total)

        def render(
            name: str, interventions: Sequence[Intervention], prompt: str, seed: int
        ) -> tuple[str, np.ndarray]:
            audio = model.generate(
                [prompt], cfg.seconds, seed, interventions, guidance_scale=cfg.guidance_scale
            )
            # A guided generation can overshoot full scale (a CFG-3 mini MusicGen peaked at
            # 2.5x): levelled as study clips are (EBU R128's -23 LUFS, peak <= -1 dBFS) it
            # is written without clipping; a level-only difference is not what a listener
            # will be asked about, since stimuli-builder levels every clip the same way.
            clip = audio[0].numpy()
            if level:
                clip, _ = loudness_normalise(clip, model.sample_rate, GENERATION_LUFS)
            clip = np.clip(clip, -1, 1)
            write_audio(out / name, clip, model.sample_rate, cfg.audio_format)
            return name, clip

        def distance(clip: np.ndarray, baseline: np.ndarray) -> float:
            # What stimuli-builder build checks against steering.min_distance_db: a pair that
            # a listener cannot tell apart makes a comparison trial nobody can answer.
            return round(log_mel_distance(clip, baseline, model.sample_rate), 3)

        for p, prompt in enumerate(cfg.prompts):
            for seed in cfg.seeds:
                base_name, base_audio = render(f"baseline_p{p}_s{seed}.{cfg.audio_format}", [], prompt, seed)
                baselines[(p, seed)] = base_name
                bar.advance(task)
                for feature in cfg.features:
                    for strength in cfg.strengths:
                        vector = steering_vector(sae, feature, strength, cfg.beta(feature))
                        stem = f"f{feature}_p{p}_s{seed}_a{strength:g}"
                        steered, steered_audio = render(
                            f"{stem}.{cfg.audio_format}",
                            [Intervention(layer, vector, cfg.apply_to)],
                            prompt,
                            seed,
                        )
                        random_path, random_db = None, None
                        if cfg.random_control:
                            control = random_like(vector, seed=feature * 1_000_003 + seed)
                            random_path, random_audio = render(
                                f"random_{stem}.{cfg.audio_format}",
                                [Intervention(layer, control, cfg.apply_to)],
                                prompt,
                                seed,
                            )
                            random_db = distance(random_audio, base_audio)
                        rows.append(
                            {
                                "feature_id": feature,
                                "layer": layer,
                                "prompt": prompt,
                                "seed": seed,
                                "strength": strength,
                                "relative": cfg.relative,
                                "vector_norm": float(vector.norm()),
                                "path": steered,
                                "baseline_path": baselines[(p, seed)],
                                "random_path": random_path,
                                "steered_db": distance(steered_audio, base_audio),
                                "random_db": random_db,
                                "apply_to": cfg.apply_to,
                                "guidance_scale": cfg.guidance_scale,
                            }
                        )
                        bar.advance(task)
    return pd.DataFrame(rows)
