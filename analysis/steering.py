"""Steering detection: do listeners pick the steered clip?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from analysis.stats import chisquare_uniform, coefficient_table, proportion_vs_chance


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[(df["trial_type"] == "steering") & df["answer_role"].notna()].copy()
    # Three candidates when the study had a random-direction control (one was ever chosen
    # or offered); the export records roles of chosen clips, so a study where nobody
    # picked the control at all is treated as two-way (noted in the report).
    three_way = rows["answer_role"].eq("random_direction").any()
    rows["chance"] = 1 / 3 if three_way else 1 / 2
    rows["chose_steered"] = rows["answer_role"].eq("steered")
    return rows


def detection(df: pd.DataFrame, by: Sequence[str] = ("layer", "feature_id")) -> pd.DataFrame:
    """Proportion choosing the steered clip per group: Wilson CI, binomial test vs chance, Holm/BH."""
    return proportion_vs_chance(_rows(df), "chose_steered", list(by), "chance")


def choice_counts(df: pd.DataFrame) -> pd.DataFrame:
    """How often each candidate was chosen, with a chi-square test against equal shares.

    The paper's three-way result (66 steered, 17 baseline, 17 random of 100) gives
    chi2 = 48.02 (tests reproduce it).
    """
    rows = _rows(df)
    roles = ["steered", "baseline"] + (["random_direction"] if rows["chance"].iloc[0] < 0.5 else [])
    counts = [int((rows["answer_role"] == r).sum()) for r in roles] if len(rows) else [0] * len(roles)
    table = chisquare_uniform(counts) if sum(counts) else pd.DataFrame([{"n": 0}])
    for r, c in zip(roles, counts, strict=True):
        table[f"n_{r}"] = c
    return table


def strength_model(df: pd.DataFrame) -> pd.DataFrame:
    """Logistic regression: chose steered ~ log(strength) (+ layer when there are several)."""
    rows = _rows(df).dropna(subset=["strength"])
    rows = rows.assign(strength=rows["strength"].astype(float), layer=rows["layer"].astype(float))
    rows = rows[rows["strength"] > 0].assign(
        log_strength=lambda d: np.log(d["strength"]), y=lambda d: d["chose_steered"].astype(float)
    )
    if rows["log_strength"].nunique() < 2 or rows["y"].nunique() < 2:
        return pd.DataFrame(columns=["term", "coef", "ci_low", "ci_high", "odds_ratio", "p", "n"])
    formula = "y ~ log_strength" + (" + C(layer)" if rows["layer"].nunique() > 1 else "")
    return coefficient_table(smf.logit(formula, data=rows).fit(disp=False))
