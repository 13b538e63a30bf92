"""Power planning: how many participants per list a study needs.

Each trial type is sized for the test the report runs on it (docs/analysis.md).

For choice trials (label choice, steering detection) each feature is tested on
its own with an exact one-sided binomial test against chance, and the family of
features is corrected with Holm. Holm's first step is Bonferroni, so requiring
power at ``alpha / m`` guarantees it for every feature whatever the order of the
p values (conservative for all but the smallest). Rating trials use a one-sample
t test against the scale midpoint (statsmodels ``TTestPower``) with effect size d.

A study of your own clips (``plan_own``) is sized per condition, Holm over the conditions:

* **MUSHRA** and **slider**: the report's condition difference from the reference is a
  paired comparison of assessors (its t test has assessors - 1 df), so a two-sided paired
  t test with effect size d_z (``slider_d``). Every assessor rates every condition of a
  MUSHRA screen; a slider study whose lists each rate ``slider.per_list`` of its N clips
  needs N / per_list times the assessors for each clip to be rated as often (an
  approximation of the mixed model, which also uses the partial overlaps).
* **ABX**: the report tests the participants' own proportions correct against 1/2 (one
  sided t); a participant answers items x repeats trials of each condition, so the sd
  of their proportions is sqrt(p (1 - p) / trials + ``abx_sd``^2) and d = (p - 1/2) / sd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from scipy import stats
from statsmodels.stats.power import TTestPower

from artifact_schemas.settings import check_settings, setting
from stimuli_builder.bundle import load_bundle, select_features
from stimuli_builder.conditions import OwnStimuli, load_conditions
from stimuli_builder.config import StudyConfig, load_config


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
    """One row per trial type of a study of your own clips (``config.stimuli``); a row's
    ``features`` are the conditions its test compares with the reference."""
    k = config.lists.count
    items = stimuli.items
    rows = []
    if config.mushra.enabled:
        compared = sorted(
            {s.condition for i in items for s in (*i.anchors, *i.conditions)} | set(config.mushra.anchors)
        )
        rows.append(_t_row("mushra", compared, len(items), targets.slider_d, "two-sided", k, targets))
    sl = config.slider
    if sl.enabled:
        rated = [
            (i.name, s)
            for i in items
            for s in i.stimuli
            if (s.condition in sl.conditions if sl.conditions else s.role == "condition")
        ]
        conditions = sorted({s.condition for _, s in rated})
        references = sorted({s.condition for _, s in rated if s.role == "reference"})
        versus = references[0] if references else conditions[0]
        compared = [c for c in conditions if c != versus]
        if not compared:
            raise ValueError(
                "slider.conditions: the report compares each condition with the reference "
                f"({versus!r}); rate at least two conditions for it to have a test to size"
            )
        share = (sl.per_list or len(rated)) / len(rated)
        per_condition = len(rated) / len(conditions)  # ratings of a condition per full pass
        rows.append(
            _t_row("slider", compared, per_condition, targets.slider_d, "two-sided", k, targets, share)
        )
    ab = config.abx
    if ab.enabled:
        compared = sorted(
            {
                s.condition
                for i in items
                for s in i.stimuli
                if s.role != "reference"
                and (s.condition in ab.conditions if ab.conditions else s.role == "condition")
            }
        )
        if not compared:
            raise ValueError("abx.conditions: conditions to compare with the reference (the CSV has none)")
        trials = len(items) * ab.repeats  # per participant and condition (every list has all)
        p = targets.abx_correct
        d = (p - 0.5) / math.sqrt(p * (1 - p) / trials + targets.abx_sd**2)
        rows.append(_t_row("abx", compared, trials, d, "larger", k, targets, chance=0.5, shown=p))
    if not rows:
        raise ValueError("mushra.enabled: a study of your own clips needs mushra, slider or abx trials")
    return rows


def _t_row(
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
