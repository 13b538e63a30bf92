"""The paper's summary views of a run: CLAP by layer, CLAP coverage, feature frequencies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artifact_schemas import (
    CONCEPTS,
    FEATURES,
    LABELS,
    ArtifactError,
    load_table,
    write_text_atomic,
)
from artifact_schemas.figures import save_figure, subplots

FIGURES = ("clap_by_layer", "clap_coverage", "feature_frequency")


def summarize_run(run: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the three figures (PNG + SVG) and ``summary.md`` for ``run``; return the paths."""
    run = Path(run)
    out = Path(out) if out is not None else run / "summary"
    feature_files = sorted(run.glob("features/layer_*/features.parquet"))
    if not feature_files:
        raise ArtifactError(
            run, "features", "features/layer_<l>/features.parquet (sae-core features)", has_value=False
        )
    features = pd.concat([load_table(f, FEATURES) for f in feature_files], ignore_index=True)
    labels_path = run / "labels.parquet"
    labels = load_table(labels_path, LABELS) if labels_path.is_file() else None
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    # 1. Mean CLAP score by layer (and labeler).
    fig, ax = subplots(figsize=(5, 3.2))
    if labels is not None and labels["clap_score"].notna().any():
        table = (
            labels.dropna(subset=["clap_score"]).groupby(["layer", "labeler"])["clap_score"].mean().unstack()
        )
        table.plot.bar(ax=ax)
        ax.set_ylabel("mean CLAP score")
    else:
        ax.text(0.5, 0.5, "no CLAP-scored labels", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("CLAP score by layer")
    written += save_figure(fig, out, "clap_by_layer")

    # 2. Per-feature best CLAP score: distribution and coverage vs threshold.
    fig, (left, right) = subplots(1, 2, figsize=(8, 3.2))
    if labels is not None and labels["clap_score"].notna().any():
        best = labels.dropna(subset=["clap_score"]).groupby(["layer", "feature_id"])["clap_score"].max()
        left.hist(best.to_numpy(dtype=float), bins=20)
        thresholds = np.linspace(float(best.min()), float(best.max()), 50)
        right.plot(thresholds, [(best >= t).mean() for t in thresholds])
    left.set(title="best CLAP score per feature", xlabel="CLAP score", ylabel="features")
    right.set(title="coverage", xlabel="threshold", ylabel="share of features >= threshold")
    written += save_figure(fig, out, "clap_coverage")

    # 3. Feature-frequency histogram (log scale), per layer.
    fig, ax = subplots(figsize=(5, 3.2))
    for layer, group in features.groupby("layer"):
        live = group.loc[group["frequency"] > 0, "frequency"].to_numpy(dtype=float)
        if len(live):
            ax.hist(np.log10(live), bins=30, alpha=0.6, label=f"layer {layer}")
    ax.set(title="feature frequency", xlabel="log10(fraction of frames active)", ylabel="features")
    ax.legend()
    written += save_figure(fig, out, "feature_frequency")

    # Markdown table per layer.
    lines = [
        "| layer | features | kept | mean CLAP | labels per labeler |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layer, group in features.groupby("layer"):
        mean_clap, per = "", ""
        if labels is not None:
            mine = labels[labels["layer"] == layer]
            if mine["clap_score"].notna().any():
                mean_clap = f"{mine['clap_score'].mean():.3f}"
            per = ", ".join(f"{k}: {v}" for k, v in sorted(mine.groupby("labeler").size().items()))
        lines.append(f"| {layer} | {len(group)} | {int(group['kept'].sum())} | {mean_clap} | {per} |")
    concepts_path = run / "concepts" / "concepts.parquet"
    if concepts_path.is_file():  # sae-core concepts: which layer knows what, against truth
        lines += ["", "## Concepts against ground truth (best SAE feature, AUROC on held-out tracks)", ""]
        lines += concepts_markdown(load_table(concepts_path, CONCEPTS))
    summary = out / "summary.md"
    write_text_atomic(summary, "# Run summary\n\n" + "\n".join(lines) + "\n")
    return [*written, summary]


def concepts_markdown(table: pd.DataFrame) -> list[str]:
    """Rows of concept values, columns of layers: best SAE feature AUROC (and neuron's)."""
    sae = table[table["method"] == "sae"]
    neuron = table[table["method"] == "neuron"].set_index(["layer", "concept", "value"])["auroc"]
    layers = sorted(sae["layer"].unique())
    lines = ["| concept | " + " | ".join(f"layer {layer}" for layer in layers) + " |"]
    lines.append("| --- |" + " --- |" * len(layers))
    for (concept, value), group in sae.groupby(["concept", "value"]):
        cells = []
        for layer in layers:
            row = group[group["layer"] == layer]
            if row.empty:
                cells.append("")
                continue
            base = neuron.get((layer, concept, value), np.nan)
            cells.append(f"{row['auroc'].iloc[0]:.2f} (#{int(row['unit'].iloc[0])}; neuron {base:.2f})")
        lines.append(f"| {concept}={value} | " + " | ".join(cells) + " |")
    return lines
