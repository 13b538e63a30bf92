"""Models of correctness, one per question, identified by construction.

Two questions, two models (issue 19.2). One model over label-choice and steering trials
was not identified on a real export: ``labeler`` was "none" for every steering row, so
``C(trial_type)[T.steering]`` and ``C(labeler)[T.none]`` were the same column (the GEE
table came out blank, the GLMM printed two equal coefficients), and the two trial types
have different chance levels under one intercept.

* label validation: ``correct ~ labeler + layer`` over label-choice trials (chance
  1/options);
* steering detection: ``chose_steered ~ log(strength) + layer`` over steering trials
  (chance 1/candidates);
* label ratings: ``rating ~ labeler + layer`` over label-rating trials, a linear mixed
  model (the 1-5 scale read as interval, as most rating studies report it; a
  cumulative-link mixed model would need R's ordinal package and is left to analysis.R's
  users).

Every binary model has the offset logit(chance) (issue 35.4): its intercept is the
log-odds against chance at the reference levels, so that its p tests "at chance" and not
"at 50 %" (the demo's steering intercept had p = 0.745 where the strength table, against
chance, had 0.008). The ratings' response is the rating minus the scale midpoint, so that
their intercept tests "rating = midpoint", not "rating = 0".

A term enters only if it varies and adds to the design's rank (terms are tried in order;
an aliased one is dropped and the table says so). Each is fitted by GEE clustered by
participant, and as a binomial GLMM with participant and feature random intercepts
(variational Bayes); the ratings by a linear mixed model with the same random intercepts
(lme4's lmer, or statsmodels' MixedLM without R). Every table row carries the question,
formula, rows used, n and a note; a model that cannot be fitted is one row saying why, never a blank table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.stats import coefficient_table

COLUMNS = [
    "model",
    "question",
    "term",
    "coef",
    "ci_low",
    "ci_high",
    "odds_ratio",
    "p",
    "n",
    "formula",
    "rows",
    "note",
]


@dataclass
class ModelDesign:
    """One question's rows and formula, with what was left out and why."""

    question: str
    rows: pd.DataFrame
    formula: str
    described: str  # which rows, in words
    chance: float | None
    notes: list[str] = field(default_factory=list)
    reason: str | None = None  # why nothing can be fitted
    family: str = "binomial"  # "gaussian" for ratings
    midpoint: float | None = None  # ratings: the scale midpoint subtracted from the response
    predictors: list[str] = field(default_factory=list)  # the columns of the formula's terms

    @property
    def response(self) -> str:
        return self.formula.split("~", 1)[0].strip()

    @property
    def offset(self) -> float | None:
        """logit(chance) of a binary design: its models' offset, so that the intercept
        is the log-odds *against chance* and its p tests "at chance" (not "at 50 %")."""
        if self.family != "binomial" or self.chance is None:
            return None
        return float(np.log(self.chance / (1 - self.chance)))

    @property
    def data(self) -> pd.DataFrame:
        """The columns a refit needs: response, predictors, the random-intercept groups and
        (binary designs) the offset."""
        rows = self.rows[[self.response, *self.predictors, "participant", "feature"]]
        return rows if self.offset is None else rows.assign(offset=self.offset)


def _identified_formula(
    rows: pd.DataFrame, response: str, terms: list[tuple[str, str]]
) -> tuple[str, list[str], list[str]]:
    """The formula of the terms that vary and keep the design at full rank, its columns, and notes."""
    kept: list[str] = []
    columns: list[str] = []
    notes: list[str] = []
    for term, column in terms:
        if rows[column].nunique() < 2:
            notes.append(f"{column}: one value only, not in the model")
            continue
        # Equal rows add nothing to a design's rank: its distinct rows have the same rank,
        # and patsy builds their matrix in milliseconds instead of a second per 100k rows.
        distinct = rows[[*columns, column]].drop_duplicates()
        matrix = patsy.dmatrix(" + ".join(["1", *kept, term]), distinct, return_type="dataframe")
        if np.linalg.matrix_rank(matrix.to_numpy()) < matrix.shape[1]:
            notes.append(f"{term} dropped: aliased with {' + '.join(kept) or 'the intercept'}")
            continue
        kept.append(term)
        columns.append(column)
    return f"{response} ~ " + (" + ".join(kept) if kept else "1"), columns, notes


