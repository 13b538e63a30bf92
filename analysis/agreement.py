"""Inter-rater agreement: Fleiss' kappa, Krippendorff's alpha, ICC, Cohen's kappa, bootstrap CIs.

Tidy input: one row per judgement, with columns naming the item (what was judged,
e.g. a feature), the rater (participant) and the response. The statistics run on
integer codes (numpy) so that a bootstrap over participants, which recomputes them
hundreds of times, takes seconds on a 100k-response export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import cohens_kappa

Level = Literal["nominal", "ordinal", "interval", "ratio"]


@dataclass(frozen=True)
class Judgements:
    """Judgements as codes: rater and item indices, and the value (category code or number)."""

    rater: np.ndarray
    item: np.ndarray
    value: np.ndarray
    n_raters: int
    n_items: int

    @classmethod
    def from_frame(
        cls, data: pd.DataFrame, item: str, rater: str, value: str, categorical: bool
    ) -> Judgements:
        data = data.dropna(subset=[value])
        r, _ = pd.factorize(data[rater])
        i, _ = pd.factorize(data[item])
        v = pd.factorize(data[value])[0] if categorical else data[value].to_numpy(dtype=float)
        return cls(r, i, np.asarray(v), int(r.max(initial=-1)) + 1, int(i.max(initial=-1)) + 1)


def _fleiss(j: Judgements) -> float:
    n_cats = int(j.value.max(initial=-1)) + 1
    counts = np.zeros((j.n_items, max(n_cats, 1)))
    np.add.at(counts, (j.item, j.value.astype(int)), 1)
    n_i = counts.sum(axis=1)
    keep = n_i >= 2
    counts, n_i = counts[keep], n_i[keep]
    if counts.shape[0] == 0 or n_cats < 2:
        return float("nan")
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = (np.sum(counts**2, axis=1) - n_i) / (n_i * (n_i - 1))
    p_e = float(np.sum(p_j**2))
    return float((p_i.mean() - p_e) / (1 - p_e)) if p_e < 1 else float("nan")


def _kripp(j: Judgements, level: Level) -> float:
    matrix = np.full((j.n_raters, j.n_items), np.nan)
    matrix[j.rater, j.item] = j.value
    pairable = np.sum(np.isfinite(matrix), axis=0) >= 2
    if not pairable.any() or np.unique(j.value).size < 2:
        return float("nan")
    try:
        return float(krippendorff.alpha(reliability_data=matrix[:, pairable], level_of_measurement=level))
    except ValueError:  # no variation to agree on
        return float("nan")


def _icc(j: Judgements) -> tuple[float, float, float, int]:
    sizes = np.bincount(j.item, minlength=j.n_items).astype(float)
    keep = sizes >= 2
    n = int(keep.sum())
    if n < 2:
        return float("nan"), float("nan"), float("nan"), n
    sums = np.bincount(j.item, weights=j.value, minlength=j.n_items)
    sq = np.bincount(j.item, weights=j.value**2, minlength=j.n_items)
    sizes, sums, sq = sizes[keep], sums[keep], sq[keep]
    means = sums / sizes
    grand = sums.sum() / sizes.sum()
    ms_between = float(np.sum(sizes * (means - grand) ** 2) / (n - 1))
    ms_within = float(np.sum(sq - sizes * means**2) / (sizes.sum() - n))
    # Unequal numbers of ratings per item: k0 of Snedecor & Cochran (ANOVA average size).
    k0 = float((sizes.sum() - (sizes**2).sum() / sizes.sum()) / (n - 1))
    denom = ms_between + (k0 - 1) * ms_within
    if denom <= 0:  # every rating equal: no variance to attribute
        return float("nan"), float("nan"), k0, n
    icc1 = (ms_between - ms_within) / denom
    icc1k = (ms_between - ms_within) / ms_between if ms_between > 0 else float("nan")
    return float(icc1), float(icc1k), k0, n


def fleiss_kappa(data: pd.DataFrame, item: str, response: str) -> float:
    """Fleiss (1971) kappa for categorical responses.

    In a K-list design items get different numbers of raters, which statsmodels'
    ``fleiss_kappa`` refuses; this is the same formula with each item's agreement
    computed from its own number of ratings (it equals Fleiss' when all are equal).

    >>> table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    ...          [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    >>> pairs = [(i, c) for i, row in enumerate(table) for c, n in enumerate(row) for _ in range(n)]
    >>> long = pd.DataFrame(pairs, columns=["item", "response"])
    >>> round(fleiss_kappa(long, "item", "response"), 3)  # Fleiss (1971), as on Wikipedia
    0.21
    """
    return _fleiss(Judgements.from_frame(data.assign(_r=0), item, "_r", response, categorical=True))


def krippendorff_alpha(
    data: pd.DataFrame, item: str, rater: str, value: str, level: Level = "nominal"
) -> float:
    """Krippendorff's alpha (nominal, ordinal, interval or ratio), missing judgements allowed.

    Uses the ``krippendorff`` package; the tests check Krippendorff's (2011) worked
    example (nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797).
    """
    categorical = level == "nominal" and not pd.api.types.is_numeric_dtype(data[value])
    return _kripp(Judgements.from_frame(data, item, rater, value, categorical), level)


def icc(data: pd.DataFrame, item: str, rating: str) -> pd.DataFrame:
    """Intraclass correlations ICC(1,1) and ICC(1,k) (Shrout & Fleiss 1979, one-way random).

    One-way because in a K-list design each item is rated by a different set of
    participants; items with fewer than two ratings are dropped and k is the
    ANOVA average number of ratings per item. Written out here because
    scipy/statsmodels have no ICC and pingouin's needs a complete item x rater table.
    """
    i1, ik, k0, n = _icc(Judgements.from_frame(data.assign(_r=0), item, "_r", rating, categorical=False))
    return pd.DataFrame(
        [
            {"type": "ICC1", "icc": i1, "n_items": n, "k": k0},
            {"type": "ICC1k", "icc": ik, "n_items": n, "k": k0},
        ]
    )


def cohen_kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa between two categorical ratings of the same items (statsmodels)."""
    cats = sorted(set(a.dropna()) | set(b.dropna()), key=str)
    if len(cats) < 2:
        return float("nan")
    table = pd.crosstab(pd.Categorical(a, cats), pd.Categorical(b, cats), dropna=False).to_numpy()
    return float(cohens_kappa(table).kappa)


STATISTICS: dict[str, Callable[[Judgements], float]] = {
    "fleiss": _fleiss,
    "nominal": lambda j: _kripp(j, "nominal"),
    "ordinal": lambda j: _kripp(j, "ordinal"),
    "interval": lambda j: _kripp(j, "interval"),
    "icc1": lambda j: _icc(j)[0],
}


def agreement_with_ci(
    j: Judgements, statistic: str, n_boot: int = 200, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, ci_low, ci_high): a percentile CI from resampling whole raters with replacement."""
    fn = STATISTICS[statistic]
    estimate = fn(j)
    if j.n_raters < 2 or n_boot == 0:
        return estimate, float("nan"), float("nan")
    rows_of = np.split(np.argsort(j.rater, kind="stable"), np.cumsum(np.bincount(j.rater))[:-1])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, j.n_raters, j.n_raters)
        idx = np.concatenate([rows_of[p] for p in pick])
        new_rater = np.repeat(np.arange(j.n_raters), [len(rows_of[p]) for p in pick])
        v = fn(Judgements(new_rater, j.item[idx], j.value[idx], j.n_raters, j.n_items))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return estimate, float("nan"), float("nan")
    return estimate, float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))
