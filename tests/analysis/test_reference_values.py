"""Statistics against published worked examples and scipy/statsmodels reference computations."""

from __future__ import annotations

import doctest

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss
from statsmodels.stats.multitest import multipletests

import analysis.agreement
import analysis.stats
from analysis.agreement import fleiss_kappa as our_fleiss
from analysis.agreement import icc, krippendorff_alpha
from analysis.stats import _rank_corr_rows, adjust_pvalues, chisquare_uniform, correlation, wilson_ci
from analysis.steering import choice_counts

FLEISS_1971 = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders x 12 units, with gaps.
NAN = np.nan
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_docstring_examples_hold() -> None:
    for module in (analysis.stats, analysis.agreement):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_fleiss_1971_example() -> None:
    long = pd.DataFrame(
        [(i, c) for i, row in enumerate(FLEISS_1971) for c, n in enumerate(row) for _ in range(n)],
        columns=["item", "response"],
    )
    ours = our_fleiss(long, "item", "response")
    assert ours == pytest.approx(sm_fleiss(np.array(FLEISS_1971)), abs=1e-12)
    assert ours == pytest.approx(0.2099307, abs=1e-6)


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_2011_worked_example(level: str, expected: float) -> None:
    long = pd.DataFrame(
        [(c, u, v) for c, row in enumerate(KRIPPENDORFF_2011) for u, v in enumerate(row) if np.isfinite(v)],
        columns=["coder", "unit", "value"],
    )
    assert krippendorff_alpha(long, "unit", "coder", "value", level) == pytest.approx(expected, abs=5e-4)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_from_counts_equals_the_package_on_a_reliability_matrix(level: str) -> None:
    # Our alpha hands the package value counts; the package's own path is a rater x item
    # matrix, where a rater's second judgement of an item replaces the first.
    rng = np.random.default_rng(3)
    long = pd.DataFrame(
        {
            "coder": rng.integers(0, 12, 400),
            "unit": rng.integers(0, 40, 400),
            "value": rng.integers(1, 6, 400),
        }
    )
    long["value"] = np.where(long["unit"] % 3 == 0, long["unit"] % 5 + 1, long["value"])  # some agreement
    assert long.duplicated(["coder", "unit"]).any()  # raters who judged an item twice
    matrix = np.full((12, 40), np.nan)
    for row in long.itertuples():
        matrix[row.coder, row.unit] = row.value
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    ours = krippendorff_alpha(long, "unit", "coder", "value", level)  # type: ignore[arg-type]
    assert ours == pytest.approx(expected, abs=1e-12)
    once = long.drop_duplicates(["coder", "unit"], keep="last")
    assert krippendorff_alpha(once, "unit", "coder", "value", level) == pytest.approx(expected, abs=1e-12)  # type: ignore[arg-type]


def test_icc_shrout_fleiss_1979() -> None:
    long = pd.DataFrame(
        [(t, r) for t, row in enumerate(SHROUT_FLEISS) for r in row], columns=["target", "rating"]
    )
    table = icc(long, "target", "rating").set_index("type")["icc"]
    assert table["ICC1"] == pytest.approx(0.17, abs=0.005)
    assert table["ICC1k"] == pytest.approx(0.44, abs=0.005)


def test_wilson_newcombe_1998() -> None:
    assert wilson_ci(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_ci(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    # The closed form, to machine precision.
    k, n, z = 7, 20, stats.norm.ppf(0.975)
    p = k / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    assert wilson_ci(k, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_holm_and_bh_by_hand_and_against_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    assert adjust_pvalues(p, "fdr_bh") == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-12)
    rng = np.random.default_rng(0)
    # Holm is computed by hand (statsmodels' collects garbage on every call): small p values,
    # ties and values whose products pass 1 must all match statsmodels'.
    for q in (rng.uniform(0, 0.2, 30), np.round(rng.uniform(0, 1, 40), 2), np.array([0.5])):
        for method in ("holm", "fdr_bh"):
            assert adjust_pvalues(q, method) == pytest.approx(multipletests(q, method=method)[1], abs=1e-12)
    assert np.isnan(adjust_pvalues([0.1, np.nan], "holm")[1])


def test_paper_steering_chi_square() -> None:
    """66 of 100 chose the steered clip, 17 the baseline, 17 the random direction: chi2 = 48.02."""
    assert chisquare_uniform([66, 17, 17])["chi2"].iloc[0] == pytest.approx(48.02, abs=1e-9)
    roles = ["steered"] * 66 + ["baseline"] * 17 + ["random_direction"] * 17
    df = pd.DataFrame({"trial_type": "steering", "answer_role": roles})
    table = choice_counts(df)
    assert table["chi2"].iloc[0] == pytest.approx(48.02, abs=1e-9)
    assert (table["n_steered"].iloc[0], table["n_baseline"].iloc[0], table["n_random_direction"].iloc[0]) == (
        66,
        17,
        17,
    )


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_rank_correlations_match_scipy(method: str) -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(50, 15)), 1)  # rounded: ties, as with ratings
    y = np.round(x + rng.normal(size=(50, 15)), 1)
    func = stats.spearmanr if method == "spearman" else stats.kendalltau
    expected = [func(a, b).statistic for a, b in zip(x, y, strict=True)]
    assert _rank_corr_rows(x, y, method) == pytest.approx(expected, abs=1e-12)
    result = correlation(x[0], y[0], method=method, n_perm=999).iloc[0]
    assert result["r"] == pytest.approx(expected[0], abs=1e-12)
    assert result["ci_low"] <= result["r"] <= result["ci_high"]
    null = correlation(rng.normal(size=40), rng.normal(size=40), method=method, n_perm=999).iloc[0]
    assert null["p_perm"] > 0.01


def test_cohen_kappa_matches_statsmodels_without_its_variance_warning() -> None:
    """Issue 35.4: the report's Cohen's kappa warned "invalid value in sqrt" from a variance
    it never printed; the kappa itself is statsmodels' (Cohen 1960: 0.0 and 1.0 here)."""
    import warnings

    from analysis.agreement import cohen_kappa

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cohen_kappa(pd.Series(list("aabb")), pd.Series(list("abab"))) == pytest.approx(0.0)
        assert cohen_kappa(pd.Series(list("aaab")), pd.Series(list("aaab"))) == pytest.approx(1.0)
        # (0.7 - 0.5) / (1 - 0.5): 7 of 10 agree, chance 0.5
        a, b = pd.Series(list("aaaaabbbbb")), pd.Series(list("aaaabbbbba"))
        assert cohen_kappa(a, b) == pytest.approx(0.6)
        # one rater uses one category: agreement is what chance gives (statsmodels' variance
        # divides by zero here)
        assert cohen_kappa(pd.Series(list("aaaa")), pd.Series(list("aaab"))) == pytest.approx(0.0)