def _common(rows: pd.DataFrame) -> pd.DataFrame:
    # The factors as pandas categoricals (levels sorted, as patsy sorts them): patsy codes
    # them at once, where object columns cost it an NA check per value (0.4 s per 100k).
    return rows.assign(
        layer=pd.Categorical(rows["layer"].astype(float)),
        labeler=pd.Categorical(rows["labeler"]),
        feature=rows["layer"].astype(str) + ":" + rows["feature_id"].astype(str),
    )


def _design(
    question: str,
    rows: pd.DataFrame,
    response: str,
    terms: list[tuple[str, str]],
    kind: str,
    chance: float | None,
    family: str = "binomial",
    notes: tuple[str, ...] = (),
) -> ModelDesign:
    """A question's design: the identified formula of ``terms`` over ``rows``, and why not."""
    formula, columns, dropped = _identified_formula(rows, response, terms)
    return ModelDesign(
        question,
        rows,
        formula,
        f"{len(rows)} {kind} responses",
        chance,
        [*dropped, *notes],
        _why_not(rows, response),
        family=family,
        predictors=columns,
    )


def designs(df: pd.DataFrame, n_options: int = 4) -> list[ModelDesign]:
    """The label-validation and steering-detection designs of an export."""
    from analysis.steering import _rows as steering_rows

    choice = df[(df["trial_type"] == "label_choice") & df["correct"].notna()]
    choice = _common(choice).assign(correct=lambda d: d["correct"].astype(float))
    terms = [("C(labeler)", "labeler"), ("C(layer)", "layer")]
    label = _design("label validation", choice, "correct", terms, "label-choice", 1 / n_options)
    steer = _common(steering_rows(df).dropna(subset=["strength"]))
    steer = steer[steer["strength"].astype(float) > 0].assign(
        chose_steered=lambda d: d["chose_steered"].astype(float),
        log_strength=lambda d: np.log(d["strength"].astype(float)),
    )
    chance = float(steer["chance"].iloc[0]) if len(steer) else None
    terms = [("log_strength", "log_strength"), ("C(layer)", "layer")]
    return [label, _design("steering detection", steer, "chose_steered", terms, "steering", chance)]


def rating_design(df: pd.DataFrame, midpoint: float = 3.0) -> ModelDesign:
    """The label-ratings design: ``rating_centred ~ labeler + layer`` over label-rating
    trials, the rating minus the scale's midpoint (3 on 1-5), so that the intercept tests
    "rating = midpoint" rather than "rating = 0", a value off the scale."""
    rows = df[(df["trial_type"] == "label_rating") & df["rating"].notna()]
    rows = _common(rows).assign(rating_centred=lambda d: d["rating"].astype(float) - midpoint)
    terms = [("C(labeler)", "labeler"), ("C(layer)", "layer")]
    design = _design(
        "label ratings",
        rows,
        "rating_centred",
        terms,
        "label-rating",
        None,
        family="gaussian",
        notes=("ratings as interval scale",),
    )
    design.midpoint = midpoint
    return design


def _why_not(rows: pd.DataFrame, response: str) -> str | None:
    if rows.empty:
        return "no responses of this kind"
    if rows[response].nunique() < 2:
        return f"every response has {response} = {rows[response].iloc[0]:g}: nothing to model"
    if rows["participant"].nunique() < 2:
        return "one participant only"
    return None


