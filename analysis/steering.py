"""Steering detection: do listeners pick the steered clip?"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.report_data import CLUSTERED_TEST, Report, ReportInputs
from analysis.report_figures import share_figure
from analysis.responses import options_offered
from analysis.stats import chisquare_uniform, proportion_vs_chance


def steering_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The answered steering rows, each with its ``chance`` and ``chose_steered``."""
    rows = df[(df["trial_type"] == "steering") & df["answer_role"].notna()].copy()
    # Chance is 1 / the clips the trial offered (the export's n_options). An export from
    # before that column records only the roles of chosen clips: three candidates are
    # assumed when anyone chose the random-direction control, so a study where nobody
    # picked it reads as two-way there (noted in the report).
    three_way = rows["answer_role"].eq("random_direction").any()
    guessed = pd.Series(1 / 3 if three_way else 1 / 2, index=rows.index)
    rows["chance"] = (1 / options_offered(rows)).fillna(guessed)
    rows["chose_steered"] = rows["answer_role"].eq("steered")
    return rows


def detection(df: pd.DataFrame, by: Sequence[str] = ("layer", "feature_id")) -> pd.DataFrame:
    """Proportion choosing the steered clip per group vs chance (1/candidates), Holm/BH.

    Exact binomial test and Wilson CI where each participant answered once in a group,
    else participant-clustered (cluster-robust t; :func:`analysis.stats.proportion_vs_chance`).
    """
    return proportion_vs_chance(steering_rows(df), "chose_steered", list(by), "chance", cluster="participant")


def choice_counts(df: pd.DataFrame) -> pd.DataFrame:
    """How often each candidate was chosen, with a chi-square test against equal shares.

    The paper's three-way result (66 steered, 17 baseline, 17 random of 100) gives
    chi2 = 48.02 (tests reproduce it).
    """
    rows = steering_rows(df)
    # An export without steering trials (a MUSHRA study) has no chance level to read.
    three_way = len(rows) > 0 and rows["chance"].iloc[0] < 0.5
    roles = ["steered", "baseline"] + (["random_direction"] if three_way else [])
    counts = [int((rows["answer_role"] == r).sum()) for r in roles] if len(rows) else [0] * len(roles)
    table = chisquare_uniform(counts) if sum(counts) else pd.DataFrame([{"n": 0}])
    for r, c in zip(roles, counts, strict=True):
        table[f"n_{r}"] = c
    return table


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """Steering detection's tables in the report (docs/analysis.md), where the study asked it."""
    if not inputs.has("steering"):
        r.skip("steering_by_feature", "steering_by_strength", "steering_choices")
        return
    kept = inputs.kept
    r.add(
        "steering_by_feature",
        detection(kept, ["layer", "feature_id"]),
        "Steering detection: share choosing the steered clip per feature vs chance 1/candidates "
        f"({CLUSTERED_TEST}).",
    )
    r.add(
        "steering_by_strength",
        detection(kept, ["strength"]),
        f"Steering detection by strength vs chance 1/candidates ({CLUSTERED_TEST}).",
    )
    r.add(
        "steering_choices",
        choice_counts(kept),
        "Steering: how often each candidate was chosen; chi-square test against equal shares "
        "(descriptive: responses pooled over participants; n = responses).",
    )


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """The share choosing the steered clip by strength."""
    if "steering_by_strength" not in r.tables:
        return
    share_figure(
        r,
        "steering_by_strength",
        "steering_by_strength",
        "strength",
        "steering strength",
        "chose the steered clip",
    )
