"""The report answers the questions it claims to (issue 35.3 and 35.4): items of agreement,
intercepts against chance and the midpoint, participant-clustered tests, n of what, no
duplicated rows or unsupported lines, a named test in every caption, and CLAP-vs-human
p values that hold when a feature appears several times."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.clap_human import clap_vs_human
from analysis.label_validation import (
    choice_accuracy,
    human_vs_automatic,
    inter_rater,
    labeler_comparison,
    rating_summary,
)
from analysis.lme4 import rscript
from analysis.models import bayes_mixed, designs, gee, ml_glmm, rating_design, ratings_lmm
from analysis.report import build_report, write_report
from analysis.simulate import LABELS, simulate_export
from analysis.stats import correlation


def _two_labelers(n_participants: int = 30, n_features: int = 12, seed: int = 0) -> pd.DataFrame:
    """A simulated export whose every feature has label-choice trials under two labelers,
    each with its own target label (as in the demo), both answered at 70 %."""
    acc = np.full(n_features, 0.7)
    first = simulate_export(n_participants, n_features, accuracy=acc, seed=seed)
    second = simulate_export(n_participants, n_features, accuracy=acc, seed=seed + 100)
    # The second labeler's labels: another label for every feature (a bijection, so that
    # right answers stay right and wrong ones wrong).
    other = dict(zip(LABELS, LABELS[5:] + LABELS[:5], strict=True))
    choices = second[second["trial_type"] == "label_choice"].assign(
        labeler="clap-vocab",
        trial_id=lambda d: d["trial_id"] + "b",
        answer_text=lambda d: d["answer_text"].map(other),
        correct_text=lambda d: d["correct_text"].map(other),
        label=lambda d: d["label"].map(other),
    )
    return pd.concat([first, choices], ignore_index=True)


def test_inter_rater_items_are_feature_and_labeler_target() -> None:
    """The demo pooled both labelers' trials per feature: kappa 0.077 at 70 % accuracy,
    0.456 with (feature, labeler) as the item; its n (84) counted responses."""
    df = _two_labelers()
    table = inter_rater(df, n_boot=50).set_index("measure")
    fleiss = table.loc["Fleiss kappa"]
    assert fleiss["n"] == 24  # 12 features x 2 labeler targets, not 720 responses
    assert fleiss["n_raters"] == 30 and fleiss["n_responses"] == 720
    # 70 % right among 12 labels: items agree well; pooled per feature they did not.
    assert fleiss["estimate"] > 0.35, fleiss["estimate"]
    ratings = table.loc["ICC(1,1)"]
    assert ratings["n"] == 24 and ratings["n_raters"] == 30


def _at(accuracy: float, steer: float, seed: int = 1) -> pd.DataFrame:
    return simulate_export(40, 12, accuracy=np.full(12, accuracy), steer_rate=np.full(12, steer), seed=seed)


def _ml_glmm_without_r(ds: object) -> pd.DataFrame:
    """The ML table as it is where R is not installed: the Python Laplace fallback."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("analysis.lme4.rscript", lambda: None)
        return ml_glmm(ds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fit",
    [
        gee,
        _ml_glmm_without_r,
        pytest.param(ml_glmm, marks=pytest.mark.skipif(rscript() is None, reason="no R")),
    ],
)
def test_model_intercepts_test_chance_not_fifty_percent(fit: object) -> None:
    """Steering detection's GEE p was 0.745 and lme4's 0.758 beside the strength table's
    0.008: the intercepts tested 50 %. With logit(chance) as offset they test chance."""
    above = fit(designs(_at(0.40, 0.48)))  # type: ignore[operator]
    at = fit(designs(_at(0.25, 1 / 3)))  # type: ignore[operator]
    for question in ("label validation", "steering detection"):
        hi = above.query("question == @question and term == 'Intercept'").iloc[0]
        null = at.query("question == @question and term == 'Intercept'").iloc[0]
        assert hi["coef"] > 0 and hi["ci_low"] > 0, (question, hi["coef"])  # above chance, below 50 %
        assert null["ci_low"] < 0 < null["ci_high"], (question, null["coef"])
        assert hi["p"] < 0.001 and null["p"] > 0.05
        assert "offset" in hi["note"]


def test_the_variational_bayes_glmm_is_descriptive() -> None:
    """Its posterior sds were 0.1-0.7 x lme4's SEs (issue 35.2): it prints means, no CI, no p."""
    table = bayes_mixed(designs(_at(0.40, 0.48)))
    assert table["coef"].notna().all()
    assert table[["ci_low", "ci_high", "p"]].isna().all().all()
    assert table["model"].str.contains("descriptive").all()
    assert table["note"].str.contains("descriptive").all()


