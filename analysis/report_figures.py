"""The report's figures, drawn on plain matplotlib Figures (no pyplot) and kept as SVG + PNG."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import clap_human
from analysis.report_data import Report
from artifact_schemas.figures import figure_bytes, subplots


def _keep(r: Report, name: str, fig: Any) -> None:
    text = figure_bytes(fig, "svg").decode()
    r.figures[name] = text[text.index("<svg") :]  # inline in report.html: no external file
    r.pngs[name] = figure_bytes(fig, "png")


def _err(est: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    # Interval ends can sit a rounding error inside the estimate (0 of n: Wilson low = 0).
    low = np.clip(est - table["ci_low"].to_numpy(dtype=float), 0, None)
    high = np.clip(table["ci_high"].to_numpy(dtype=float) - est, 0, None)
    return np.nan_to_num(np.vstack([low, high]))


def _errorbar(ax: Any, table: pd.DataFrame, x: str, label: str) -> None:
    if table.empty:
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    xs = table[x].astype(str)
    est = table["estimate"].to_numpy(dtype=float)
    ax.errorbar(xs, est, yerr=_err(est, table), fmt="o", capsize=4)
    ax.axhline(float(table["chance"].iloc[0]), ls="--", color="grey", label="chance")
    ax.set_ylim(0, 1)
    ax.set_xlabel(label)
    ax.legend()


def _clap_significant(r: Report) -> bool:
    """Whether the figure's correlation (all features, accuracy, Spearman) has p_perm < .05:
    a fitted line under a non-significant one (rho 0.065, p 0.76) shows a trend there is not."""
    table = r.tables.get("clap_vs_human", pd.DataFrame())
    if table.empty or "p_perm" not in table:
        return False
    row = table.query("scope == 'all' and human == 'accuracy' and method == 'spearman'")
    return bool(len(row)) and float(row["p_perm"].iloc[0]) < 0.05


def _figures(r: Report, kept: pd.DataFrame, clap_line: bool = False) -> None:
    fig, ax = subplots(figsize=(4, 3))
    _errorbar(ax, r.tables["label_accuracy_by_layer"], "layer", "layer")
    ax.set_ylabel("label accuracy")
    _keep(r, "accuracy_by_layer", fig)

    fig, ax = subplots(figsize=(4, 3))
    _errorbar(ax, r.tables["steering_by_strength"], "strength", "steering strength")
    ax.set_ylabel("chose the steered clip")
    _keep(r, "steering_by_strength", fig)

    fig, ax = subplots(figsize=(4, 3))
    table = clap_human.per_feature(kept).dropna(subset=["accuracy"])
    if len(table) >= 2:
        ax.scatter(table["clap_score"], table["accuracy"])
        if table["clap_score"].nunique() > 1 and (clap_line or _clap_significant(r)):
            slope, intercept = np.polyfit(table["clap_score"], table["accuracy"], 1)
            xs = np.linspace(table["clap_score"].min(), table["clap_score"].max(), 20)
            ax.plot(xs, slope * xs + intercept, color="grey")
    ax.set_xlabel("CLAP score of the label")
    ax.set_ylabel("human accuracy")
    _keep(r, "clap_vs_human", fig)

    forest = r.tables["label_accuracy_by_feature"]
    fig, ax = subplots(figsize=(4, max(2.0, 0.25 * len(forest) + 1)))
    if not forest.empty:
        labels = forest["layer"].astype(str) + ":" + forest["feature_id"].astype(str)
        est = forest["estimate"].to_numpy(dtype=float)
        ax.errorbar(est, labels, xerr=_err(est, forest), fmt="o", capsize=3)
        ax.axvline(float(forest["chance"].iloc[0]), ls="--", color="grey")
        ax.set_xlim(0, 1)
    ax.set_xlabel("label accuracy (95% CI)")
    _keep(r, "forest_features", fig)
    for source, name, label in (
        ("mushra_conditions", "mushra_scores", "MUSHRA score (95% CI)"),
        ("slider_conditions", "slider_scores", "rating (95% CI)"),
    ):
        if source in r.tables:
            _keep(r, name, _scores(r.tables[source], label))


# Marker colour per role of a rated clip: the hidden reference and the anchors frame the
# conditions under test, as in a MUSHRA plot.
_ROLE_COLOURS = {"reference": "black", "anchor": "grey", "condition": "C0"}


def _scores(table: pd.DataFrame, label: str) -> Any:
    """Mean rating per condition with its 95% CI, in the table's order (reference, anchors,
    conditions); on the 0-100 scale where every number lies on it."""
    fig, ax = subplots(figsize=(max(3.0, 0.6 * len(table) + 1.5), 3))
    table = table.assign(_x=np.arange(len(table)))
    for role, rows in table.groupby("role", sort=False):
        est = rows["mean"].to_numpy(dtype=float)
        colour = _ROLE_COLOURS.get(str(role), "C1")
        ax.errorbar(rows["_x"], est, yerr=_err(est, rows), fmt="o", capsize=4, color=colour, label=role)
    ax.set_xticks(table["_x"], table["condition"].astype(str), rotation=30, ha="right")
    numbers = table[["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)
    if np.nanmin(numbers) >= 0 and np.nanmax(numbers) <= 100:
        ax.set_ylim(0, 100)
        ax.set_yticks(range(0, 101, 20))  # BS.1534's five quality bands
        ax.grid(axis="y", color="0.9")
    ax.set_xlabel("condition")
    ax.set_ylabel(label)
    ax.legend(fontsize="small")
    return fig
