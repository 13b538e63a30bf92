"""The maximum-likelihood GLMM through R's lme4, against lme4 itself and the fallback (issue 19.3).

R with lme4 (Debian's r-cran-lme4) is installed by tests/ensure_services.sh; without it
these tests skip locally and fail in CI, like the PostgreSQL and browser tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import lme4, models


def _label_choices(seed: int = 3) -> tuple[pd.DataFrame, dict[str, float]]:
    """Label-choice answers with participant and feature random intercepts, as lme4 assumes."""
    rng = np.random.default_rng(seed)
    truth = {"Intercept": 0.4, "C(labeler)[T.descriptors]": 0.8, "C(layer)[T.6.0]": -0.5}
    n_p, n_f = 80, 24
    u, v = rng.normal(0, 0.6, n_p), rng.normal(0, 0.8, n_f)
    rows = []
    for p in range(n_p):
        for f in range(n_f):
            labeler = "descriptors" if (p + f) % 2 else "clap-vocab"
            layer = 3 if f < n_f // 2 else 6
            eta = truth["Intercept"] + truth["C(labeler)[T.descriptors]"] * (labeler == "descriptors")
            eta += truth["C(layer)[T.6.0]"] * (layer == 6) + u[p] + v[f]
            rows.append(
                {
                    "trial_type": "label_choice",
                    "n_options": 4,  # chance 1/4: the models' offset
                    "participant": f"p{p}",
                    "feature_id": f,
                    "layer": layer,
                    "labeler": labeler,
                    "correct": bool(rng.random() < 1 / (1 + np.exp(-eta))),
                    "answer_role": None,
                    "strength": None,
                    "rating": None,
                }
            )
    return pd.DataFrame(rows), truth


def test_ml_glmm_is_lme4s_fit(rscript: str, tmp_path: Path) -> None:
    df, truth = _label_choices()
    table = models.ml_glmm(models.designs(df))
    label = table[table["question"] == "label validation"].set_index("term")
    assert (label["model"] == "ML GLMM (lme4)").all()
    # lme4 called directly, with its own formula, on the same rows: the same numbers.
    data = tmp_path / "rows.csv"
    df.assign(feature=df["layer"].astype(str) + ":" + df["feature_id"].astype(str)).to_csv(data, index=False)
    script = (
        "suppressPackageStartupMessages(library(lme4)); d <- read.csv(commandArgs(TRUE)[1]);"
        "d$layer <- factor(d$layer); d$correct <- as.numeric(d$correct == 'True');"
        "f <- glmer(correct ~ labeler + layer + (1 | participant) + (1 | feature), d, binomial,"
        " control = glmerControl(optimizer = 'bobyqa'));"
        "write.csv(data.frame(term = names(fixef(f)), coef = fixef(f)), commandArgs(TRUE)[2],"
        " row.names = FALSE)"
    )
    out = tmp_path / "direct.csv"
    subprocess.run([rscript, "-e", script, str(data), str(out)], check=True, capture_output=True, timeout=300)
    direct = pd.read_csv(out).set_index("term")["coef"]
    # The table's model has offset logit(1/4) (its intercept is against chance, issue 35.4);
    # a constant offset moves the intercept only, by exactly that much.
    offset = {"Intercept": np.log(1 / 3)}
    for term, r_term in (
        ("Intercept", "(Intercept)"),
        ("C(labeler)[T.descriptors]", "labelerdescriptors"),
        ("C(layer)[T.6.0]", "layer6"),
    ):
        coef = label.loc[term, "coef"] + offset.get(term, 0.0)
        assert abs(coef - direct[r_term]) < 1e-3, term
        assert label.loc[term, "ci_low"] < label.loc[term, "coef"] < label.loc[term, "ci_high"]
        assert abs(coef - truth[term]) < 0.5, term  # and near the truth
    assert label.loc["C(labeler)[T.descriptors]", "p"] < 0.001
    # t with the between-within df for feature-level terms (24 features - intercept and
    # layer), z (df empty) for the labeler, which varies within features and participants
    assert label.loc["Intercept", "df"] == 22 and label.loc["C(layer)[T.6.0]", "df"] == 22
    assert np.isinf(label.loc["C(labeler)[T.descriptors]", "df"])
    # The Python fallback (issue 35.2) fits the same model: its sds by a restricted
    # likelihood, so its estimates differ a little (0.019-0.035 here) and its feature-level
    # SEs are a few % larger (1.03-1.04 x here; the labeler's 0.98 x).
    fallback = models.laplace_glmm(models.designs(df)[0]).set_index("term")
    se = (label["ci_high"] - label["coef"]) / sps.t.ppf(0.975, label["df"])
    assert (fallback["coef"] - label["coef"]).abs().max() < 0.06, pd.concat([fallback, label["coef"]], axis=1)
    assert ((fallback["se"] / se).between(0.95, 1.15)).all(), pd.concat([fallback["se"], se], axis=1)
    # No steering trials here: that model says so in one row.
    steering = table[table["question"] == "steering detection"]
    assert len(steering) == 1 and "no responses" in steering["note"].iloc[0]


def test_without_r_the_fallback_says_what_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lme4, "rscript", lambda: None)
    df, _ = _label_choices()
    table = models.ml_glmm(models.designs(df))
    label = table.query("question == 'label validation'")
    assert set(table["model"]) == {"ML GLMM (Laplace in Python, REML-type; fallback: no R/lme4)"}
    assert label[["coef", "ci_low", "ci_high", "p"]].notna().all().all()
    assert label["note"].str.contains("fallback fit without R").all()


def test_analysis_r_refits_the_reports_models(rscript: str, tmp_path: Path) -> None:
    """Issue 19.4: a reviewer reruns the tables outside this tool, from the report folder."""
    from analysis.report import build_report, write_report
    from analysis.simulate import simulate_export

    report = build_report(simulate_export(30, 8, seed=4), n_boot=20)
    write_report(report, tmp_path / "report")
    done = subprocess.run(
        [rscript, "analysis.R"], cwd=tmp_path / "report", capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "== label validation ==" in done.stdout and "== steering detection ==" in done.stdout
    assert "== label ratings ==" in done.stdout
    ml = pd.concat([report.tables["correctness_ml_glmm"], report.tables["ratings_lmm"]])
    for question in ("label validation", "steering detection", "label ratings"):
        refit = pd.read_csv(tmp_path / "report" / "model_data" / f"{question.replace(' ', '_')}_coef.csv")
        ours = ml[ml["question"] == question]
        assert np.allclose(sorted(refit["coef"]), sorted(ours["coef"]), atol=1e-3), question
        assert np.allclose(sorted(refit["p"]), sorted(ours["p"]), atol=1e-6), question
        # and the same t intervals (between-within df computed in R as in Python)
        for bound in ("ci_low", "ci_high"):
            assert np.allclose(sorted(refit[bound]), sorted(ours[bound]), atol=1e-3), (question, bound)


def _ratings(seed: int = 5) -> tuple[pd.DataFrame, dict[str, float]]:
    """Unbalanced 1-7 ratings with participant and feature intercepts (lmer's model)."""
    rng = np.random.default_rng(seed)
    truth = {"Intercept": 3.5, "C(labeler)[T.descriptors]": 0.6, "C(layer)[T.6.0]": -0.4}
    n_p, n_f = 60, 20
    u, v = rng.normal(0, 0.5, n_p), rng.normal(0, 0.7, n_f)
    rows = []
    for p in range(n_p):
        for f in rng.choice(n_f, size=int(rng.integers(6, n_f)), replace=False):  # unbalanced
            labeler = "descriptors" if rng.random() < 0.4 else "clap-vocab"
            layer = 3 if f < n_f // 2 else 6
            mean = truth["Intercept"] + truth["C(labeler)[T.descriptors]"] * (labeler == "descriptors")
            mean += truth["C(layer)[T.6.0]"] * (layer == 6) + u[p] + v[f]
            rating = float(np.clip(np.rint(mean + rng.normal(0, 0.8)), 1, 7))
            rows.append(
                {
                    "trial_type": "label_rating",
                    "participant": f"p{p}",
                    "feature_id": int(f),
                    "layer": layer,
                    "labeler": labeler,
                    "rating": rating,
                }
            )
    return pd.DataFrame(rows), truth


def test_ratings_lmm_is_lmers_fit_and_the_fallback_agrees(
    rscript: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19.2: ratings get a linear mixed model; lme4's lmer and statsmodels' MixedLM
    (the fallback without R) are two implementations of one REML fit: the same numbers."""
    df, truth = _ratings()
    truth["Intercept"] -= 4.0  # the 1-7 scale's midpoint: the intercept is measured from it
    ours = models.ratings_lmm(models.rating_design(df, midpoint=4.0)).set_index("term")
    assert (ours["model"] == "LMM (lme4 lmer)").all() and ours["odds_ratio"].isna().all()
    assert ours["formula"].iloc[0] == "rating_centred ~ C(labeler) + C(layer)" and ours["n"].iloc[0] == len(
        df
    )
    monkeypatch.setattr(lme4, "rscript", lambda: None)
    fallback = models.ratings_lmm(models.rating_design(df, midpoint=4.0)).set_index("term")
    assert (fallback["model"] == "LMM (statsmodels MixedLM: no R/lme4)").all()
    for term, true in truth.items():
        assert abs(ours.loc[term, "coef"] - fallback.loc[term, "coef"]) < 1e-3, term
        assert abs(ours.loc[term, "ci_high"] - fallback.loc[term, "ci_high"]) < 0.01, term
        assert ours.loc[term, "ci_low"] < ours.loc[term, "coef"] < ours.loc[term, "ci_high"]
        se = (ours.loc[term, "ci_high"] - ours.loc[term, "coef"]) / sps.t.ppf(0.975, ours.loc[term, "df"])
        assert abs(ours.loc[term, "coef"] - true) < 3 * se, term  # and near the truth
    # Both give t with the same between-within df: 20 features minus intercept and layer
    assert ours.loc["Intercept", "df"] == fallback.loc["Intercept", "df"] == 18
    assert np.isinf(ours.loc["C(labeler)[T.descriptors]", "df"])
    assert ours.loc["C(labeler)[T.descriptors]", "p"] < 0.001


def test_ratings_lmm_without_ratings_says_so() -> None:
    df, _ = _label_choices()
    row = models.ratings_lmm(models.rating_design(df))
    assert len(row) == 1 and row["note"].iloc[0] == "not fitted: no responses of this kind"
