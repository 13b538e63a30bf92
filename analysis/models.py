"""Mixed-effects models of correctness: Bayesian binomial GLMM with GEE as the frequentist companion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from analysis.stats import coefficient_table


def _design(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    rows = df[df["trial_kind"].isin(["label_choice", "steering"]) & df["correct"].notna()].copy()
    rows["y"] = rows["correct"].astype(float)
    rows["layer"] = rows["layer"].astype(float)
    rows["feature"] = rows["layer"].astype(str) + ":" + rows["feature_id"].astype(str)
    terms = [
        t
        for t, col in (("C(trial_kind)", "trial_kind"), ("C(layer)", "layer"), ("C(labeler)", "labeler"))
        if rows[col].nunique() > 1
    ]
    rows["labeler"] = rows["labeler"].fillna("none")
    if rows["y"].nunique() < 2 or rows["participant"].nunique() < 2:  # nothing to model
        rows = rows.iloc[0:0]
    return rows, "y ~ " + (" + ".join(terms) if terms else "1")


def gee(df: pd.DataFrame) -> pd.DataFrame:
    """GEE logistic model clustered by participant (exchangeable): coefficients, odds ratios, CIs."""
    rows, formula = _design(df)
    if rows.empty:
        return pd.DataFrame()
    fit = smf.gee(
        formula, "participant", rows, family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable()
    ).fit()
    return coefficient_table(fit).assign(model="GEE")


def bayes_mixed(df: pd.DataFrame) -> pd.DataFrame:
    """Binomial GLMM with random intercepts for participant and feature (variational Bayes)."""
    rows, formula = _design(df)
    if rows.empty:
        return pd.DataFrame()
    model = BinomialBayesMixedGLM.from_formula(
        formula, {"participant": "0 + C(participant)", "feature": "0 + C(feature)"}, rows
    )
    fit = model.fit_vb()
    k = len(model.exog_names)
    mean, sd = fit.fe_mean[:k], fit.fe_sd[:k]
    return pd.DataFrame(
        {
            "model": "Bayes GLMM",
            "term": model.exog_names,
            "coef": mean,
            "ci_low": mean - 1.96 * sd,
            "ci_high": mean + 1.96 * sd,
            "odds_ratio": np.exp(mean),
            "p": np.nan,
            "n": len(rows),
        }
    )
