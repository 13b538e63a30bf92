"""Label validation: do listeners agree with the automatic labels?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.agreement import Judgements, agreements_with_ci, cohen_kappa, interval_note
from analysis.report_data import CLUSTERED_TEST, Report, ReportInputs
from analysis.report_figures import interval, keep, share_figure
from analysis.responses import options_offered
from analysis.stats import adjust_pvalues, bootstrap_ci, proportion_vs_chance, wilson_ci
from artifact_schemas import FieldError
from artifact_schemas.figures import subplots


def _answered_choices(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["trial_type"] == "label_choice") & df["correct"].notna()].copy()


def choice_rows(df: pd.DataFrame, n_options: int | None = None) -> pd.DataFrame:
    """The answered label-choice rows, each with its ``chance``: 1 / the options it offered.

    The export's ``n_options`` says how many that was (n_foils + 1). An export written
    before that column existed has it null; ``n_options`` (``study-analysis report
    --n-options``, or counted in the study package) stands in for it, and without either
    the chance level is unknown: a FieldError says so rather than assuming one.
    """
    rows = _answered_choices(df)
    shown = options_offered(rows)
    if shown.isna().any():
        if n_options is None:
            raise FieldError(
                "n_options",
                "is needed: the export does not say how many options its label-choice trials offered "
                "(its n_options column is missing or empty: an export from before it was added); "
                "give it, or {other}",
                other="study",
            )
        shown = shown.fillna(n_options)
    return rows.assign(chance=1 / shown)


def options_shown(df: pd.DataFrame, n_options: int | None = None) -> int | None:
    """The number of options of the label-choice trials (the most common, if they differ)."""
    rows = choice_rows(df, n_options)
    return round(1 / float(rows["chance"].mode().iloc[0])) if len(rows) else n_options


def choice_accuracy(
    df: pd.DataFrame, by: Sequence[str] = ("layer", "feature_id"), n_options: int | None = None
) -> pd.DataFrame:
    """Accuracy (target label chosen) per group vs chance (1 / the trial's options:
    :func:`choice_rows`), Holm/BH.

    Exact binomial test and Wilson CI where each participant answered once in a group,
    else participant-clustered (cluster-robust t; :func:`analysis.stats.proportion_vs_chance`).
    """
    rows = choice_rows(df, n_options)
    return proportion_vs_chance(rows, "correct", list(by), "chance", cluster="participant")


def rating_summary(
    df: pd.DataFrame, by: Sequence[str] = ("labeler",), midpoint: float | None = None
) -> pd.DataFrame:
    """Mean rating per group against the scale midpoint, clustered by participant.

    One participant gives many ratings, which are not independent (a lenient rater is
    lenient throughout): the test is a one-sample t test of the participants' mean
    ratings against the midpoint (df = participants - 1), and the CI is the t interval
    of those means. ``mean`` is the mean of the participants' means (equal weight per
    participant); ``n`` counts ratings, ``n_participants`` the units of the test.
    """
    rows = df[(df["trial_type"] == "label_rating") & df["rating"].notna()]
    mid = midpoint if midpoint is not None else 3.0
    out = []
    for key, g in rows.groupby(list(by), sort=True):
        means = g.groupby("participant")["rating"].mean().to_numpy(dtype=float)
        keys = key if isinstance(key, tuple) else (key,)
        row = {
            **dict(zip(by, keys, strict=True)),
            "n": len(g),
            "n_participants": len(means),
            "mean": float(means.mean()),
            "ci_low": np.nan,
            "ci_high": np.nan,
            "midpoint": mid,
            "test": "t test of participant means",
            "t": np.nan,
            "p": np.nan,
        }
        if len(means) > 1 and means.std() > 0:
            t = stats.ttest_1samp(means, mid)
            low, high = t.confidence_interval()
            row |= {
                "ci_low": float(low),
                "ci_high": float(high),
                "t": float(t.statistic),
                "p": float(t.pvalue),
            }
        out.append(row)
    table = pd.DataFrame(out)
    if not table.empty:
        table["p_holm"] = adjust_pvalues(table["p"], "holm")
        table["p_bh"] = adjust_pvalues(table["p"], "fdr_bh")
    return table


def labeler_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """Ratings of the same features under different labelers' labels (the paper's comparison).

    Per feature the mean rating under each labeler; for every pair of labelers a
    Wilcoxon signed-rank test over the features both labelled, the mean difference
    with a bootstrap CI and the paired effect size d_z (mean difference / SD).
    ``n`` counts those features (the units of the test).
    """
    rows = df[(df["trial_type"] == "label_rating") & df["rating"].notna()]
    wide = rows.pivot_table(index=["layer", "feature_id"], columns="labeler", values="rating", aggfunc="mean")
    labelers = sorted(wide.columns)
    out = []
    for i, a in enumerate(labelers):
        for b in labelers[i + 1 :]:
            pair = wide[[a, b]].dropna()
            diff = (pair[a] - pair[b]).to_numpy()
            if len(diff) < 2:
                continue
            low, high = bootstrap_ci(diff, np.mean)
            nonzero = diff[diff != 0]
            p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 else 1.0
            sd = diff.std(ddof=1)
            out.append(
                {
                    "labeler_a": a,
                    "labeler_b": b,
                    "n": len(diff),
                    "mean_a": float(pair[a].mean()),
                    "mean_b": float(pair[b].mean()),
                    "difference": float(diff.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "d_z": float(diff.mean() / sd) if sd > 0 else np.nan,
                    "p_wilcoxon": p,
                }
            )
    return pd.DataFrame(out)


def human_vs_automatic(df: pd.DataFrame, n_options: int | None = None) -> pd.DataFrame:
    """Share of labelled features whose most chosen label is the automatic label, and Cohen's kappa.

    An item is a (feature, labeler) pair: the automatic label a labeler gave a feature,
    and the label participants chose most often on its trials. ``n`` counts those items,
    ``n_features`` the distinct features. If participants chose at random, the most
    chosen label would be the automatic one with probability 1 / the options shown (``chance``,
    :func:`choice_rows`; their mean where trials differ):
    the Wilson CI and exact one-sided binomial test are over the items, which are
    independent where each feature has one labeler's label (else approximately).
    """
    rows = choice_rows(df, n_options).dropna(subset=["answer_text", "correct_text"])
    chance = float(rows["chance"].mean()) if len(rows) else (1 / n_options if n_options else np.nan)
    if rows.empty:
        return pd.DataFrame(
            [{"n": 0, "n_features": 0, "agreement": np.nan, "chance": chance, "kappa": np.nan}]
        )
    per = rows.groupby(["layer", "feature_id", "labeler"]).agg(
        human=("answer_text", lambda s: s.mode().sort_values().iloc[0]), automatic=("correct_text", "first")
    )
    agree = (per["human"] == per["automatic"]).to_numpy()
    k, n = int(agree.sum()), len(per)
    low, high = wilson_ci(k, n)
    return pd.DataFrame(
        [
            {
                "n": n,
                "n_features": per.reset_index()[["layer", "feature_id"]].drop_duplicates().shape[0],
                "agreement": k / n,
                "ci_low": low,
                "ci_high": high,
                "chance": chance,
                "test": "exact binomial",
                "p": float(stats.binom.sf(k - 1, n, chance)),
                "kappa": cohen_kappa(per["human"], per["automatic"]),
            }
        ]
    )


def inter_rater(df: pd.DataFrame, n_boot: int = 200) -> pd.DataFrame:
    """Agreement between participants, each with a CI from a jackknife over items (agreements_with_ci).

    Choices: Fleiss' kappa and Krippendorff's alpha (nominal), items = (feature,
    labeler target): the trials of one feature under two labelers have different right
    answers, so pooling them per feature read a difference of targets as disagreement.
    Ratings: Krippendorff's alpha (ordinal, interval) and ICC(1,1), items =
    (feature, labeler): the label being rated. ``n`` counts items, ``n_raters`` the
    participants, ``n_responses`` the judgements.
    """
    out = []
    choices = _answered_choices(df).dropna(subset=["answer_text"])
    if not choices.empty:
        item = (
            choices["layer"].astype(str)
            + ":"
            + choices["feature_id"].astype(str)
            + ":"
            + choices["labeler"].astype(str)
            + ":"
            + choices["correct_text"].astype(str)
        )
        choices = choices.assign(item=item)
        j = Judgements.from_frame(choices, "item", "participant", "answer_text", categorical=True)
        measures = {"fleiss": "Fleiss kappa", "nominal": "Krippendorff alpha (nominal)"}
        for stat, (est, low, high) in agreements_with_ci(j, list(measures), n_boot=n_boot).items():
            name = measures[stat]
            out.append(
                {
                    "measure": name,
                    "responses": "label choices",
                    "estimate": est,
                    "ci_low": low,
                    "ci_high": high,
                    "n": j.n_items,
                    "n_raters": j.n_raters,
                    "n_responses": len(choices),
                    "note": interval_note(j.n_items),
                }
            )
    ratings = df[(df["trial_type"] == "label_rating") & df["rating"].notna()]
    if not ratings.empty:
        item = (
            ratings["layer"].astype(str) + ":" + ratings["feature_id"].astype(str) + ":" + ratings["labeler"]
        )
        j = Judgements.from_frame(
            ratings.assign(item=item), "item", "participant", "rating", categorical=False
        )
        measures = {
            "ordinal": "Krippendorff alpha (ordinal)",
            "interval": "Krippendorff alpha (interval)",
            "icc1": "ICC(1,1)",
        }
        for stat, (est, low, high) in agreements_with_ci(j, list(measures), n_boot=n_boot).items():
            name = measures[stat]
            out.append(
                {
                    "measure": name,
                    "responses": "label ratings",
                    "estimate": est,
                    "ci_low": low,
                    "ci_high": high,
                    "n": j.n_items,
                    "n_raters": j.n_raters,
                    "n_responses": len(ratings),
                    "note": "exact F interval" if stat == "icc1" else interval_note(j.n_items),
                }
            )
    return pd.DataFrame(out)


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """Label validation's tables in the report (docs/analysis.md)."""
    kept, n_options = inputs.kept, inputs.n_options
    # Chance is each trial's own (the export's n_options); n_options stands in only for an
    # export without that column (choice_rows says so rather than guess).
    shown = options_shown(kept, n_options)
    chance = f"1/{shown}" if shown else "1/options"
    choice, rating = inputs.has("label_choice"), inputs.has("label_rating")
    for by, name, what in (
        (["layer"], "label_accuracy_by_layer", "by layer"),
        (["labeler"], "label_accuracy_by_labeler", "by labeler"),
        (["layer", "feature_id"], "label_accuracy_by_feature", "per feature"),
    ):
        if choice:
            r.add(
                name,
                choice_accuracy(kept, by, n_options),
                f"Label choice: accuracy {what} vs chance {chance} ({CLUSTERED_TEST}).",
            )
    if rating:
        _rating_tables(r, inputs)
    else:
        r.skip("label_ratings", "labeler_comparison")
    if not choice:
        r.skip("label_accuracy_by_layer", "label_accuracy_by_labeler", "label_accuracy_by_feature")
        r.skip("human_vs_automatic")
    else:
        r.add(
            "human_vs_automatic",
            human_vs_automatic(kept, n_options=n_options),
            "Labelled features (items: feature x labeler; n = items, n_features = features) whose most "
            f"chosen label is the automatic label, vs chance {chance}: Wilson 95% CI, exact one-sided "
            "binomial test; Cohen's kappa.",
        )
    if not (choice or rating):
        r.skip("inter_rater")
    else:
        r.add(
            "inter_rater",
            inter_rater(kept, n_boot=inputs.n_boot),
            "Agreement between participants: Fleiss' kappa, Krippendorff's alpha, ICC(1,1) (95% CIs: "
            "jackknife over items with t quantiles; ICC: F interval). Items are (feature, labeler target) "
            "for choices, (feature, labeler) for ratings; n = items, n_raters = participants, "
            "n_responses = judgements; the note says where items are too few for the interval; no test.",
        )


