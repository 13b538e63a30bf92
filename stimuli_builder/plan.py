"""Power planning: how many participants per list a study needs.

For choice trials (label choice, steering detection) each feature is tested on
its own with an exact one-sided binomial test against chance, and the family of
features is corrected with Holm. Holm's first step is Bonferroni, so requiring
power at ``alpha / m`` guarantees it for every feature whatever the order of the
p values (conservative for all but the smallest). Rating trials use a one-sample
t test against the scale midpoint (statsmodels ``TTestPower``) with effect size d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats
from statsmodels.stats.power import TTestPower

from artifact_schemas.settings import check_settings, setting
from stimuli_builder.config import StudyConfig


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


def binomial_n(p0: float, p1: float, alpha: float, power: float, n_max: int = 100_000) -> tuple[int, float]:
    """Smallest n whose exact one-sided binomial test at ``alpha`` has ``power`` when p = p1.

    Returns (n, achieved power). The critical count c is the smallest k with
    P(X >= k | p0) <= alpha.
    """
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"effect {p1} must lie between chance {p0} and 1")
    for n in range(1, n_max + 1):
        c = int(stats.binom.isf(alpha, n, p0)) + 1  # smallest k with sf(k-1) <= alpha
        while c > 0 and stats.binom.sf(c - 2, n, p0) <= alpha:
            c -= 1
        if c > n:
            continue
        achieved = float(stats.binom.sf(c - 1, n, p1))
        if achieved >= power:
            return n, achieved
    raise ValueError(f"no n <= {n_max} reaches power {power}")


def plan_study(config: StudyConfig, n_features: int, targets: PowerTargets) -> list[PowerRow]:
    """One row per trial type of ``config`` with ``n_features`` selected features."""
    effect, alpha, power, rating_d = targets.effect, targets.alpha, targets.power, targets.rating_d
    k = config.lists.count
    rows = []
    kinds: list[tuple[str, float | None, int | None]] = []
    lv, st = config.label_validation, config.steering
    if lv.enabled:
        if "choice" in lv.formats:
            kinds.append(("label_choice", 1 / (lv.n_foils + 1), lv.per_list))
        if "rating" in lv.formats:
            kinds.append(("label_rating", None, lv.per_list))
    if st.enabled:
        kinds.append(("steering", 0.5 if st.mode == "two_way" else 1 / 3, st.per_list))
    if not kinds:
        raise ValueError(
            "stimuli: plan sizes studies of SAE features (label and steering trials); it has no "
            "power analysis for the mushra and slider trials of your own clips yet"
        )
    a = alpha / n_features
    for kind, chance, per_list in kinds:
        m = min(per_list or n_features, n_features)
        lists_per_feature = (k * m) // n_features  # the fewest lists any feature is in
        if lists_per_feature == 0:
            raise ValueError(
                f"lists.count x per_list = {k * m} < {n_features} features: some {kind} features "
                "would never be presented; add lists or trials per list"
            )
        if chance is None:
            n = math.ceil(
                TTestPower().solve_power(effect_size=rating_d, alpha=a, power=power, alternative="larger")
            )
            achieved, eff = power, rating_d
        else:
            n, achieved = binomial_n(chance, effect, a, power)
            eff = effect
        per_list_needed = math.ceil(n / lists_per_feature)
        rows.append(
            PowerRow(
                kind,
                chance,
                eff,
                n_features,
                a,
                n,
                lists_per_feature,
                per_list_needed,
                per_list_needed * k,
                achieved,
            )
        )
    return rows
