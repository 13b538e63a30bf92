"""Steering success without listeners (Singh et al.): does steering move the audio towards the feature?

For each steered generation: CLAP audio-audio similarity to the feature's example clips
(mean of their unit embeddings) and CLAP text-audio similarity to the feature's best label,
each compared with the unsteered baseline of the same prompt and seed (and with the
random-direction control when there is one). The summary reports, per layer, the share
of features whose steered clips are closer than their baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artifact_schemas import EXAMPLES, LABELS, STEERING, ArtifactError, load_table, write_bytes_atomic
from sae_core.clap import ClapScorer


def evaluate_steering(run: str | Path, scorer: ClapScorer) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per steered generation, one row per layer) for ``run``."""
    run = Path(run)
    steering_dir = run / "steering"
    pairs = load_table(steering_dir / "steering.parquet", STEERING)
    labels_path = run / "labels.parquet"
    best_label: dict[tuple[int, int], str] = {}
    if labels_path.is_file():
        labels = load_table(labels_path, LABELS).dropna(subset=["clap_score"])
        best = labels.sort_values("clap_score", ascending=False).drop_duplicates(["layer", "feature_id"])
        for layer, feature, label in zip(best["layer"], best["feature_id"], best["label"], strict=True):
            best_label[(int(layer), int(feature))] = str(label)
    centroids: dict[tuple[int, int], np.ndarray] = {}
    rows = []
    for pair in pairs.to_dict("records"):
        layer, feature = int(pair["layer"]), int(pair["feature_id"])
        key = (layer, feature)
        if key not in centroids:
            features_dir = run / "features" / f"layer_{layer}"
            examples = load_table(features_dir / "examples.parquet", EXAMPLES)
            mine = examples[examples["feature_id"] == feature]
            if mine.empty:
                raise ArtifactError(
                    features_dir / "examples.parquet",
                    "feature_id",
                    "example clips of every steered feature",
                    feature,
                )
            centroid = scorer.embed_audio([features_dir / p for p in mine["path"]]).mean(axis=0)
            centroids[key] = centroid / np.linalg.norm(centroid)
        names = {"steered": pair["path"], "baseline": pair["baseline_path"]}
        if isinstance(pair.get("random_path"), str):
            names["random"] = pair["random_path"]
        audio = dict(zip(names, scorer.embed_audio([steering_dir / p for p in names.values()]), strict=True))
        row = {
            "feature_id": feature,
            "layer": layer,
            "prompt": pair["prompt"],
            "seed": pair["seed"],
            "strength": pair["strength"],
        }
        for name, emb in audio.items():
            row[f"audio_sim_{name}"] = float(emb @ centroids[key])
        label = best_label.get(key)
        row["label"] = label
        if label is not None:
            text = scorer.embed_text([label])[0]
            for name, emb in audio.items():
                row[f"text_sim_{name}"] = float(emb @ text)
        rows.append(row)
    table = pd.DataFrame(rows)
    per_feature = table.groupby(["layer", "feature_id"]).mean(numeric_only=True)
    summary = pd.DataFrame(
        {
            "features": per_feature.groupby("layer").size(),
            "audio_improved": (per_feature["audio_sim_steered"] > per_feature["audio_sim_baseline"])
            .groupby("layer")
            .mean(),
        }
    )
    if "text_sim_steered" in per_feature:
        has_text = per_feature.dropna(subset=["text_sim_steered"])
        summary["text_improved"] = (
            (has_text["text_sim_steered"] > has_text["text_sim_baseline"]).groupby("layer").mean()
        )
    if "audio_sim_random" in per_feature:
        summary["beats_random"] = (
            (per_feature["audio_sim_steered"] > per_feature["audio_sim_random"]).groupby("layer").mean()
        )
    return table, summary.reset_index()


@dataclass(frozen=True)
class SteeringEvalConfig:
    run: Path
    """A run directory with steering/, features/ (and labels.parquet)."""
    clap: str
    """CLAP directory or hub id."""


def run_steering_eval(cfg: SteeringEvalConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``steering-eval`` stage: writes ``RUN/steering/steering_eval.parquet``; returns
    (that table, the per-layer summary)."""
    run = Path(cfg.run)
    scorer = ClapScorer.load(cfg.clap, cache_dir=run / ".clap_cache")
    table, summary = evaluate_steering(run, scorer)
    write_bytes_atomic(run / "steering" / "steering_eval.parquet", table.to_parquet(index=False))
    return table, summary