def _rating_tables(r: Report, inputs: ReportInputs) -> None:
    kept = inputs.kept
    r.add(
        "label_ratings",
        rating_summary(kept, ["labeler"], midpoint=inputs.rating_midpoint),
        "Label ratings by labeler vs the scale midpoint: one-sample t test of the participants' mean "
        "ratings (participants as the units: n_participants; n = ratings), its t 95% CI; Holm and BH.",
    )
    r.add(
        "labeler_comparison",
        labeler_comparison(kept),
        "The same features rated under each labeler's label: paired difference (bootstrap 95% CI), d_z, "
        "Wilcoxon signed-rank test; n = features rated under both labels.",
    )


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """Accuracy by layer, and the forest plot of accuracy per feature (label choice only)."""
    if "label_accuracy_by_feature" not in r.tables:
        return
    share_figure(r, "accuracy_by_layer", "label_accuracy_by_layer", "layer", "layer", "label accuracy")

    forest = r.tables["label_accuracy_by_feature"]
    fig, ax = subplots(figsize=(4, max(2.0, 0.25 * len(forest) + 1)))
    if not forest.empty:
        labels = forest["layer"].astype(str) + ":" + forest["feature_id"].astype(str)
        est = forest["estimate"].to_numpy(dtype=float)
        ax.errorbar(est, labels, xerr=interval(est, forest), fmt="o", capsize=3)
        ax.axvline(float(forest["chance"].iloc[0]), ls="--", color="grey")
        ax.set_xlim(0, 1)
    ax.set_xlabel("label accuracy (95% CI)")
    keep(r, "forest_features", fig)
