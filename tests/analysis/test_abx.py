"""ABX discrimination (issue 36): d' of the independent-observation model, and an interval
that holds the planted sensitivity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.abx import abx_d_prime, abx_proportion_correct, abx_table
from analysis.report import build_report
from analysis.simulate import simulate_slider_export


def test_the_model_is_that_of_an_observer_deciding_optimally_from_a_b_and_x() -> None:
    # An independent check of the closed form: simulated observations of A, B and X (unit
    # normal, means 0 and d'), and the likelihood-ratio decision of which one X is.
    rng = np.random.default_rng(7)
    n = 400_000
    for d in (0.5, 1.0, 2.0, 3.0):
        # A, B, X; X is A
        seen = np.stack([rng.standard_normal(n), d + rng.standard_normal(n), rng.standard_normal(n)])

        def log_l(*means: float, seen: np.ndarray = seen) -> np.ndarray:
            return -0.5 * ((seen - np.array(means)[:, None]) ** 2).sum(axis=0)

        x_is_a = np.logaddexp(log_l(0, d, 0), log_l(d, 0, d))
        x_is_b = np.logaddexp(log_l(0, d, d), log_l(d, 0, 0))
        assert abs(float(np.mean(x_is_a > x_is_b)) - abx_proportion_correct(d)) < 0.004, d
        assert abs(abx_d_prime(abx_proportion_correct(d)) - d) < 1e-6
    assert abx_d_prime(0.5) == abx_d_prime(0.3) == 0.0


def _abx_export(planted: dict[str, float], participants: int, trials: int, seed: int) -> pd.DataFrame:
    """ABX rows of an export: each participant's own p_c scatters around the condition's."""
    rng = np.random.default_rng(seed)
    # A complete session's columns (status, screening, timing), from the slider simulator.
    session = simulate_slider_export(n_participants=1, n_items=1, seed=seed).responses.iloc[0].to_dict()
    rows = []
    for p in range(participants):
        for condition, d in planted.items():
            p_c = np.clip(abx_proportion_correct(d) + rng.normal(0, 0.05), 0.5, 1.0)
            for i, right in enumerate(rng.random(trials) < p_c):
                rows.append(
                    {
                        **session,
                        "participant": f"{p:064x}",
                        "session_id": f"s{p}",
                        "trial_id": f"{condition}{i}",
                        "trial_type": "abx",
                        "condition": condition,
                        "correct": bool(right),
                        "sliders": None,
                        "item": None,
                    }
                )
    return pd.DataFrame(rows)


def test_the_planted_sensitivity_lies_within_its_interval_at_the_nominal_rate() -> None:
    planted = {"subtle": 0.8, "clear": 2.0, "same": 0.0}
    held = {c: 0 for c in planted}
    studies = 120
    for seed in range(studies):
        table = abx_table(_abx_export(planted, participants=16, trials=12, seed=seed)).set_index("condition")
        for condition, d in planted.items():
            if d == 0:  # at chance d' is 0 by definition: the interval must reach it
                held[condition] += table.loc[condition, "d_prime_low"] == 0
            else:
                held[condition] += (
                    table.loc[condition, "d_prime_low"] <= d <= table.loc[condition, "d_prime_high"]
                )
    coverage = {c: n / studies for c, n in held.items()}
    assert all(v >= 0.9 for v in coverage.values()), coverage


def test_the_table_tests_against_chance_and_says_n() -> None:
    table = abx_table(_abx_export({"clear": 2.0, "same": 0.0}, participants=20, trials=12, seed=1))
    row = table.set_index("condition")
    assert (row["n"] == 240).all() and (row["n_participants"] == 20).all() and (row["chance"] == 0.5).all()
    assert row.loc["clear", "p_holm"] < 0.001 < row.loc["same", "p_holm"]
    assert 0.7 < row.loc["clear", "p_correct"] < 0.85 and row.loc["same", "d_prime_low"] == 0


def test_the_report_has_an_abx_table_only_with_abx_trials() -> None:
    sliders_only = simulate_slider_export(n_participants=6, n_items=2, seed=0).responses
    assert "abx" not in build_report(sliders_only, bayes=False).tables
    both = pd.concat([sliders_only, _abx_export({"clear": 2.0}, 6, 8, 0)], ignore_index=True)
    report = build_report(both, bayes=False)
    assert list(report.tables["abx"]["condition"]) == ["clear"]
    assert "t test" in report.captions["abx"] and "n = trials" in report.captions["abx"]
