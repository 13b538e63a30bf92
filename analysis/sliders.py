"""Trials answered with sliders: MUSHRA (ITU-R BS.1534-3) and single-clip slider ratings.

A ``mushra`` trial puts the hidden reference, one or more anchors and the conditions under
test on one screen, each on its own 0-100 slider; a ``slider`` trial rates one clip. The
export keeps one row per trial with the sliders as JSON (docs/export.md); this module
spreads them into one row per rating, screens assessors as BS.1534 §4.1.2 does, and
estimates each condition's mean and its difference from the reference (docs/analysis.md).

Every interval is clustered by assessor: an assessor rates each condition once per item,
and those ratings share the assessor's leniency and view of the condition. BS.1534's
``mean +- t * sd / sqrt(N)`` over all N ratings treats them as independent: it covered the
true means of the conditions in 68-72 % of 200 simulated studies of 20 assessors x 8 items,
the assessor-clustered interval in 93-96 % (docs/analysis.md, tests/analysis/test_sliders.py).
"""

from __future__ import annotations

import json
import warnings
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.exclusions import PostScreening
from analysis.report_data import Report, ReportInputs
from analysis.report_figures import keep, scores
from analysis.stats import adjust_pvalues, clustered_mean
from artifact_schemas import ArtifactError


class SliderTrial(StrEnum):
    """The trial types answered with sliders (the export's ``trial_type``)."""

    MUSHRA = "mushra"
    SLIDER = "slider"


class Role(StrEnum):
    """What a rated clip is: the hidden reference, an anchor, or a condition under test
    (artifact_schemas.study.StimulusRole, in its order: an enum built from the Literal would
    be invisible to mypy, so a test holds the two equal)."""

    REFERENCE = "reference"
    ANCHOR = "anchor"
    CONDITION = "condition"


RATING_COLUMNS = [
    "participant",
    "session_id",
    "trial_id",
    "trial_type",
    "item",
    "screen_position",
    "clip",
    "role",
    "condition",
    "value",
]


# The slider scale of MUSHRA and slider trials (stimuli_builder makes every one 0-100).
SCALE = (0.0, 100.0)


