"""The power arithmetic shared by ``plan`` and the trial types' own rows.

Apart from ``plan`` so that a trial type's module (``stimuli_builder.trial_types``) can
size its own test: ``plan`` reads the config, a type's module imports from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from statsmodels.stats.power import TTestPower

from artifact_schemas.settings import check_settings, setting


@dataclass(frozen=True)
class PowerTargets:
    """What a study is sized to detect, and how surely."""

    effect: float = setting(0.65, gt=0, lt=1)
    """Accuracy to detect in choice trials (vs chance)."""
    alpha: float = setting(0.05, gt=0, lt=1)
    """Family-wise error rate (Holm over features)."""
    power: float = setting(0.8, gt=0, lt=1)
    """Wanted power per feature."""
    rating_d: float = setting(0.5, gt=0)
    """Effect size d for rating trials (vs midpoint)."""
    slider_d: float = setting(0.5, gt=0)
    """Effect size d_z for MUSHRA and slider trials: a condition's mean difference from the
    reference over the sd of the assessors' own differences."""
    abx_correct: float = setting(0.75, gt=0.5, lt=1)
    """Proportion correct to detect in ABX trials (chance 1/2)."""
    abx_sd: float = setting(0.1, ge=0, lt=0.5)
    """How much the participants' own proportions correct differ in ABX (sd)."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class PowerRow:
    kind: str
    chance: float | None
    effect: float
    features: int
    alpha_per_test: float
    responses_per_feature: int
    lists_per_feature: int
    participants_per_list: int
    participants_total: int
    power: float


def t_row(
    kind: str,
    compared: list[str],
    per_assessor: float,
    d: float,
    alternative: str,
    k: int,
    targets: PowerTargets,
    share: float = 1.0,
    chance: float | None = None,
    shown: float | None = None,
) -> PowerRow:
    """Assessors for a t test of effect size ``d`` per condition at alpha / conditions
    (Holm's first step), and the responses per condition that gives (``per_assessor``
    each); ``share``: of the clips, those one assessor rates. The row shows ``shown``
    (ABX: the proportion correct, against ``chance``) as its effect, else d."""
    a = targets.alpha / len(compared)
    n, achieved = t_test_n(d, a, targets.power, alternative)
    assessors = math.ceil(n / share)
    per_list = math.ceil(assessors / k)
    effect = d if shown is None else shown
    responses = math.ceil(n * per_assessor)
    return PowerRow(kind, chance, effect, len(compared), a, responses, k, per_list, per_list * k, achieved)


def t_test_n(
    d: float, alpha: float, power: float, alternative: str, n_max: int = 100_000
) -> tuple[int, float]:
    """Smallest n (>= 2) whose one-sample t test at ``alpha`` has ``power`` at effect size
    ``d``, and its power (statsmodels ``TTestPower``). A search, doubling n and then
    halving the gap: ``solve_power`` fails where even n = 2 is more than enough, and the
    noncentral t's power comes back NaN at some n in the thousands, so n stays as small
    as the answer allows."""
    analysis = TTestPower()

    def enough(n: int) -> bool:
        return bool(analysis.power(effect_size=d, nobs=n, alpha=alpha, alternative=alternative) >= power)

    hi = 2
    while not enough(hi):
        if hi >= n_max:
            raise ValueError(f"no n <= {n_max} reaches power {power} at d = {d:.3g}")
        hi = min(2 * hi, n_max)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo, float(analysis.power(effect_size=d, nobs=lo, alpha=alpha, alternative=alternative))
