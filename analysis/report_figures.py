"""Drawing the report's figures on plain matplotlib Figures (no pyplot), kept as SVG + PNG.

Each trial type's module draws its own (its ``report_figures``) with these helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.report_data import Report
from artifact_schemas.figures import figure_bytes, subplots


def keep(r: Report, name: str, fig: Any) -> None:
    """Keep ``fig`` in the report as ``name`` (inline SVG for report.html, and a PNG)."""
    text = figure_bytes(fig, "svg").decode()
    r.figures[name] = text[text.index("<svg") :]  # inline in report.html: no external file
    r.pngs[name] = figure_bytes(fig, "png")


def interval(est: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """Error-bar lengths below and above ``est`` from the table's ci_low and ci_high."""
    # Interval ends can sit a rounding error inside the estimate (0 of n: Wilson low = 0).
    low = np.clip(est - table["ci_low"].to_numpy(dtype=float), 0, None)
    high = np.clip(table["ci_high"].to_numpy(dtype=float) - est, 0, None)
    return np.nan_to_num(np.vstack([low, high]))


def errorbar(ax: Any, table: pd.DataFrame, x: str, label: str) -> None:
    """A share per group of ``table`` (estimate, ci_low, ci_high) against its chance line."""
    if table.empty:
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    xs = table[x].astype(str)
    est = table["estimate"].to_numpy(dtype=float)
    ax.errorbar(xs, est, yerr=interval(est, table), fmt="o", capsize=4)
    ax.axhline(float(table["chance"].iloc[0]), ls="--", color="grey", label="chance")
    ax.set_ylim(0, 1)
    ax.set_xlabel(label)
    ax.legend()


def share_figure(r: Report, name: str, table: str, x: str, xlabel: str, ylabel: str) -> None:
    """Figure ``name``: the share per ``x`` of table ``table`` with its 95% CI, against chance."""
    fig, ax = subplots(figsize=(4, 3))
    errorbar(ax, r.tables[table], x, xlabel)
    ax.set_ylabel(ylabel)
    keep(r, name, fig)


# Marker colour per role of a rated clip: the hidden reference and the anchors frame the
# conditions under test, as in a MUSHRA plot.
_ROLE_COLOURS = {"reference": "black", "anchor": "grey", "condition": "C0"}


def scores(table: pd.DataFrame, label: str) -> Any:
    """Mean rating per condition with its 95% CI, in the table's order (reference, anchors,
    conditions); on the 0-100 scale where every number lies on it."""
    fig, ax = subplots(figsize=(max(3.0, 0.6 * len(table) + 1.5), 3))
    table = table.assign(_x=np.arange(len(table)))
    for role, rows in table.groupby("role", sort=False):
        est = rows["mean"].to_numpy(dtype=float)
        colour = _ROLE_COLOURS.get(str(role), "C1")
        ax.errorbar(rows["_x"], est, yerr=interval(est, rows), fmt="o", capsize=4, color=colour, label=role)
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