@pytest.mark.skipif(rscript() is None, reason="needs R with lme4")
def test_analysis_r_fits_with_the_offset_and_the_midpoint(tmp_path: Path) -> None:
    """The R script a reviewer reruns answers the same questions as the table."""
    report = build_report(_at(0.40, 0.48), n_boot=20)
    write_report(report, tmp_path)
    done = subprocess.run(
        [str(rscript()), "analysis.R"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for question, table in [
        ("label_validation", "correctness_ml_glmm"),
        ("steering_detection", "correctness_ml_glmm"),
        ("label_ratings", "ratings_lmm"),
    ]:
        r = pd.read_csv(tmp_path / "model_data" / f"{question}_coef.csv")
        ours = report.tables[table].query("question == @question.replace('_', ' ')")
        assert abs(r["coef"].iloc[0] - ours["coef"].iloc[0]) < 1e-3, question
        # 40 % right of 4 options, 48 % of 3 clips: above chance (though below 50 %); ratings
        # about 2.1 at the reference levels: below the midpoint (though above 0).
        assert (r["coef"].iloc[0] < 0) == (question == "label_ratings"), (question, r["coef"].iloc[0])
    assert "offset" in pd.read_csv(tmp_path / "model_data" / "label_validation.csv").columns


def test_ratings_intercept_tests_the_scale_midpoint() -> None:
    """ratings_lmm's intercept p was 1e-57: it tested a mean rating of 0 on a 1-5 scale."""
    df = simulate_export(30, 8, seed=4)
    rated = df["trial_type"] == "label_rating"
    rng = np.random.default_rng(0)
    df.loc[rated, "rating"] = rng.choice([2.0, 3.0, 4.0], size=int(rated.sum()))  # mean 3
    table = ratings_lmm(rating_design(df))
    intercept = table.query("term == 'Intercept'").iloc[0]
    assert abs(intercept["coef"]) < 0.3 and intercept["p"] > 0.01, intercept["coef"]  # 0.14, p 0.033
    assert "midpoint 3" in intercept["note"]
    df.loc[rated, "rating"] = rng.choice([3.0, 4.0, 5.0], size=int(rated.sum()))  # mean 4
    intercept = ratings_lmm(rating_design(df)).query("term == 'Intercept'").iloc[0]
    assert 0.7 < intercept["coef"] < 1.3 and intercept["p"] < 0.001


def _clustered_study(rng: np.random.Generator, n_participants: int = 20, trials: int = 30) -> pd.DataFrame:
    """Participants who differ a lot (some good listeners, some guessing, some worse),
    at chance (1/4) on average: accuracy and ratings at the null, clustered."""
    skill = rng.beta(0.5, 1.5, n_participants)  # mean 0.25
    lean = rng.normal(0, 0.8, n_participants)  # a lenient or strict rater
    part = np.repeat(np.arange(n_participants), trials)
    return pd.DataFrame(
        {
            "participant": part,
            "layer": 3,
            "labeler": "descriptors",
            "trial_type": np.where(np.arange(part.size) % 2 == 0, "label_choice", "label_rating"),
            "correct": rng.random(part.size) < skill[part],
            "rating": np.clip(np.rint(3 + lean[part] + rng.normal(0, 1, part.size)), 1, 5),
        }
    )


def test_accuracy_and_rating_tests_are_clustered_by_participant() -> None:
    """Binomial tests and the ratings t test treated each response as independent (41-43
    ratings from 14 people): with participants who differ, they reject a true null often."""
    rng = np.random.default_rng(5)
    accuracy_p, rating_p = [], []
    for _ in range(300):
        study = _clustered_study(rng)
        accuracy_p.append(choice_accuracy(study, ["layer"], n_options=4)["p"].iloc[0])
        rating_p.append(rating_summary(study, ["labeler"])["p"].iloc[0])
    false_positive = np.mean(np.array(accuracy_p) < 0.05), np.mean(np.array(rating_p) < 0.05)
    # Measured: 0.023 and 0.047 (pooled responses, binomial and t test: 0.26 and 0.44).
    assert false_positive[0] <= 0.08 and false_positive[1] <= 0.08, false_positive
    table = choice_accuracy(study, ["layer"], n_options=4)
    assert table["test"].iloc[0] == "cluster-robust t" and table["n_participants"].iloc[0] == 20


def test_every_table_says_n_of_what() -> None:
    """human_vs_automatic said n_features 24 for 12 features; labeler_comparison had no n."""
    df = _two_labelers()
    row = human_vs_automatic(df).iloc[0]  # 4 options
    assert row["n_features"] == 12 and row["n"] == 24  # 12 features x 2 labelers' labels
    assert row["chance"] == 0.25 and row["ci_low"] <= row["agreement"] <= row["ci_high"] and row["p"] < 0.001
    assert labeler_comparison(df)["n"].iloc[0] == 12


def test_clap_vs_human_has_no_duplicated_scope_rows() -> None:
    """With one layer the "layer 3" rows repeated the "all" rows."""
    table = clap_vs_human(simulate_export(20, 8, layers=(3,), seed=2), n_perm=200)
    assert set(table["scope"]) == {"all"}
    two = clap_vs_human(simulate_export(20, 8, seed=2), n_perm=200)
    assert set(two["scope"]) == {"all", "layer 3", "layer 6"} and "p_holm" in two


def _lines(svg: str) -> int:
    """Lines drawn in a matplotlib SVG other than tick marks (one line2d in each tick)."""
    ticks = len(re.findall(r'<g id="[xy]tick_\d+"', svg))
    return len(re.findall(r'<g id="line2d_\d+"', svg)) - ticks


def test_clap_figure_draws_no_line_for_a_non_significant_correlation() -> None:
    """The demo's figure drew a rising line at rho = 0.065 (p = 0.76)."""
    df = simulate_export(30, 12, seed=3)
    rng = np.random.default_rng(3)  # rho -0.07, p 0.84
    shuffled = dict(zip(range(12), rng.permutation(np.linspace(0.2, 0.6, 12)), strict=True))
    unrelated = df.assign(clap_score=df["feature_id"].map(shuffled).where(df["clap_score"].notna()))
    report = build_report(unrelated, bayes=False, n_boot=20)
    row = report.tables["clap_vs_human"].query(
        "scope == 'all' and human == 'accuracy' and method == 'spearman'"
    )
    assert row["p_perm"].iloc[0] > 0.05
    assert _lines(report.figures["clap_vs_human"]) == 0
    related = build_report(df, bayes=False, n_boot=20)  # CLAP planted to follow accuracy
    assert related.tables["clap_vs_human"]["p_perm"].iloc[0] < 0.05
    assert _lines(related.figures["clap_vs_human"]) == 1
    asked = build_report(unrelated, bayes=False, n_boot=20, clap_line=True)
    assert _lines(asked.figures["clap_vs_human"]) == 1


TESTS = ("binomial test", "t test", "Wilcoxon", "chi-square test", "z test", "permutation test", "no test")


def test_every_caption_names_its_test() -> None:
    """Three captions named no test ("Steering detection by strength.")."""
    report = build_report(_two_labelers(), n_boot=20, bayes=True)
    unnamed = {name: c for name, c in report.captions.items() if not any(t in c for t in TESTS)}
    assert unnamed == {}
    assert "chance" in report.captions["correctness_gee"] and "offset" in report.captions["correctness_gee"]


def _null_study(rng: np.random.Generator, n_features: int = 20, labelers: int = 2) -> pd.DataFrame:
    """No relation between CLAP and humans, but a feature-level component in each (some
    features are easy and loud, whatever the labeler): rows of a feature are alike."""
    feature = np.repeat(np.arange(n_features), labelers)
    clap = rng.normal(0, 1, n_features)[feature] + rng.normal(0, 0.3, feature.size)
    human = rng.normal(0, 1, n_features)[feature] + rng.normal(0, 0.3, feature.size)
    return pd.DataFrame({"feature": feature, "clap": clap, "human": human})


def test_clap_vs_human_false_positive_rate_with_a_shared_feature_component() -> None:
    """Bootstrap and permutation over rows gave p < .05 in 13-21 % of null studies;
    resampling features (clusters) keeps it at the nominal 5 %."""
    rng = np.random.default_rng(35)
    clustered, rows = [], []
    for _ in range(1000):  # 1000 studies: the rate's standard error is 0.007
        s = _null_study(rng)
        clustered.append(
            correlation(s["clap"], s["human"], n_boot=20, n_perm=200, cluster=s["feature"])["p_perm"].iloc[0]
        )
        rows.append(correlation(s["clap"], s["human"], n_boot=20, n_perm=200)["p_perm"].iloc[0])
    rate, naive = np.mean(np.array(clustered) < 0.05), np.mean(np.array(rows) < 0.05)
    # Measured: 0.051 (by feature) and 0.168 (over rows); seed 36: 0.047 and 0.150.
    assert rate <= 0.06, rate
    assert naive > 0.1, naive  # the simulation does have the problem


def test_inter_rater_says_when_items_are_too_few_for_its_interval() -> None:
    """Issue 35.1: with under 5 items no interval tried covers 90 %; the table's note says so."""
    from analysis.label_validation import inter_rater
    from analysis.simulate import simulate_export

    few = inter_rater(simulate_export(20, 2, seed=0)).set_index("measure")
    assert few.loc["Fleiss kappa", "note"] == "fewer than 3 items: no interval"
    assert "only 4 items" in few.loc["Krippendorff alpha (ordinal)", "note"]
    enough = inter_rater(simulate_export(20, 12, seed=0)).set_index("measure")
    assert enough.loc["Fleiss kappa", "note"] == "" and enough.loc["Fleiss kappa", "n"] == 12
