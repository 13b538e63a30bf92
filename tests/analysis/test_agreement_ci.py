"""Agreement CIs that cover (issue 19.1): simulated studies with a known true agreement.

Nominal judgements: each item has a true category out of K (uniform); a rater gives it
with probability p and otherwise a uniformly random category, so two ratings of an item
agree with probability p^2 + (1 - p^2)/K and the population kappa is p^2. Ratings: item
effect ~ N(0, sb^2) plus noise ~ N(0, sw^2), so the population ICC(1) is sb^2/(sb^2+sw^2).
Every item gets a different set of raters, as in a K-list design.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.agreement import Judgements, agreement_with_ci

N_ITEMS, PER_ITEM, N_RATERS = 40, 8, 60


def _design(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    item = np.repeat(np.arange(N_ITEMS), PER_ITEM)
    rater = np.concatenate([rng.choice(N_RATERS, PER_ITEM, replace=False) for _ in range(N_ITEMS)])
    return rater, item


def _nominal(rng: np.random.Generator, p: float, k: int = 4) -> Judgements:
    rater, item = _design(rng)
    truth = rng.integers(0, k, N_ITEMS)[item]
    value = np.where(rng.random(item.size) < p, truth, rng.integers(0, k, item.size))
    return Judgements(rater, item, value, N_RATERS, N_ITEMS)


def _interval(rng: np.random.Generator, icc: float) -> Judgements:
    rater, item = _design(rng)
    effect = rng.normal(0, np.sqrt(icc), N_ITEMS)[item]
    value = effect + rng.normal(0, np.sqrt(1 - icc), item.size)
    return Judgements(rater, item, value, N_RATERS, N_ITEMS)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("statistic", "truth", "make", "replications"),
    [
        ("fleiss", 0.36, lambda rng: _nominal(rng, 0.6), 400),
        ("nominal", 0.36, lambda rng: _nominal(rng, 0.6), 300),
        ("icc1", 0.3, lambda rng: _interval(rng, 0.3), 1000),  # exact F interval: cheap
    ],
)
def test_95_percent_intervals_cover_the_true_agreement(
    statistic: str, truth: float, make: object, replications: int
) -> None:
    """Ordinal and interval alpha share the nominal one's bootstrap; on continuous values
    the krippendorff package's coincidence matrix is too slow to simulate hundreds of times."""
    rng = np.random.default_rng(20261201)  # the data's seed; the bootstrap's are 0, 1, ...
    covered = contained = 0
    for rep in range(replications):
        j = make(rng)  # type: ignore[operator]
        est, low, high = agreement_with_ci(j, statistic, n_boot=200, seed=rep)
        covered += low <= truth <= high
        contained += low <= est <= high
    coverage = covered / replications
    print(f"\n{statistic}: 95% CI coverage {coverage:.3f} over {replications} simulated studies")
    assert contained == replications
    assert 0.93 <= coverage <= 0.97, coverage


def test_a_duplicated_rater_does_not_inflate_the_interval() -> None:
    """The old bootstrap drew raters; a rater drawn twice agreed with its copy on every
    item, so intervals sat above the estimate. Now the interval sits around it."""
    rng = np.random.default_rng(7)
    for statistic in ("fleiss", "nominal"):
        j = _nominal(rng, 0.3)
        est, low, high = agreement_with_ci(j, statistic, n_boot=400)
        assert low < est < high
        assert abs((low + high) / 2 - est) < (high - low) / 4, (statistic, est, low, high)