def slider_ratings(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per rated clip of the ``mushra`` and ``slider`` trials: participant,
    session_id, trial_id, trial_type, item, screen_position (0-based), clip, role,
    condition, value. Empty (same columns) for an export without such trials, or
    without the ``sliders`` column (exports from before them).

    Raises :class:`~artifact_schemas.ArtifactError` naming the session and trial of a
    ``sliders`` value that is not a list of ``{clip, role, condition, value}`` objects.

    >>> export = pd.DataFrame({"participant": ["p"], "session_id": ["s"], "trial_id": ["t"],
    ...     "trial_type": ["mushra"], "item": ["song"], "sliders": [json.dumps([
    ...         {"clip": "a", "role": "reference", "condition": "reference", "value": 100},
    ...         {"clip": "b", "role": "anchor", "condition": "lp3500", "value": 20}])]})
    >>> slider_ratings(export)[["screen_position", "role", "condition", "value"]].to_numpy().tolist()
    [[0, 'reference', 'reference', 100.0], [1, 'anchor', 'lp3500', 20.0]]
    """
    if "sliders" not in responses:
        return pd.DataFrame(columns=RATING_COLUMNS)
    kinds = [t.value for t in SliderTrial]
    trials = responses[responses["trial_type"].isin(kinds) & responses["sliders"].notna()]
    items = trials["item"] if "item" in trials else pd.Series(None, index=trials.index, dtype=object)
    rows: list[tuple[Any, ...]] = []
    for participant, session, trial, kind, item, text in zip(
        trials["participant"],
        trials["session_id"],
        trials["trial_id"],
        trials["trial_type"],
        items,
        trials["sliders"],
        strict=True,
    ):
        for position, s in enumerate(_parse(text, session, trial)):
            value = float(s["value"])
            rows.append(
                (
                    participant,
                    session,
                    trial,
                    kind,
                    item,
                    position,
                    s["clip"],
                    s["role"],
                    s["condition"],
                    value,
                )
            )
    return pd.DataFrame(rows, columns=RATING_COLUMNS)


def _parse(text: str, session: Any, trial: Any) -> list[dict[str, Any]]:
    expected = (
        'a JSON list of {"clip", "role", "condition", "value"} objects, role one of '
        f"{', '.join(Role)} and value a number (docs/export.md)"
    )
    where = f"sliders (session {session}, trial {trial})"
    try:
        sliders = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ArtifactError("responses export", where, expected, text) from exc
    keys = {"clip", "role", "condition", "value"}
    if not isinstance(sliders, list) or not all(
        isinstance(s, dict)
        and keys <= s.keys()
        and s["role"] in set(Role)
        and isinstance(s["value"], int | float)
        and not isinstance(s["value"], bool)
        and np.isfinite(s["value"])
        for s in sliders
    ):
        raise ArtifactError("responses export", where, expected, text)
    return sliders


def post_screening(ratings: pd.DataFrame, rules: PostScreening = PostScreening()) -> pd.DataFrame:
    """Per assessor of the MUSHRA trials (``ratings`` from :func:`slider_ratings`): ``n``
    trials with a hidden reference, in how many it was rated below ``rules.reference_below``
    and their share; the same for anchors above ``rules.anchor_above``; ``excluded`` and
    the reason (see :class:`PostScreening`). Counts only, no test.
    """
    mushra = ratings[ratings["trial_type"] == SliderTrial.MUSHRA]
    trial = ["participant", "session_id", "trial_id"]
    reference = mushra[mushra["role"] == Role.REFERENCE]
    missed = (reference["value"] < rules.reference_below).groupby([reference[c] for c in trial]).any()
    per_reference = missed.groupby(level="participant").agg(n="size", reference_below="sum")
    anchors = mushra[mushra["role"] == Role.ANCHOR]
    above = np.inf if rules.anchor_above is None else rules.anchor_above
    high = (anchors["value"] > above).groupby([anchors[c] for c in trial]).any()
    per_anchor = high.groupby(level="participant").agg(anchor_trials="size", anchor_above="sum")
    table = pd.DataFrame(index=pd.Index(sorted(mushra["participant"].unique()), name="participant"))
    table = table.join(per_reference).join(per_anchor).fillna(0).astype(int).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["reference_below_share"] = table["reference_below"] / table["n"].replace(0, np.nan)
        table["anchor_above_share"] = table["anchor_above"] / table["anchor_trials"].replace(0, np.nan)
    reference_out = table["reference_below_share"].gt(rules.max_share)
    anchor_out = table["anchor_above_share"].gt(rules.max_share) & (rules.anchor_above is not None)
    table["excluded"] = reference_out | anchor_out
    reference_says = [
        f"hidden reference < {rules.reference_below:g} in {r.reference_below} of {r.n} trials" if out else ""
        for r, out in zip(table.itertuples(), reference_out, strict=True)
    ]
    anchor_says = [
        f"anchor > {rules.anchor_above:g} in {r.anchor_above} of {r.anchor_trials} trials" if out else ""
        for r, out in zip(table.itertuples(), anchor_out, strict=True)
    ]
    table["reason"] = [
        "; ".join(filter(None, pair)) for pair in zip(reference_says, anchor_says, strict=True)
    ]
    return table[
        [
            "participant",
            "n",
            "reference_below",
            "reference_below_share",
            "anchor_trials",
            "anchor_above",
            "anchor_above_share",
            "excluded",
            "reason",
        ]
    ]


def _role_order(table: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows as a MUSHRA plot has them: the hidden reference, the anchors, then the conditions."""
    rank = table["role"].map({r: i for i, r in enumerate(Role)})
    order = [*by, "_rank", "condition"]
    return table.assign(_rank=rank).sort_values(order, kind="stable").drop(columns="_rank")


def condition_means(ratings: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per condition (and ``by``, e.g. ``("item",)``): the mean rating with its 95% CI
    clustered by assessor: each assessor's mean rating of the condition is one
    observation, and the interval is their t interval (df = assessors - 1;
    :func:`analysis.stats.clustered_mean`). ``n`` counts ratings, ``n_participants``
    assessors. Descriptive: no test.

    The interval is cut to the scale (``SCALE``): with few assessors a t interval of a mean
    near 100 reached past it (issue 36), a value no rating can have. Cutting only drops
    impossible values, so the interval covers at least as often.
    """
    table = clustered_mean(ratings, "value", [*by, "condition", "role"], "participant")
    table["ci_low"] = table["ci_low"].clip(lower=SCALE[0])
    table["ci_high"] = table["ci_high"].clip(upper=SCALE[1])
    return _role_order(table, by).reset_index(drop=True)


MODEL_COLUMNS = [
    "condition",
    "role",
    "versus",
    "difference",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "t",
    "p",
    "p_holm",
    "n",
    "n_participants",
    "formula",
    "note",
]


def reference_level(ratings: pd.DataFrame) -> str:
    """The condition the model measures the others from: the hidden reference (the
    condition of the clips whose role is ``reference``, whatever the CSV named it) where
    there is one, else the first condition in sorted order."""
    references = sorted(ratings.loc[ratings["role"] == Role.REFERENCE, "condition"].astype(str).unique())
    if references:
        return references[0]
    return str(sorted(ratings["condition"].astype(str).unique())[0])


def condition_differences(ratings: pd.DataFrame, versus: str | None = None) -> pd.DataFrame:
    """Each condition's difference in mean rating from ``versus`` (default
    :func:`reference_level`), from a linear mixed model (statsmodels ``MixedLM``, REML):

        value ~ condition + item + (1 | participant) + (1 | participant:condition)

    The assessor x condition intercept is the repeated-measures ANOVA's error term: an
    assessor rates a condition once per item, and a random intercept per assessor alone
    treated those ratings as independent evidence of the condition's effect (its 95%
    intervals covered 72-75 % of the differences in simulation, with it 93-97 %). One
    assessor x condition variance serves every condition (the sphericity of a
    repeated-measures ANOVA); the per-condition means do not assume it. Items are fixed effects: every
    MUSHRA screen has every condition, so an item's effect cancels from the differences
    either way (a crossed item intercept gave the same estimates and SEs to 1e-4, 20 times
    slower in statsmodels); the item term is left out where it is aliased with condition.
    Wald t intervals and t tests with assessors - 1 df (the paired t test's); Holm across
    the conditions. ``n`` counts ratings, ``n_participants`` assessors.
    """
    versus = versus if versus is not None else reference_level(ratings)
    others = sorted(c for c in ratings["condition"].astype(str).unique() if c != versus)
    rows = ratings.assign(
        condition=pd.Categorical(ratings["condition"].astype(str), categories=[versus, *others])
    )
    formula, notes = _formula(rows)
    n_participants = int(rows["participant"].nunique())
    base: dict[str, Any] = {
        "versus": versus,
        "n": len(rows),
        "n_participants": n_participants,
        "formula": formula,
    }
    reason = _why_not(rows, versus, others, n_participants)
    fit = None
    if reason is None:
        try:
            fit, fit_notes = _fit(rows, formula)
            notes += fit_notes
        except (ValueError, np.linalg.LinAlgError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
    if fit is None:
        row = dict.fromkeys(MODEL_COLUMNS, np.nan) | base | {"condition": "(not fitted)"}
        return pd.DataFrame([row | {"role": "", "note": f"not fitted: {reason}"}], columns=MODEL_COLUMNS)
    roles = rows.groupby("condition", observed=True)["role"].agg(lambda r: r.mode().iloc[0])
    df = n_participants - 1
    table = pd.DataFrame({"condition": others, "role": [roles[c] for c in others]})
    terms = [f"C(condition)[T.{c}]" for c in others]
    table["difference"] = fit.fe_params[terms].to_numpy()
    table["se"] = fit.bse_fe[terms].to_numpy()
    half = sps.t.ppf(0.975, df) * table["se"]
    table["ci_low"], table["ci_high"] = table["difference"] - half, table["difference"] + half
    table["df"] = df
    table["t"] = table["difference"] / table["se"]
    table["p"] = 2 * sps.t.sf(table["t"].abs(), df)
    table["p_holm"] = adjust_pvalues(table["p"], "holm")
    table = table.assign(**base, note="; ".join(notes))
    return _role_order(table)[MODEL_COLUMNS].reset_index(drop=True)


def _formula(rows: pd.DataFrame) -> tuple[str, list[str]]:
    formula = "value ~ C(condition)"
    items = rows["item"].dropna()
    if len(items) < len(rows) or items.nunique() < 2:
        return formula, ["no item term: " + ("one item" if len(items) == len(rows) else "item not recorded")]
    # Equal rows add nothing to a design's rank: its distinct rows have the same rank.
    distinct = rows[["condition", "item"]].drop_duplicates()
    matrix = patsy.dmatrix("C(condition) + C(item)", distinct).view(np.ndarray)
    if np.linalg.matrix_rank(matrix) < matrix.shape[1]:
        return formula, ["item dropped: aliased with condition (each item heard under one condition)"]
    return formula + " + C(item)", []


def _why_not(rows: pd.DataFrame, versus: str, others: list[str], n_participants: int) -> str | None:
    if not others:
        return f"one condition only ({versus}): nothing to compare"
    if n_participants < 2:
        return "one assessor only"
    if rows["value"].nunique() < 2:
        return f"every rating is {rows['value'].iloc[0]:g}: nothing to model"
    return None


def _fit(rows: pd.DataFrame, formula: str) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = smf.mixedlm(
            formula,
            rows,
            groups="participant",
            re_formula="1",
            vc_formula={"condition": "0 + C(condition)"},
        ).fit(reml=True)
    # MixedLM tries several optimizers and warns for each one that fails; only the outcome
    # matters: did the last converge, and is a variance on its boundary (zero)?
    notes = [] if fit.converged else ["MixedLM did not converge"]
    notes += sorted({f"MixedLM: {w.message}" for w in caught if "boundary" in str(w.message)})
    return fit, notes


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


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """The tables of the MUSHRA and slider trials (docs/analysis.md); none without them.
    MUSHRA assessors are screened by ``inputs.post_screening`` (ITU-R BS.1534-3 §4.1.2)."""
    add, ratings, rules = r.add, slider_ratings(inputs.kept), inputs.post_screening
    mushra = ratings[ratings["trial_type"] == SliderTrial.MUSHRA]
    if len(mushra):
        screened = post_screening(mushra, rules)
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
                condition_means(kept),
                f"MUSHRA (ITU-R BS.1534-3) score per condition, 0-100, after post-screening: {means}.",
            )
            if kept["item"].nunique() > 1:
                add(
                    "mushra_items",
                    condition_means(kept, ("item",)),
                    f"MUSHRA score per item and condition, after post-screening: {means}.",
                )
            model = DIFFERENCE_MODEL.format(alone="72-75%", both="93-97%")
            add(
                "mushra_model",
                condition_differences(kept),
                "MUSHRA: each condition's difference from the hidden reference, after post-screening: "
                f"{model}.",
            )
    single = ratings[ratings["trial_type"] == SliderTrial.SLIDER]
    if len(single):
        means = CLUSTERED_MEAN.format(naive="70-78%", clustered="94-96%")
        add("slider_conditions", condition_means(single), f"Slider ratings per condition: {means}.")
        if single["condition"].nunique() > 1:
            model = DIFFERENCE_MODEL.format(alone="72-79%", both="94-97%")
            add(
                "slider_model",
                condition_differences(single),
                "Slider ratings: each condition's difference from the one in versus ('reference' where "
                f"there is one, else the first by name): {model}.",
            )


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """Mean rating per condition with its 95% CI: the MUSHRA scores and the slider ratings."""
    for source, name, label in (
        ("mushra_conditions", "mushra_scores", "MUSHRA score (95% CI)"),
        ("slider_conditions", "slider_scores", "rating (95% CI)"),
    ):
        if source in r.tables:
            keep(r, name, scores(r.tables[source], label))
