"""CLAP scores against human judgements, per feature."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis.report_data import Report, ReportInputs
from analysis.report_figures import keep
from analysis.stats import adjust_pvalues, correlation, wilson_ci
from artifact_schemas.figures import subplots


def per_feature(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (layer, feature, labeler): CLAP score, human accuracy (choices), mean rating."""
    keys = ["layer", "feature_id", "labeler"]
    # Only the columns used, and "correct" as float before grouping: copying all 45 columns
    # and a lambda per group took 0.3 s on 100k responses.
    wanted = df["trial_type"].isin(["label_choice", "label_rating"]) & df["clap_score"].notna()
    rows = df.loc[wanted, [*keys, "trial_type", "correct", "rating", "clap_score"]]
    choices = rows[rows["trial_type"] == "label_choice"]
    choice = (
        choices.assign(correct=choices["correct"].astype(float))
        .groupby(keys)
        .agg(accuracy=("correct", "mean"), n_choice=("correct", "size"))
    )
    rating = (
        rows[rows["trial_type"] == "label_rating"]
        .groupby(keys)
        .agg(mean_rating=("rating", "mean"), n_rating=("rating", "size"))
    )
    clap = rows.groupby(keys)["clap_score"].first().rename("clap_score")
    return pd.concat([clap, choice, rating], axis=1).reset_index()


def clap_vs_human(df: pd.DataFrame, n_perm: int = 2000, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman and Kendall correlations of CLAP score with accuracy and rating, overall and per layer.

    A row of :func:`per_feature` is a (layer, feature, labeler): one feature gives a row per
    labeler, and those rows share the feature (how easy its clips are, how CLAP hears
    them). The bootstrap CI and the permutation p therefore resample features (clusters),
    not rows (:func:`analysis.stats.correlation` with ``cluster``); ``n`` counts rows,
    ``n_features`` the clusters. ``p_holm`` corrects ``p_perm`` across the table's rows.
    A layer's rows are left out when it is the only layer (they would repeat "all").
    """
    table = per_feature(df)
    table = table.assign(_feature=table["layer"].astype(str) + ":" + table["feature_id"].astype(str))
    layers = list(table.groupby("layer")) if table["layer"].nunique() > 1 else []
    out = []
    for scope, part in [("all", table), *((f"layer {k}", g) for k, g in layers)]:
        for human in ("accuracy", "mean_rating"):
            if human not in part:
                continue
            for method in ("spearman", "kendall"):
                r = correlation(
                    part["clap_score"],
                    part[human],
                    method=method,
                    n_perm=n_perm,
                    n_boot=n_boot,
                    cluster=part["_feature"],
                )
                out.append({"scope": scope, "human": human, **r.iloc[0].to_dict()})
    result = pd.DataFrame(out).rename(columns={"n_clusters": "n_features"})
    if not result.empty:
        result["p_holm"] = adjust_pvalues(result["p_perm"], "holm")
    return result


def calibration(df: pd.DataFrame, bins: int = 4) -> pd.DataFrame:
    """Human accuracy by CLAP-score bin (quantiles), with each threshold's coverage of features.

    Read it to choose a CLAP threshold: the bin's accuracy says how well labels
    above that score hold up, ``coverage`` what share of features it keeps.
    """
    table = per_feature(df).dropna(subset=["accuracy"])
    if table.empty:
        return pd.DataFrame()
    edges = np.unique(np.quantile(table["clap_score"], np.linspace(0, 1, bins + 1)))
    rows = df.loc[(df["trial_type"] == "label_choice") & df["clap_score"].notna(), ["clap_score", "correct"]]
    out = []
    for low, high in itertools.pairwise(edges):
        in_bin = rows[(rows["clap_score"] >= low) & ((rows["clap_score"] < high) | (high == edges[-1]))]
        k, n = int(in_bin["correct"].astype(bool).sum()), len(in_bin)
        lo, hi = wilson_ci(k, n)
        out.append(
            {
                "clap_low": float(low),
                "clap_high": float(high),
                "n": n,
                "accuracy": k / n if n else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "coverage": float((table["clap_score"] >= low).mean()),
            }
        )
    return pd.DataFrame(out)


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """CLAP score against what listeners did, per feature and labeler (label trials only)."""
    if not inputs.has("label_choice", "label_rating"):
        r.skip("clap_vs_human", "clap_calibration")
        return
    r.add(
        "clap_vs_human",
        clap_vs_human(inputs.kept, n_perm=1000),
        "CLAP score vs human accuracy and rating per feature and labeler (n = rows, n_features = "
        "features): Spearman/Kendall, 95% CI from a bootstrap of features, two-sided permutation test "
        "permuting features (each feature's rows move together); Holm across the rows.",
    )
    if not inputs.has("label_choice"):
        r.skip("clap_calibration")  # a calibration of accuracy, which only label choices have
        return
    r.add(
        "clap_calibration",
        calibration(inputs.kept),
        "Human accuracy by CLAP-score bin (Wilson 95% CI; descriptive, no test; n = responses), and the "
        "coverage of each threshold.",
    )


def _significant(r: Report) -> bool:
    """Whether the figure's correlation (all features, accuracy, Spearman) has p_perm < .05:
    a fitted line under a non-significant one (rho 0.065, p 0.76) shows a trend there is not."""
    table = r.tables.get("clap_vs_human", pd.DataFrame())
    if table.empty or "p_perm" not in table:
        return False
    row = table.query("scope == 'all' and human == 'accuracy' and method == 'spearman'")
    return bool(len(row)) and float(row["p_perm"].iloc[0]) < 0.05


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """Human accuracy against the CLAP score per feature; a fitted line where the
    correlation is significant (or ``inputs.clap_line``). Accuracy is label choice's."""
    if not inputs.has("label_choice"):
        return
    fig, ax = subplots(figsize=(4, 3))
    table = per_feature(inputs.kept).dropna(subset=["accuracy"])
    if len(table) >= 2:
        ax.scatter(table["clap_score"], table["accuracy"])
        if table["clap_score"].nunique() > 1 and (inputs.clap_line or _significant(r)):
            slope, intercept = np.polyfit(table["clap_score"], table["accuracy"], 1)
            xs = np.linspace(table["clap_score"].min(), table["clap_score"].max(), 20)
            ax.plot(xs, slope * xs + intercept, color="grey")
    ax.set_xlabel("CLAP score of the label")
    ax.set_ylabel("human accuracy")
    keep(r, "clap_vs_human", fig)
