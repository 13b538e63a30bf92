"""The paper's summary views of a run: CLAP by layer (Fig. 3), CLAP coverage (Fig. 4), feature
frequencies; and where the run was scored against a known truth (``sae-core concepts``,
``steering-truth``), concept detection by layer and the steering strength-response curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artifact_schemas import (
    CONCEPTS,
    FEATURES,
    LABELS,
    STEERING_TRUTH,
    ArtifactError,
    load_table,
    write_text_atomic,
)
from artifact_schemas.figures import save_figure, subplots

FIGURES = ("clap_by_layer", "clap_coverage", "feature_frequency")


def summarize_run(run: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the three figures (PNG + SVG), the concept and steering figures where the run has
    their tables, and ``summary.md`` for ``run``; return the paths."""
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
        concepts = load_table(concepts_path, CONCEPTS)
        lines += [
            "",
            "## Concepts against ground truth (best SAE feature on held-out tracks: AUROC / purity)",
            "",
        ]
        lines += concepts_markdown(concepts)
        written += concepts_figure(concepts, out)
        lines += ["", "![concept detection by layer](concepts_by_layer.png)"]
    steering_path = run / "steering_truth" / "steering_truth.parquet"
    if steering_path.is_file():  # sae-core steering-truth: does steering put the concept in?
        steering = load_table(steering_path, STEERING_TRUTH)
        if len(steering):
            written += steering_figure(steering, out)
            lines += [
                "",
                "## Steering against ground truth",
                "",
                "![strength-response](steering_response.png)",
            ]
    summary = out / "summary.md"
    write_text_atomic(summary, "# Run summary\n\n" + "\n".join(lines) + "\n")
    return [*written, summary]


def concepts_markdown(table: pd.DataFrame) -> list[str]:
    """Rows of concept values, columns of layers: best SAE feature AUROC and purity (and the
    best neuron's)."""
    sae = table[table["method"] == "sae"]
    neurons = table[table["method"] == "neuron"]
    neuron = {
        (int(layer), str(concept), str(value)): (float(auroc), float(purity))
        for layer, concept, value, auroc, purity in zip(
            neurons["layer"],
            neurons["concept"],
            neurons["value"],
            neurons["auroc"],
            neurons["purity"],
            strict=True,
        )
    }
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
            base_auroc, base_purity = neuron.get((int(layer), str(concept), str(value)), (np.nan, np.nan))
            r = row.iloc[0]
            cells.append(
                f"{r['auroc']:.2f} / {r['purity']:.2f} (#{int(r['unit'])}, #{int(r['purity_unit'])}; "
                f"neuron {base_auroc:.2f} / {base_purity:.2f})"
            )
        lines.append(f"| {concept}={value} | " + " | ".join(cells) + " |")
    return lines


def concepts_figure(table: pd.DataFrame, out: Path) -> list[Path]:
    """Best SAE feature per concept value by layer, AUROC and purity side by side (heatmaps),
    and mean purity by layer for SAE features, neurons and PCA against chance."""
    n_values = table[["concept", "value"]].drop_duplicates().shape[0]
    fig, axes = subplots(1, 3, figsize=(14, 0.28 * n_values + 2), layout="constrained")
    sae = table[table["method"] == "sae"].assign(name=lambda d: d["concept"] + "=" + d["value"])
    for ax, measure in zip(axes[:2], ("auroc", "purity"), strict=True):
        grid = sae.pivot_table(index="name", columns="layer", values=measure)
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), list(grid.index) if measure == "auroc" else [], fontsize=7)
        ax.set(title=f"best SAE feature: {measure}", xlabel="layer")
        fig.colorbar(image, ax=ax, fraction=0.05)
    means = table.pivot_table(index="layer", columns="method", values="purity", aggfunc="mean")
    for method in means.columns:
        axes[2].plot(means.index, means[method], "-o", label=method)
    chance = table.groupby("layer")["purity_chance"].mean()
    axes[2].plot(chance.index, chance, "k:", label="chance")
    axes[2].set(title="mean purity over concept values", xlabel="layer", ylabel="purity", ylim=(0, 1.05))
    axes[2].set_xticks(list(means.index))
    axes[2].legend(fontsize=7)
    return save_figure(fig, out, "concepts_by_layer")


def steering_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    """The strength-response curve over every steered feature: the share of clips read as
    having the feature's concept value, for the steered, baseline and control clips."""
    curve = summary.groupby("strength")[["read_steered", "read_baseline", "read_control"]].mean()
    fig, ax = subplots(figsize=(5, 3.2))
    for who, style in (("steered", "-o"), ("baseline", "--s"), ("control", ":^")):
        ax.plot(curve.index, curve[f"read_{who}"], style, label=who)
    ax.set_xscale("log", base=2)
    n = summary.groupby(["layer", "feature_id"]).ngroups
    ax.set(
        title=f"steering strength-response ({n} features)",
        xlabel="strength (x max activation)",
        ylabel="share read as the value",
        ylim=(-0.05, 1.05),
    )
    ax.legend(fontsize=7)
    return save_figure(fig, out, "steering_response")
