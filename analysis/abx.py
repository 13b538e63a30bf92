"""ABX discrimination (issue 36): can listeners tell a condition from its reference?

Each ABX trial plays A and B (an item's reference and a condition, in either order) and X,
one of the two; the answer is right or wrong. Per condition the table gives the proportion
correct with a participant-clustered 95% interval (a participant's trials are not
independent: the t interval of the participants' own proportions, as
:func:`analysis.stats.clustered_mean`), a one-sided t test of those proportions against
chance (1/2), Holm across conditions, and the sensitivity d' of the independent-observation
model (Macmillan & Creelman, *Detection Theory*, 2005, ch. 9: the observer who decides
optimally from A, B and X), who is right with probability

    p_c = Phi(d' / sqrt 2) Phi(d' / 2) + Phi(-d' / sqrt 2) Phi(-d' / 2).

An observer who only asks which of A and B is nearer to X (the differencing model) is
right less often at the same d' (0.75 against 0.79 at d' = 2), so the same p_c would give
a larger d' under that model: this d' is the smaller, conservative reading.

p_c rises with d' from 1/2, so the interval of d' is that of p_c mapped through its
inverse (d' = 0 at or below chance). A proportion of 1 has no finite d': it is taken as
1 - 1/(2 n), n the condition's trials (Macmillan & Creelman's correction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests

from analysis.report_data import Report, ReportInputs
from analysis.stats import clustered_mean

CHANCE = 0.5
# Past this d' the differencing model's p_c differs from 1 by less than 1e-6.
_D_MAX = 12.0


def abx_proportion_correct(d_prime: float) -> float:
    """p_c of an unbiased observer of sensitivity ``d_prime`` in ABX (independent observation).

    >>> round(abx_proportion_correct(0.0), 3), round(abx_proportion_correct(2.0), 3)
    (0.5, 0.789)
    """
    a, b = stats.norm.cdf(d_prime / np.sqrt(2)), stats.norm.cdf(d_prime / 2)
    return float(a * b + (1 - a) * (1 - b))


def abx_d_prime(p_correct: float) -> float:
    """The d' whose ABX p_c (independent observation) is ``p_correct``; 0 at or below chance.

    >>> round(abx_d_prime(abx_proportion_correct(1.5)), 6)
    1.5
    """
    if not np.isfinite(p_correct):
        return float("nan")
    if p_correct <= CHANCE:
        return 0.0
    if p_correct >= abx_proportion_correct(_D_MAX):
        return _D_MAX
    return float(optimize.brentq(lambda d: abx_proportion_correct(d) - p_correct, 0.0, _D_MAX))


def abx_table(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per condition of the export's main-phase ABX trials (none: an empty table)."""
    columns = [
        "condition",
        "n",
        "n_participants",
        "p_correct",
        "ci_low",
        "ci_high",
        "chance",
        "t",
        "p",
        "p_holm",
        "d_prime",
        "d_prime_low",
        "d_prime_high",
    ]
    if "condition" not in responses.columns:
        return pd.DataFrame(columns=columns)
    rows = responses[
        (responses["trial_type"] == "abx") & (responses["phase"] == "main") & responses["correct"].notna()
    ].assign(right=lambda d: d["correct"].astype(float))
    if rows.empty:
        return pd.DataFrame(columns=columns)
    table = clustered_mean(rows, "right", ["condition"], "participant").rename(columns={"mean": "p_correct"})
    tests = [_t_against_chance(group) for _, group in rows.groupby("condition", sort=True)]
    table["chance"] = CHANCE
    table["t"] = [t for t, _ in tests]
    table["p"] = [p for _, p in tests]
    ok = table["p"].notna().to_numpy()
    table["p_holm"] = np.nan
    if ok.any():
        table.loc[ok, "p_holm"] = multipletests(table.loc[ok, "p"], method="holm")[1]
    top = 1 - 1 / (2 * table["n"].to_numpy(dtype=float))
    for column, source in (("d_prime", "p_correct"), ("d_prime_low", "ci_low"), ("d_prime_high", "ci_high")):
        table[column] = [abx_d_prime(min(p, t)) for p, t in zip(table[source], top, strict=True)]
    return table[columns]


def _t_against_chance(rows: pd.DataFrame) -> tuple[float, float]:
    """One-sided t test of the participants' proportions correct against chance."""
    per = rows.groupby("participant")["right"].mean().to_numpy()
    if len(per) < 2 or np.std(per) == 0:
        return float("nan"), float("nan")
    result = stats.ttest_1samp(per, CHANCE, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def report_tables(r: Report, inputs: ReportInputs) -> None:
    """The ABX table, where the export has ABX trials."""
    discrimination = abx_table(inputs.kept)
    if len(discrimination):
        r.add(
            "abx",
            discrimination,
            "ABX: share of trials where X was named right, per condition told apart from its reference, "
            "vs chance 1/2: the mean of the participants' own shares with its t 95% CI over participants "
            "(df = participants - 1), one-sided t test of those shares, Holm across conditions; d' of the "
            "independent-observation model (Macmillan & Creelman), its interval mapped from the share's; "
            "n = trials, n_participants = participants.",
        )


def report_figures(r: Report, inputs: ReportInputs) -> None:
    """None: one row per condition reads as well as a plot of it."""