def _table(
    design: ModelDesign,
    model: str,
    fitted: pd.DataFrame | None,
    failure: str | None = None,
    fit_notes: Sequence[str] = (),
) -> pd.DataFrame:
    notes = [*design.notes, *fit_notes]
    if design.offset is not None:
        notes.append(
            f"chance {design.chance:.3g}, log-odds {design.offset:.2f}, is the offset: the intercept is "
            "the log-odds against chance at the reference levels (0 = at chance; its p tests that)"
        )
    if design.midpoint is not None:
        notes.append(
            f"{design.response} is the rating minus the scale midpoint {design.midpoint:g}: the intercept "
            "is the mean rating's distance from the midpoint at the reference levels (its p tests 0)"
        )
    reason = design.reason or failure
    if reason is not None or fitted is None:
        row: dict[str, object] = dict.fromkeys(COLUMNS, np.nan)
        row |= {
            "model": model,
            "question": design.question,
            "term": "(not fitted)",
            "n": len(design.rows),
            "formula": design.formula,
            "rows": design.described,
            "note": f"not fitted: {reason}",
        }
        return pd.DataFrame([row], columns=COLUMNS)
    return fitted.assign(
        model=model,
        question=design.question,
        formula=design.formula,
        rows=design.described,
        note="; ".join(notes),
    )[COLUMNS]


