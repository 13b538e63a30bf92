"""Power planning: how many participants per list a study needs.

Each trial type is sized for the test the report runs on it (docs/analysis.md).

For choice trials (label choice, steering detection) each feature is tested on
its own with an exact one-sided binomial test against chance, and the family of
features is corrected with Holm. Holm's first step is Bonferroni, so requiring
power at ``alpha / m`` guarantees it for every feature whatever the order of the
p values (conservative for all but the smallest). Rating trials use a one-sample
t test against the scale midpoint (statsmodels ``TTestPower``) with effect size d.

A study of your own clips (``plan_own``) is sized per condition, Holm over the
conditions, each trial type by its own module (``trial_types``: MUSHRA and slider trials
by a paired t test of each condition against the reference, ABX by a one-sided t test of
the participants' proportions correct against 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from scipy import stats
from statsmodels.stats.power import TTestPower

from stimuli_builder.bundle import load_bundle, select_features
from stimuli_builder.conditions import OwnStimuli, load_conditions
from stimuli_builder.config import StudyConfig, load_config
from stimuli_builder.power import PowerRow, PowerTargets, t_test_n

__all__ = [
    "Plan",
    "PowerRow",
    "PowerTargets",
    "binomial_n",
    "plan_config",
    "plan_own",
    "plan_study",
    "t_test_n",
]


@dataclass(frozen=True)
class Plan:
    """What ``stimuli-builder plan`` prints."""

    rows: list[PowerRow]
    tested: str  # "12 features", "3 items"
    unit: str  # what a row's tests are about: "feature" or "condition"
    lists: int


def plan_config(
    config_path: Path, targets: PowerTargets, bundle: Path | None = None, features: int | None = None
) -> Plan:
    """The plan of the study ``config_path``: of its own clips (the conditions CSV is read),
    or of SAE features (``features`` of them, or those it selects from the run ``bundle``)."""
    config, _ = load_config(config_path)
    if config.stimuli is not None:
        stimuli = load_conditions(
            config_path.parent / config.stimuli.conditions, reserved=config.mushra.anchors
        )
        rows = plan_own(config, stimuli, targets)
        return Plan(rows, f"{len(stimuli.items)} items", "condition", config.lists.count)
    if features is None:
        if bundle is None:
            raise ValueError("give --bundle RUN_DIR or --features N")
        features = len(select_features(load_bundle(bundle), config, config_path))
    return Plan(plan_study(config, features, targets), f"{features} features", "feature", config.lists.count)


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
        raise ValueError("label_validation.enabled: a study of SAE features needs label or steering trials")
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


def plan_own(config: StudyConfig, stimuli: OwnStimuli, targets: PowerTargets) -> list[PowerRow]:
    """One row per trial type of a study of your own clips (``config.stimuli``), each sized
    by its type's module (``trial_types``); a row's ``features`` are the conditions its
    test compares with the reference."""
    rows = [t.plan_row(stimuli, section, config.lists.count, targets) for t, section in config.own_types()]
    if not rows:
        raise ValueError("mushra.enabled: a study of your own clips needs mushra, slider or abx trials")
    return rows
