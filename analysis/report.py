"""The study report: every table as CSV, Markdown and LaTeX; figures as PNG and SVG;
one self-contained ``report.html``; and ``report.json`` with every number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analysis import abx, clap_human, label_validation, models, sliders, steering
from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.report_data import Report
from analysis.report_figures import _figures
from analysis.report_render import write_report
from artifact_schemas.version import package_version


def build_report(
    responses: pd.DataFrame,
    *,
    title: str = "Study report",
    n_options: int | None = None,
    rules: ExclusionRules = ExclusionRules(),
    bayes: bool = True,
    n_boot: int = 200,
    stars_on_simulated: bool = False,
    clap_line: bool = False,
    rating_midpoint: float = 3.0,
    post_screening: sliders.PostScreening = sliders.PostScreening(),
) -> Report:
    """Compute every table of the report from an export (see docs/analysis.md).

    An export of simulated participants only (``study-app simulate``'s bots, who read
    the answer key) is analysed and said to be so; its tables carry no significance
    stars unless ``stars_on_simulated``. The CLAP-vs-human figure draws a fitted line only
    where the correlation is significant (permutation p < .05), or with ``clap_line``.
    Choices are tested against each trial's chance, 1 / its options (the export's
    ``n_options``; ``n_options`` here only for an export without that column).
    Ratings are tested against ``rating_midpoint`` (3 on a 1-5 scale). MUSHRA and slider
    trials, where the export has any, get their own tables (:func:`_slider_tables`); MUSHRA
    assessors are screened by ``post_screening`` (ITU-R BS.1534-3 §4.1.2).
    """
    kept, exclusions = apply_exclusions(responses, rules)
    r = Report(title)

    def add(name: str, table: pd.DataFrame, caption: str) -> None:
        r.tables[name] = table
        r.captions[name] = caption

    add(
        "exclusions",
        exclusions,
        "Participants and responses removed by each exclusion rule, in order (counts; no test).",
    )
    clustered = (
        "exact one-sided binomial test and Wilson 95% CI where each participant answered once in a row, "
        "else participant-clustered: cluster-robust SE, one-sided t test with participants - 1 df "
        "(column test); Holm and BH across rows; n = responses, n_participants = participants"
    )
    # Chance is each trial's own (the export's n_options); n_options stands in only for an
    # export without that column (label_validation.choice_rows says so rather than guess).
    shown = label_validation.options_shown(kept, n_options)
    chance = f"1/{shown}" if shown else "1/options"
    add(
        "label_accuracy_by_layer",
        label_validation.choice_accuracy(kept, ["layer"], n_options),
        f"Label choice: accuracy by layer vs chance {chance} ({clustered}).",
    )
    add(
        "label_accuracy_by_labeler",
        label_validation.choice_accuracy(kept, ["labeler"], n_options),
        f"Label choice: accuracy by labeler vs chance {chance} ({clustered}).",
    )
    add(
        "label_accuracy_by_feature",
        label_validation.choice_accuracy(kept, ["layer", "feature_id"], n_options),
        f"Label choice: accuracy per feature vs chance {chance} ({clustered}).",
    )
    add(
        "label_ratings",
        label_validation.rating_summary(kept, ["labeler"], midpoint=rating_midpoint),
        "Label ratings by labeler vs the scale midpoint: one-sample t test of the participants' mean "
        "ratings (participants as the units: n_participants; n = ratings), its t 95% CI; Holm and BH.",
    )
    add(
        "labeler_comparison",
        label_validation.labeler_comparison(kept),
        "The same features rated under each labeler's label: paired difference (bootstrap 95% CI), d_z, "
        "Wilcoxon signed-rank test; n = features rated under both labels.",
    )
    add(
        "human_vs_automatic",
        label_validation.human_vs_automatic(kept, n_options=n_options),
        "Labelled features (items: feature x labeler; n = items, n_features = features) whose most chosen "
        f"label is the automatic label, vs chance {chance}: Wilson 95% CI, exact one-sided binomial "
        "test; Cohen's kappa.",
    )
    add(
        "inter_rater",
        label_validation.inter_rater(kept, n_boot=n_boot),
        "Agreement between participants: Fleiss' kappa, Krippendorff's alpha, ICC(1,1) (95% CIs: jackknife "
        "over items with t quantiles; ICC: F interval). Items are (feature, labeler target) for choices, "
        "(feature, labeler) for ratings; n = items, n_raters = participants, n_responses = judgements; "
        "the note says where items are too few for the interval; no test.",
    )
    add(
        "steering_by_feature",
        steering.detection(kept, ["layer", "feature_id"]),
        "Steering detection: share choosing the steered clip per feature vs chance 1/candidates "
        f"({clustered}).",
    )
    add(
        "steering_by_strength",
        steering.detection(kept, ["strength"]),
        f"Steering detection by strength vs chance 1/candidates ({clustered}).",
    )
    add(
        "steering_choices",
        steering.choice_counts(kept),
        "Steering: how often each candidate was chosen; chi-square test against equal shares "
        "(descriptive: responses pooled over participants; n = responses).",
    )
    # One list of designs for every engine, each with the chance of the trials it models.
    designs = models.designs(kept, n_options=n_options)
    rating = models.rating_design(kept, midpoint=rating_midpoint)
    add(
        "correctness_gee",
        models.gee(designs),
        "One model per question, GEE clustered by participant: label validation "
        "(correct ~ labeler + layer) and steering detection (chose_steered ~ log strength + layer), "
        "with offset logit(chance): the intercept is the log-odds against chance and its Wald z test "
        "tests accuracy at chance; each row names its formula, rows and n (responses), and the note says "
        "what was left out and the chance level. Participants are its only clusters: its intervals are "
        "about these features, not features like them (for that, the mixed models).",
    )
    for d in [*designs, rating]:
        if d.reason is None:
            r.model_data[d.question] = (d.formula, d.family, d.data)
    if bayes:
        add(
            "correctness_ml_glmm",
            models.ml_glmm(designs),
            "The two models by maximum likelihood: binomial GLMMs with random intercepts for participant "
            "and feature and offset logit(chance), so that the intercept's test tests accuracy at chance "
            "(lme4 glmer, Laplace). Wald t intervals and t tests with between-within df (column df: "
            "features, or participants, minus the fixed effects at that level; empty = z) for terms "
            "constant within a feature or participant: with z, intervals of 12 features fell short in "
            "simulation. analysis.R refits them from model_data/. Without R the model column says so: "
            "the same model fitted in Python (Laplace, random-intercept sds by restricted likelihood).",
        )
        add(
            "ratings_lmm",
            models.ratings_lmm(rating),
            "Label ratings: rating - midpoint ~ labeler + layer, a linear mixed model with random "
            "intercepts for participant and feature (lme4 lmer, REML; Wald t intervals and t tests with "
            "between-within df, column df; empty = z). "
            "The intercept is the distance from the scale midpoint (its test: rating = midpoint); the "
            "other coefficients are differences in rating points. analysis.R refits it from model_data/.",
        )
        add(
            "correctness_bayes_glmm",
            models.bayes_mixed(designs),
            "The same two models as binomial GLMMs with random intercepts for participant and feature "
            "by variational Bayes, descriptive: posterior means only, no interval and no test (its "
            "posterior sds understate the uncertainty: its 95% intervals covered 29-86% in simulation); "
            "the intercept is against chance (logit(chance) subtracted, as an offset would).",
        )
    add(
        "clap_vs_human",
        clap_human.clap_vs_human(kept, n_perm=1000),
        "CLAP score vs human accuracy and rating per feature and labeler (n = rows, n_features = "
        "features): Spearman/Kendall, 95% CI from a bootstrap of features, two-sided permutation test "
        "permuting features (each feature's rows move together); Holm across the rows.",
    )
    add(
        "clap_calibration",
        clap_human.calibration(kept),
        "Human accuracy by CLAP-score bin (Wilson 95% CI; descriptive, no test; n = responses), and the "
        "coverage of each threshold.",
    )
    _slider_tables(add, sliders.slider_ratings(kept), post_screening)
    discrimination = abx.abx_table(kept)
    if len(discrimination):
        add(
            "abx",
            discrimination,
            "ABX: share of trials where X was named right, per condition told apart from its reference, "
            "vs chance 1/2: the mean of the participants' own shares with its t 95% CI over participants "
            "(df = participants - 1), one-sided t test of those shares, Holm across conditions; d' of the "
            "independent-observation model (Macmillan & Creelman), its interval mapped from the share's; "
            "n = trials, n_participants = participants.",
        )
    r.meta = {
        "title": title,
        "responses_in": len(responses),
        "responses_analysed": len(kept),
        "participants_analysed": int(kept["participant"].nunique()) if len(kept) else 0,
        "n_options": shown,
        "rating_midpoint": rating_midpoint,
        "rules": asdict(rules),
        **provenance(responses),
    }
    r.meta["stars"] = r.meta["data_source"] != "simulated" or stars_on_simulated
    _figures(r, kept, clap_line=clap_line)
    return r


# The coverages quoted are those of 200 simulated studies of 20 assessors x 8 items
# (docs/analysis.md; tests/analysis/test_sliders.py checks 60 of them).
CLUSTERED_MEAN = (
    "the mean of the assessors' mean ratings and its 95% CI clustered by assessor: the t interval of "
    "those means, df = assessors - 1 (the t interval over all ratings, as BS.1534 writes it, treats an "
    "assessor's ratings as independent: it covered the true mean in {naive} of simulated studies, this "
    "one in {clustered}); n = ratings, n_participants = assessors; descriptive, no test"
)
DIFFERENCE_MODEL = (
    "linear mixed model value ~ condition + item (fixed) with random intercepts for assessor and "
    "assessor x condition (statsmodels MixedLM, REML; with the assessor intercept alone the intervals "
    "covered {alone} in simulation, with both {both}); Wald 95% CI and two-sided t test with "
    "assessors - 1 df, Holm across conditions (p_holm); n = ratings, n_participants = assessors"
)


def _slider_tables(
    add: Callable[[str, pd.DataFrame, str], None], ratings: pd.DataFrame, rules: sliders.PostScreening
) -> None:
    """The tables of the MUSHRA and slider trials (docs/analysis.md); none without them."""
    mushra = ratings[ratings["trial_type"] == sliders.SliderTrial.MUSHRA]
    if len(mushra):
        screened = sliders.post_screening(mushra, rules)
        kept = mushra[~mushra["participant"].isin(screened.loc[screened["excluded"], "participant"])]
        share = f"{rules.max_share:.0%}"
        anchor = (
            ""
            if rules.anchor_above is None
            else f", or an anchor above {rules.anchor_above:g} in more than {share} of the trials with one"
        )
        n_kept = kept["participant"].nunique()
        add(
            "mushra_post_screening",
            screened,
            "MUSHRA post-screening (ITU-R BS.1534-3 §4.1.2): an assessor is left out of the MUSHRA tables "
            f"who rated the hidden reference below {rules.reference_below:g} in more than {share} of "
            f"their trials{anchor}; one row per assessor, n = their MUSHRA trials with a hidden "
            f"reference; {n_kept} of {len(screened)} assessors kept"
            + ("" if n_kept else ", so there are no MUSHRA means or model")
            + ". Counts, no test.",
        )
        if n_kept:
            means = CLUSTERED_MEAN.format(naive="68-72%", clustered="93-96%")
            add(
                "mushra_conditions",
                sliders.condition_means(kept),
                f"MUSHRA (ITU-R BS.1534-3) score per condition, 0-100, after post-screening: {means}.",
            )
            if kept["item"].nunique() > 1:
                add(
                    "mushra_items",
                    sliders.condition_means(kept, ("item",)),
                    f"MUSHRA score per item and condition, after post-screening: {means}.",
                )
            model = DIFFERENCE_MODEL.format(alone="72-75%", both="93-97%")
            add(
                "mushra_model",
                sliders.condition_differences(kept),
                "MUSHRA: each condition's difference from the hidden reference, after post-screening: "
                f"{model}.",
            )
    single = ratings[ratings["trial_type"] == sliders.SliderTrial.SLIDER]
    if len(single):
        means = CLUSTERED_MEAN.format(naive="70-78%", clustered="94-96%")
        add("slider_conditions", sliders.condition_means(single), f"Slider ratings per condition: {means}.")
        if single["condition"].nunique() > 1:
            model = DIFFERENCE_MODEL.format(alone="72-79%", both="94-97%")
            add(
                "slider_model",
                sliders.condition_differences(single),
                "Slider ratings: each condition's difference from the one in versus ('reference' where "
                f"there is one, else the first by name): {model}.",
            )


def data_source(responses: pd.DataFrame) -> str:
    """``simulated`` (every row a bot's), ``participant`` (none), ``mixed``, or
    ``not recorded`` (an export from before the data_source column)."""
    if "data_source" not in responses or responses["data_source"].isna().all():
        return "not recorded"
    simulated = responses["data_source"].eq("simulated")
    return "simulated" if simulated.all() else "mixed" if simulated.any() else "participant"


def provenance(responses: pd.DataFrame) -> dict[str, Any]:
    """Where the numbers come from: who answered, which package, which software, when."""

    def values(column: str) -> list[str]:
        if column not in responses:
            return []
        return sorted({str(v) for v in responses[column].dropna().unique()})

    exported = values("exported_at")
    source = data_source(responses)
    sessions = responses.drop_duplicates("session_id")
    return {
        "data_source": source,
        "simulated_sessions": int(sessions["data_source"].eq("simulated").sum())
        if "data_source" in sessions
        else None,
        "package_sha256": values("package_sha256"),
        "exported_by": values("software_version"),
        "exported_at": exported[-1] if exported else None,
        "analysed_by": package_version(),
        "analysed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


# Rendering lives in report_render (tables as CSV/Markdown/LaTeX, report.html), the
# figures in report_figures; write_report is re-exported for this module's callers.
__all__ = ["Report", "build_report", "write_report"]