def gee(ds: Sequence[ModelDesign]) -> pd.DataFrame:
    """GEE logistic models (exchangeable, clustered by participant), one per design."""
    tables = []
    for d in ds:
        fitted, failure = None, None
        if d.reason is None:
            try:
                fit = smf.gee(
                    d.formula,
                    "participant",
                    d.rows,
                    family=sm.families.Binomial(),
                    cov_struct=sm.cov_struct.Exchangeable(),
                    offset=np.full(len(d.rows), d.offset or 0.0),
                ).fit()
                fitted = coefficient_table(fit)
                if not np.all(np.isfinite(fitted["coef"])):
                    fitted, failure = None, "the fit did not converge (non-finite coefficients)"
            except (ValueError, np.linalg.LinAlgError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
        tables.append(_table(d, "GEE", fitted, failure))
    return pd.concat(tables, ignore_index=True)


def bayes_mixed(ds: Sequence[ModelDesign]) -> pd.DataFrame:
    """Binomial GLMMs with participant and feature random intercepts (variational Bayes)."""
    return pd.concat([bayes_mixed_one(d) for d in ds], ignore_index=True)


def bayes_mixed_one(d: ModelDesign, max_iterations: int | None = None) -> pd.DataFrame:
    """One design's variational-Bayes GLMM table.

    An optimiser that stops short of its tolerance (statsmodels only warns, on stderr,
    where a reader of the table never sees it) is said in the table's note.
    ``max_iterations`` caps scipy's BFGS (its default: 200 x the number of parameters).
    """
    fitted, failure, notes = None, None, []
    if d.reason is None:
        try:
            model = BinomialBayesMixedGLM.from_formula(
                d.formula, {"participant": "0 + C(participant)", "feature": "0 + C(feature)"}, d.rows
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = model.fit_vb(minim_opts={"maxiter": max_iterations} if max_iterations else None)
            for w in caught:  # the others go on as they came
                if issubclass(w.category, ConvergenceWarning):
                    notes = [
                        "variational Bayes did not converge (its optimiser stopped before the "
                        "tolerance): the estimates are approximate"
                    ]
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            k = len(model.exog_names)
            mean, sd = fit.fe_mean[:k].copy(), fit.fe_sd[:k]
            if d.offset is not None and "Intercept" in model.exog_names:
                # statsmodels' mixed GLM takes no offset; a constant offset only moves the
                # intercept, so the offset model's intercept is this one minus logit(chance).
                mean[model.exog_names.index("Intercept")] -= d.offset
            fitted = pd.DataFrame(
                {
                    "term": model.exog_names,
                    "coef": mean,
                    "ci_low": mean - 1.96 * sd,
                    "ci_high": mean + 1.96 * sd,
                    "odds_ratio": np.exp(mean),
                    "p": np.nan,
                    "n": len(d.rows),
                }
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
    return _table(d, "Bayes GLMM", fitted, failure, notes)


def ml_glmm(ds: Sequence[ModelDesign]) -> pd.DataFrame:
    """Maximum-likelihood binomial GLMMs (lme4's glmer, Laplace), one per question.

    Random intercepts for participant and feature; Wald CIs and p values. Where R with
    lme4 is not installed, the variational-Bayes fit stands in, and the note says so.
    """
    from analysis.lme4 import fit_lme4

    tables = []
    for d in ds:
        fitted, failure, model = None, None, "ML GLMM (lme4)"
        fit_notes: list[str] = []
        if d.reason is None:
            try:
                coefs = fit_lme4(d.rows, d.formula, offset=d.offset)
            except RuntimeError as exc:
                coefs, failure = None, str(exc)
            if coefs is None and failure is None:
                model = "Bayes GLMM (fallback: no R/lme4)"
                tables.append(bayes_mixed_one(d).assign(model=model))
                continue
            if coefs is not None:
                fitted, fit_notes = _wald(coefs, d, "lme4", odds=True)
        tables.append(_table(d, model, fitted, failure, fit_notes))
    return pd.concat(tables, ignore_index=True)


def _wald(coefs: pd.DataFrame, d: ModelDesign, engine: str, odds: bool) -> tuple[pd.DataFrame, list[str]]:
    """The table rows of a fit's term/coef/se/p/message, with Wald 95% CIs, and its notes.

    The design is not touched: the same designs go to every engine, and one engine's
    message must not turn up in another's table.
    """
    notes = [f"{engine}: {coefs['message'].iloc[0]}"] if coefs["message"].iloc[0] else []
    frame = pd.DataFrame(
        {
            "term": coefs["term"],
            "coef": coefs["coef"],
            "ci_low": coefs["coef"] - 1.959964 * coefs["se"],
            "ci_high": coefs["coef"] + 1.959964 * coefs["se"],
            "odds_ratio": np.exp(coefs["coef"]) if odds else np.nan,
            "p": coefs["p"],
            "n": len(d.rows),
        }
    )
    return frame, notes


def ratings_lmm(d: ModelDesign) -> pd.DataFrame:
    """The label-ratings linear mixed model of ``d`` (``rating_design``), participant and
    feature random intercepts.

    lme4's ``lmer`` (REML; Wald CIs, normal-approximation p) where R is installed, else
    statsmodels' ``MixedLM`` with the two intercepts as crossed variance components (the
    same REML fit, slower: it builds one group of every row).
    """
    from analysis.lme4 import fit_lme4

    fitted, failure, model = None, None, "LMM (lme4 lmer)"
    notes: list[str] = []
    coefs: pd.DataFrame | None = None
    if d.reason is None:
        try:
            coefs = fit_lme4(d.rows, d.formula, family="gaussian")
            if coefs is None:
                model = "LMM (statsmodels MixedLM: no R/lme4)"
                coefs = _mixedlm(d)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
            failure = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        if coefs is not None:
            # odds=False: a difference in rating points, not odds
            fitted, notes = _wald(coefs, d, "lme4" if "lme4" in model else "MixedLM", odds=False)
    return _table(d, model, fitted, failure, notes)


def _mixedlm(d: ModelDesign) -> pd.DataFrame:
    import warnings

    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    rows = d.rows.assign(_all=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = smf.mixedlm(
            d.formula,
            rows,
            groups="_all",
            re_formula="0",
            vc_formula={"participant": "0 + C(participant)", "feature": "0 + C(feature)"},
            use_sparse=True,
        ).fit(reml=True)
    # MixedLM tries several optimizers and warns for each one that fails; only the
    # outcome matters: did the last converge, and is a variance on its boundary (zero)?
    messages = [] if fit.converged else ["did not converge"]
    messages += sorted({str(w.message) for w in caught if "boundary" in str(w.message)})
    names = list(fit.fe_params.index)
    return pd.DataFrame(
        {
            "term": names,
            "coef": fit.fe_params.to_numpy(),
            "se": fit.bse_fe.to_numpy(),
            "p": fit.pvalues[names].to_numpy(),
            "message": "; ".join(messages),
        }
    )
