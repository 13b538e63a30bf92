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
participant, and as a binomial GLMM with participant and feature random intercepts (lme4's
glmer; without R, :func:`laplace_glmm`, a Laplace fit in Python whose intervals cover); the
ratings by a linear mixed model with the same random intercepts (lme4's lmer, or statsmodels'
MixedLM without R). The variational-Bayes GLMM (:func:`bayes_mixed`) is descriptive only:
its posterior sds were 0.2-0.7 x the estimates' sampling sd (issue 35.2), so it prints
posterior means and no interval or p. Every table row carries the question,
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
from scipy import optimize, special
from scipy import stats as sps
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis import lme4
from analysis.label_validation import choice_rows
from analysis.lme4 import fit_lme4
from analysis.report_data import Report, ReportInputs
from analysis.stats import coefficient_table
from analysis.steering import steering_rows

COLUMNS = [
    "model",
    "question",
    "term",
    "coef",
    "ci_low",
    "ci_high",
    "odds_ratio",
    "p",
    "df",  # the t test's degrees of freedom; empty where the test is z (inf) or none
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


def designs(df: pd.DataFrame, n_options: int | None = None) -> list[ModelDesign]:
    """The label-validation and steering-detection designs of an export (``n_options``: for
    an export that does not say how many options its choice trials offered)."""
    choice = _common(choice_rows(df, n_options)).assign(correct=lambda d: d["correct"].astype(float))
    terms = [("C(labeler)", "labeler"), ("C(layer)", "layer")]
    # One offset per model: the trials' mean chance (a study's choice trials share n_foils).
    label_chance = float(choice["chance"].mean()) if len(choice) else None
    label = _design("label validation", choice, "correct", terms, "label-choice", label_chance)
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
    if "df" not in fitted:
        fitted = fitted.assign(df=np.nan)
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


BAYES_MODEL = "Bayes GLMM (variational; descriptive: no CI, no p)"
BAYES_NOTE = (
    "descriptive: variational-Bayes posterior means; no interval or test, because its posterior sds "
    "were 0.2-0.7 x the estimates' sampling sd in simulation (95% intervals covered 0.29-0.86); "
    "for intervals and p see the ML GLMM"
)


def bayes_mixed(ds: Sequence[ModelDesign]) -> pd.DataFrame:
    """Binomial GLMMs with participant and feature random intercepts (variational Bayes),
    descriptive: posterior means, no interval or p (see :data:`BAYES_NOTE`)."""
    return pd.concat([bayes_mixed_one(d) for d in ds], ignore_index=True)


def bayes_mixed_one(d: ModelDesign, max_iterations: int | None = None) -> pd.DataFrame:
    """One design's variational-Bayes GLMM table: posterior means only.

    Mean-field variational Bayes understates the posterior sd of the fixed effects (it
    ignores their correlation with the random effects): over 200 simulated studies of 40
    participants x 12 features its "mean +- 1.96 sd" covered the intercepts in 30 and 39 %
    and the layer effects in 29 and 36 % (issue 35.2), so no interval or p is printed.

    An optimiser that stops short of its tolerance (statsmodels only warns, on stderr,
    where a reader of the table never sees it) is said in the table's note.
    ``max_iterations`` caps scipy's BFGS (its default: 200 x the number of parameters).
    """
    fitted, failure, notes = None, None, [BAYES_NOTE]
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
                    notes.append(
                        "variational Bayes did not converge (its optimiser stopped before the "
                        "tolerance): the estimates are approximate"
                    )
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            k = len(model.exog_names)
            mean = fit.fe_mean[:k].copy()
            if d.offset is not None and "Intercept" in model.exog_names:
                # statsmodels' mixed GLM takes no offset; a constant offset only moves the
                # intercept, so the offset model's intercept is this one minus logit(chance).
                mean[model.exog_names.index("Intercept")] -= d.offset
            fitted = pd.DataFrame(
                {
                    "term": model.exog_names,
                    "coef": mean,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "odds_ratio": np.exp(mean),
                    "p": np.nan,
                    "n": len(d.rows),
                }
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
    return _table(d, BAYES_MODEL, fitted, failure, notes)


def ml_glmm(ds: Sequence[ModelDesign]) -> pd.DataFrame:
    """Maximum-likelihood binomial GLMMs (lme4's glmer, Laplace), one per question.

    Random intercepts for participant and feature; Wald t intervals and p with the
    between-within df (:func:`between_within_df`; lme4 gives no df, and its z intervals
    covered 0.88-0.95 of 100 simulated studies of 12 features, the t intervals 0.91-0.95).
    Where R with lme4 is not installed, :func:`laplace_glmm` stands in (the ``model`` column
    says so): the same model fitted in Python, with variances that allow for the fixed
    effects, so that its intervals cover at 12 features too.
    """

    engine = "ML GLMM (lme4)" if lme4.rscript() is not None else LAPLACE_MODEL
    tables = []
    for d in ds:
        fitted, failure, model = None, None, engine
        fit_notes: list[str] = []
        if d.reason is None:
            try:
                coefs = lme4.fit_lme4(d.rows, d.formula, offset=d.offset)
            except RuntimeError as exc:
                coefs, failure = None, str(exc)
            if coefs is None and failure is None:
                model = LAPLACE_MODEL
                try:
                    coefs = laplace_glmm(d)
                except (ValueError, np.linalg.LinAlgError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                if coefs is not None:
                    fitted, fit_notes = _wald(coefs, d, "Laplace", odds=True)
                    fit_notes.append(LAPLACE_NOTE)
            elif coefs is not None:
                fitted, fit_notes = _wald(coefs, d, "lme4", odds=True)
        tables.append(_table(d, model, fitted, failure, fit_notes))
    return pd.concat(tables, ignore_index=True)


def _wald(coefs: pd.DataFrame, d: ModelDesign, engine: str, odds: bool) -> tuple[pd.DataFrame, list[str]]:
    """The table rows of a fit's term/coef/se/df/p/message, with Wald 95% CIs (t quantiles
    with df; inf gives z), and its notes.

    The design is not touched: the same designs go to every engine, and one engine's
    message must not turn up in another's table.
    """
    notes = [f"{engine}: {coefs['message'].iloc[0]}"] if coefs["message"].iloc[0] else []
    # t quantiles with each term's degrees of freedom (lme4's coef_table, laplace_glmm and
    # _mixedlm all give them; inf is the normal z)
    quantile = sps.t.ppf(0.975, coefs["df"])
    frame = pd.DataFrame(
        {
            "term": coefs["term"],
            "coef": coefs["coef"],
            "ci_low": coefs["coef"] - quantile * coefs["se"],
            "ci_high": coefs["coef"] + quantile * coefs["se"],
            "odds_ratio": np.exp(coefs["coef"]) if odds else np.nan,
            "p": coefs["p"],
            "df": coefs["df"],
            "n": len(d.rows),
        }
    )
    return frame, notes


LAPLACE_MODEL = "ML GLMM (Laplace in Python, REML-type; fallback: no R/lme4)"
LAPLACE_NOTE = (
    "fallback fit without R (laplace_glmm): random-intercept sds by a restricted (REML-type) Laplace "
    "likelihood, Wald t intervals and p with between-within df (features or participants minus their "
    "level's fixed effects) for terms constant within a group; 95% intervals covered 0.925-0.965 over "
    "200 simulated studies of 40 participants x 12 features"
)
_SD_BOUND = 10.0  # random-intercept sds on the log-odds scale are searched in [0, 10]


def laplace_glmm(d: ModelDesign) -> pd.DataFrame:
    """The binomial GLMM of ``d`` with crossed participant and feature random intercepts and
    the offset logit(chance), fitted in Python where R with lme4 is missing (issue 35.2).

    By hand because no maintained Python library fits it by maximum likelihood:
    statsmodels' ``BinomialBayesMixedGLM`` is variational Bayes or a posterior mode with
    priors, pymer4 needs R, and the younger pure-Python GLMM packages are not yet
    established (nor installed). The fit is lme4's Laplace approximation (spherical random
    effects u, penalised Newton for the mode; Bates et al. 2015), with two small-sample
    changes, because ML Wald z intervals do not cover when the feature-level terms rest on 12
    features (lme4's 95 % intervals covered 0.80-0.93 over 40 simulated studies; a
    maximum-likelihood variant of this code 0.78-0.96 over 200):

    * the sds are chosen by the restricted likelihood, the Laplace approximation with the
      fixed effects integrated out too (as REML does for a linear mixed model), which
      removes ML's downward bias of the feature sd (the fixed effects are then the joint
      mode, lme4's ``nAGQ = 0``); their covariance is the inverse of the joint Hessian's
      fixed-effect block;
    * a term constant within a group (feature-level: intercept, layer, strength) gets t
      quantiles with the between-within degrees of freedom, the group's levels minus the
      fixed effects at that level (SAS's DDFM=BETWITHIN); other terms z.

    Over 200 simulated studies (40 participants x 12 features, feature sd 0.8, participant
    sd 0.5) its 95 % intervals covered 0.925-0.965 for every term of both binary models.
    Returns term, coef, se, df, p, message (as :func:`analysis.lme4.fit_lme4`, plus df).
    """
    y, x = patsy.dmatrices(d.formula, d.rows, return_type="dataframe")
    groups = [pd.factorize(d.rows[g])[0] for g in ("participant", "feature")]
    names = ["participant", "feature"]
    if len(np.unique(groups[1])) > len(np.unique(groups[0])):  # eliminate the larger group first
        groups, names = groups[::-1], names[::-1]
    fit = _CrossedBinomial(x.to_numpy(dtype=float), y.to_numpy(dtype=float).ravel(), groups, d.offset or 0.0)
    theta, beta, cov, message = fit.fit()
    se = np.sqrt(np.diag(cov))
    df = between_within_df(x.to_numpy(dtype=float), groups)
    t = beta / se
    notes = [message] if message else []
    for name, sd in zip(names, theta, strict=True):
        if sd < 1e-4:
            notes.append(f"boundary (singular) fit: the {name} sd is 0")
        elif sd > _SD_BOUND - 1e-3:
            notes.append(f"the {name} sd is at its bound {_SD_BOUND:g}: near-complete separation")
    return pd.DataFrame(
        {
            "term": x.columns,
            "coef": beta,
            "se": se,
            "df": df,
            "p": 2 * sps.t.sf(np.abs(t), df),
            "message": "; ".join(notes),
        }
    )


def between_within_df(x: np.ndarray, groups: Sequence[np.ndarray]) -> np.ndarray:
    """Each fixed-effect column's degrees of freedom (SAS's DDFM=BETWITHIN): for each group
    (integer codes 0..levels-1) within whose levels the column is constant, the group's
    levels minus the columns constant within it; the smallest of those, or inf (z) if none.

    The intercept and a feature-level term (layer, strength) of 12 features get 12 minus
    those terms; a term that varies within features and participants (labeler) gets inf.
    lme4's ``coef_table`` (``bw_df``, analysis.R too) computes the same in R.
    """
    df = np.full(x.shape[1], np.inf)
    for g in groups:
        levels = int(g.max()) + 1
        frame = pd.DataFrame(x).groupby(g)
        spread = (frame.max() - frame.min()).abs().max().to_numpy()
        constant = spread < 1e-12
        df = np.where(constant, np.minimum(df, max(levels - int(constant.sum()), 1)), df)
    return df


class _CrossedBinomial:
    """Binary rows with two crossed random intercepts, as binomial counts per distinct
    (group a, group b, fixed-effect row): 100k responses are a few thousand cells.

    The linear predictor is offset + X beta + sd_a u_a[a] + sd_b u_b[b] with u ~ N(0, I).
    The Hessian of the penalised log-likelihood over (u_a, u_b, beta) has a diagonal u_a
    block; it is eliminated (Schur complement), leaving a dense block of size
    levels(b) + columns.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, groups: list[np.ndarray], offset: float) -> None:
        key = np.column_stack([*groups, x])
        cells, inverse = np.unique(key, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        self.success = np.bincount(inverse, weights=y)
        self.trials = np.bincount(inverse).astype(float)
        self.a, self.b = cells[:, 0].astype(int), cells[:, 1].astype(int)
        self.x = cells[:, 2:]
        self.offset = offset
        self.na, self.nb = int(groups[0].max()) + 1, int(groups[1].max()) + 1
        self.k = x.shape[1]
        self._start: tuple[np.ndarray, np.ndarray] = (np.zeros(self.na + self.nb), np.zeros(self.k))

    def _eta(self, theta: np.ndarray, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.offset + self.x @ beta + theta[0] * u[: self.na][self.a] + theta[1] * u[self.na :][self.b]

    def _loglik(self, eta: np.ndarray) -> float:
        s, t = self.success, self.trials
        return float(np.sum(s * special.log_expit(eta) + (t - s) * special.log_expit(-eta)))

    def _hessian(self, theta: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The negative Hessian over (u_a, rest = (u_b, beta)): diag a-block, a-rest, rest-rest."""
        sa, sb = theta
        diag_a = sa**2 * np.bincount(self.a, w, self.na) + 1.0
        ab = np.bincount(self.a * self.nb + self.b, w, self.na * self.nb).reshape(self.na, self.nb)
        wx = w[:, None] * self.x
        a_beta = sa * np.stack([np.bincount(self.a, wx[:, j], self.na) for j in range(self.k)], 1)
        b_beta = sb * np.stack([np.bincount(self.b, wx[:, j], self.nb) for j in range(self.k)], 1)
        b_block = np.diag(sb**2 * np.bincount(self.b, w, self.nb) + 1.0)
        cross = np.hstack([sa * sb * ab, a_beta])
        rest = np.block([[b_block, b_beta], [b_beta.T, self.x.T @ wx]])
        return diag_a, cross, rest

    def mode(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """The joint mode of (u, beta) given the sds by damped Newton; the restricted Laplace
        deviance there (-2 loglik + |u|^2 + log det of the joint Hessian), beta, u and the
        covariance of beta (the inverse Hessian's beta block)."""
        u, beta = (v.copy() for v in self._start)
        objective = self._loglik(self._eta(theta, beta, u)) - 0.5 * u @ u
        for _ in range(100):
            eta = self._eta(theta, beta, u)
            mu = special.expit(eta)
            w, r = self.trials * mu * (1 - mu), self.success - self.trials * mu
            diag_a, cross, rest = self._hessian(theta, w)
            grad_a = theta[0] * np.bincount(self.a, r, self.na) - u[: self.na]
            grad_b = theta[1] * np.bincount(self.b, r, self.nb) - u[self.na :]
            grad_rest = np.concatenate([grad_b, self.x.T @ r])
            schur = rest - (cross.T / diag_a) @ cross
            step_rest = np.linalg.lstsq(schur, grad_rest - cross.T @ (grad_a / diag_a), rcond=None)[0]
            step = np.concatenate([(grad_a - cross @ step_rest) / diag_a, step_rest])
            size = 1.0
            while True:  # halve the step until the penalised log-likelihood does not fall
                new_u = u + size * step[: self.na + self.nb]
                new_beta = beta + size * step[self.na + self.nb :]
                new = self._loglik(self._eta(theta, new_beta, new_u)) - 0.5 * new_u @ new_u
                if new >= objective - 1e-10 or size < 1e-6:
                    break
                size /= 2
            u, beta, change, objective = new_u, new_beta, new - objective, new
            if abs(change) < 1e-10 * (1 + abs(objective)):
                break
        eta = self._eta(theta, beta, u)
        mu = special.expit(eta)
        diag_a, cross, rest = self._hessian(theta, self.trials * mu * (1 - mu))
        schur = rest - (cross.T / diag_a) @ cross
        sign, logdet = np.linalg.slogdet(schur)
        if sign <= 0:
            raise np.linalg.LinAlgError("the Hessian at the mode is not positive definite")
        self._start = (u, beta)
        deviance = -2 * self._loglik(eta) + u @ u + float(np.sum(np.log(diag_a))) + logdet
        cov = np.linalg.inv(schur)[self.nb :, self.nb :]
        return deviance, beta, u, cov

    def fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """The sds minimising the restricted deviance, and beta and its covariance there; a
        message when the optimiser did not converge.

        Nelder-Mead from 1 (lme4's start; lme4 uses bobyqa, also derivative-free): the
        deviance is even in each sd, so its slope at 0 is 0, and L-BFGS-B's finite
        differences, once a step reached the bound, stopped at sd 0 (seen on a simulated study
        where the optimum was (0.44, 0.35))."""
        result = optimize.minimize(
            lambda th: self.mode(np.abs(th))[0],
            np.ones(2),
            method="Nelder-Mead",
            bounds=[(0.0, _SD_BOUND)] * 2,
            options={"xatol": 1e-6, "fatol": 1e-8},
        )
        theta = np.abs(result.x)
        _, beta, _, cov = self.mode(theta)
        message = "" if result.success else f"the optimiser stopped: {result.message}"
        return theta, beta, cov, message


def ratings_lmm(d: ModelDesign) -> pd.DataFrame:
    """The label-ratings linear mixed model of ``d`` (``rating_design``), participant and
    feature random intercepts.

    lme4's ``lmer`` (REML) where R is installed, else statsmodels' ``MixedLM`` with the two
    intercepts as crossed variance components (the same REML fit, slower: it builds one
    group of every row). Both give Wald t intervals and p with the between-within df
    (:func:`between_within_df`): over simulated studies of 12 features lmer's covered
    0.94-0.97 (100 studies), MixedLM's 0.94-0.955 (200; its z intervals 0.915-0.94).
    """

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
    # t with between-within df, as lme4's coef_table: with z the intercept and layer of 12
    # features would rest on a normal quantile their 12 features cannot support
    groups = [pd.factorize(rows[g])[0] for g in ("participant", "feature")]
    df = between_within_df(np.asarray(fit.model.exog, dtype=float), groups)
    t = fit.fe_params.to_numpy() / fit.bse_fe.to_numpy()
    return pd.DataFrame(
        {
            "term": names,
            "coef": fit.fe_params.to_numpy(),
            "se": fit.bse_fe.to_numpy(),
            "df": df,
            "p": 2 * sps.t.sf(np.abs(t), df),
            "message": "; ".join(messages),
        }
    )


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """The correctness models over label choice and steering together, and the ratings
    model; their rows go to ``r.model_data`` for analysis.R."""
    # One list of designs for every engine, each with the chance of the trials it models;
    # a question the study did not ask (no trials of its type) has no model, not an empty one.
    asked = {"label validation": inputs.has("label_choice"), "steering detection": inputs.has("steering")}
    ds = [d for d in designs(inputs.kept, n_options=inputs.n_options) if asked[d.question]]
    rating = rating_design(inputs.kept, midpoint=inputs.rating_midpoint)
    ratings = inputs.has("label_rating")
    if ds:
        _add_gee(r, ds)
    else:
        r.skip("correctness_gee")
    for d in [*ds, *([rating] if ratings else [])]:
        if d.reason is None:
            r.model_data[d.question] = (d.formula, d.family, d.data)
    if not inputs.bayes:
        return
    if ds:
        _add_ml_glmm(r, ds)
    if ratings:
        _add_ratings_lmm(r, rating)
    else:
        r.skip("ratings_lmm")
    if ds:
        _add_bayes(r, ds)
    else:
        r.skip("correctness_ml_glmm", "correctness_bayes_glmm")


def _add_gee(r: Report, ds: list[ModelDesign]) -> None:
    r.add(
        "correctness_gee",
        gee(ds),
        "One model per question, GEE clustered by participant: label validation "
        "(correct ~ labeler + layer) and steering detection (chose_steered ~ log strength + layer), "
        "with offset logit(chance): the intercept is the log-odds against chance and its Wald z test "
        "tests accuracy at chance; each row names its formula, rows and n (responses), and the note says "
        "what was left out and the chance level. Participants are its only clusters: its intervals are "
        "about these features, not features like them (for that, the mixed models).",
    )


def _add_ml_glmm(r: Report, ds: list[ModelDesign]) -> None:
    r.add(
        "correctness_ml_glmm",
        ml_glmm(ds),
        "The two models by maximum likelihood: binomial GLMMs with random intercepts for participant "
        "and feature and offset logit(chance), so that the intercept's test tests accuracy at chance "
        "(lme4 glmer, Laplace). Wald t intervals and t tests with between-within df (column df: "
        "features, or participants, minus the fixed effects at that level; empty = z) for terms "
        "constant within a feature or participant: with z, intervals of 12 features fell short in "
        "simulation. analysis.R refits them from model_data/. Without R the model column says so: "
        "the same model fitted in Python (Laplace, random-intercept sds by restricted likelihood).",
    )


def _add_ratings_lmm(r: Report, rating: ModelDesign) -> None:
    r.add(
        "ratings_lmm",
        ratings_lmm(rating),
        "Label ratings: rating - midpoint ~ labeler + layer, a linear mixed model with random "
        "intercepts for participant and feature (lme4 lmer, REML; Wald t intervals and t tests with "
        "between-within df, column df; empty = z). "
        "The intercept is the distance from the scale midpoint (its test: rating = midpoint); the "
        "other coefficients are differences in rating points. analysis.R refits it from model_data/.",
    )


def _add_bayes(r: Report, ds: list[ModelDesign]) -> None:
    r.add(
        "correctness_bayes_glmm",
        bayes_mixed(ds),
        "The same two models as binomial GLMMs with random intercepts for participant and feature "
        "by variational Bayes, descriptive: posterior means only, no interval and no test (its "
        "posterior sds understate the uncertainty: its 95% intervals covered 29-86% in simulation); "
        "the intercept is against chance (logit(chance) subtracted, as an offset would).",
    )


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """None: the models' tables are the figures' numbers already."""
