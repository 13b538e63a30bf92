"""The ``label`` stage: every chosen labeler over every layer's features, scored by CLAP.

The labelers themselves live in ``labels`` (descriptors, clap-vocab, manual) and
``llm_labeler``; this module checks what they need, runs them layer by layer and
writes ``labels.parquet`` (+ ``clap_examples.parquet`` and ``labels.run.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from artifact_schemas import LABELS, FieldError, recorded_run, save_table, write_bytes_atomic
from artifact_schemas.settings import check_settings, setting
from sae_core.activations.extract import list_tracks
from sae_core.clap import ClapScorer
from sae_core.labels.labelers import (
    DEFAULT_VOCABULARY,
    clap_vocabulary_labels,
    descriptor_labels,
    load_examples,
    manual_labels,
    score_labels,
)
from sae_core.labels.llm import LLMConfig, LLMLabeler

LABELERS = ("descriptors", "clap-vocab", "manual", "llm")
# Which field each labeler cannot run without.
_NEEDS = {"descriptors": "corpus", "clap-vocab": "clap", "manual": "manual"}


@dataclass
class LabelConfig:
    """What ``label_features`` needs; validated on construction, naming the field at fault."""

    features: list[Path]
    """``features/layer_<l>`` directories (``sae-core features`` output)."""
    out: Path
    """labels.parquet to write."""
    labelers: list[str] = field(default_factory=lambda: ["descriptors", "clap-vocab"])
    """Which labelers run: descriptors, clap-vocab, manual, llm (comma-separated)."""
    corpus: Path | None = None
    """The corpus (descriptors read the source audio)."""
    clap: str | None = None
    """CLAP directory or hub id: scores every label, and clap-vocab needs it."""
    vocabulary: Path | None = None
    """clap-vocab terms, one per line (default: ``labels.DEFAULT_VOCABULARY``)."""
    top_n: int = setting(3, ge=1)
    """clap-vocab labels per feature."""
    manual: Path | None = None
    """CSV of hand-made labels: feature_id, layer, label[, confidence]."""
    min_agreement: float = setting(0.6, ge=0, le=1)
    """descriptors: the share of a feature's examples that must agree before a word is proposed."""
    max_features: int | None = setting(None, ge=1)
    """Label only the N features with the largest activations per layer."""
    descriptor_backend: str = setting("essentia", choices=("essentia", "librosa"))
    """descriptors' key/mode finder: essentia (KeyExtractor) or librosa (chroma profiles)."""
    llm_model: str = "gemini-2.5-flash"
    """llm: the model name."""
    llm_url: str | None = None
    """llm: API base URL (default: Gemini's)."""
    llm_key_env: str = "GEMINI_API_KEY"
    """llm: the environment variable holding the API key."""

    def __post_init__(self) -> None:
        check_settings(self)
        self.out = Path(self.out)
        unknown = sorted(set(self.labelers) - set(LABELERS))
        if unknown or not self.labelers:
            raise FieldError(
                "labelers", f"unknown {unknown or self.labelers}; expected {', '.join(LABELERS)}"
            )
        for labeler, needed in _NEEDS.items():
            if labeler in self.labelers and getattr(self, needed) is None:
                raise FieldError("labelers", f"{labeler} needs {{other}}", other=needed)
        if "llm" in self.labelers and not os.environ.get(self.llm_key_env):
            raise FieldError(
                "labelers", f"llm needs an API key in the environment variable {self.llm_key_env}"
            )
        if self.descriptor_backend == "essentia" and "descriptors" in self.labelers:
            try:
                import essentia  # noqa: F401
            except ImportError:
                raise FieldError(
                    "descriptor_backend",
                    "essentia needs the essentia package (a dependency: reinstall the project, "
                    "or use librosa)",
                ) from None

    def record(self) -> dict[str, Any]:
        return {
            "labelers": self.labelers,
            "clap": self.clap,
            "top_n": self.top_n,
            "min_agreement": self.min_agreement,
            "descriptor_backend": self.descriptor_backend,
        }


def label_features(cfg: LabelConfig) -> pd.DataFrame:
    """Run the labelers of ``cfg`` on every layer; write labels.parquet and return it."""

    scorer = ClapScorer.load(cfg.clap, cache_dir=cfg.out.parent / ".clap_cache") if cfg.clap else None
    vocab = (
        DEFAULT_VOCABULARY
        if cfg.vocabulary is None
        else [w.strip() for w in cfg.vocabulary.read_text().splitlines() if w.strip()]
    )
    tools = _Tools(
        paths={t.track_id: t.path for t in list_tracks(cfg.corpus)} if cfg.corpus else {},
        scorer=scorer,
        vocabulary=vocab,
        llm=_llm(cfg) if "llm" in cfg.labelers else None,
    )
    run_file = "labels.run.json"
    with recorded_run(cfg.out.parent, "label", run_file=run_file, config=cfg.record(), inputs=cfg.features):
        tables, per_clip = [], []
        for root, examples in load_examples(cfg.features):
            examples = _strongest(examples, cfg.max_features)
            part = _label_layer(cfg, root, examples, tools)
            if part is None:
                continue
            if scorer is not None:
                part, clips = score_labels(part, examples, root, scorer)
                per_clip.append(clips)
            tables.append(part)
        if not tables:
            raise ValueError("no labels were proposed (no kept features, or no agreement)")
        labels = pd.concat(tables, ignore_index=True)
        save_table(labels, cfg.out, LABELS)
        if per_clip:
            buffer = pd.concat(per_clip, ignore_index=True).to_parquet(index=False)
            write_bytes_atomic(cfg.out.with_name("clap_examples.parquet"), buffer)
    return labels


def _strongest(examples: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None:
        return examples
    strongest = examples.groupby("feature_id")["peak_activation"].max().nlargest(n).index
    return examples[examples["feature_id"].isin(strongest)]


@dataclass
class _Tools:
    """What the labelers use, loaded once for every layer."""

    paths: dict[str, str]
    scorer: Any
    vocabulary: Any
    llm: Any


def _label_layer(cfg: LabelConfig, root: Path, examples: pd.DataFrame, tools: _Tools) -> pd.DataFrame | None:
    """Every chosen labeler's proposals for one layer's features (None: nothing proposed)."""

    parts = []
    if "descriptors" in cfg.labelers:
        parts.append(
            descriptor_labels(
                examples, tools.paths, min_agreement=cfg.min_agreement, backend=cfg.descriptor_backend
            )
        )
    if "clap-vocab" in cfg.labelers:
        parts.append(clap_vocabulary_labels(examples, root, tools.scorer, tools.vocabulary, cfg.top_n))
    if tools.llm is not None:
        parts.append(tools.llm.label_features(examples, root))
    if "manual" in cfg.labelers and cfg.manual is not None:
        table = manual_labels(cfg.manual)
        parts.append(table[table["layer"].isin(set(examples["layer"]))])
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def _llm(cfg: LabelConfig) -> Any:

    llm_cfg = LLMConfig(
        api_key=os.environ[cfg.llm_key_env], model=cfg.llm_model, cache_dir=cfg.out.parent / ".llm_cache"
    )
    if cfg.llm_url:
        llm_cfg.base_url = cfg.llm_url
    return LLMLabeler(llm_cfg)
