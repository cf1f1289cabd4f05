"""Confidence intervals of ranking metrics: a seeded bootstrap over users, paired across models.

Each resample draws the test users with replacement (as multinomial counts) and takes every model's mean over the
same draw, so a difference between two models is measured on identical users and its interval is the paired one.
Intervals are percentile intervals of the resampled means. Pure numpy; the per-user values are small (one row per
test user and model with a hit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PER_USER = {  # metric -> value of one user whose test item is at rank r (1-based) in a list cut at k
    "hr": lambda r, k: (r <= k).astype(np.float64),
    "ndcg": lambda r, k: np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0),
    "mrr": lambda r, k: np.where(r <= k, 1.0 / r, 0.0),
}


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def per_user_values(ranks: np.ndarray, ks) -> dict[tuple[str, int], np.ndarray]:
    """ranks[n_users]: the test item's rank in the user's list (np.inf: not in it) -> (metric, k) -> values."""
    return {(metric, k): f(ranks, k) for k in ks for metric, f in PER_USER.items()}


def bootstrap_means(columns: np.ndarray, resamples: int, seed: int, chunk: int = 50) -> np.ndarray:
    """columns[n_users, m] -> [resamples, m]: the column means over `resamples` draws of the users."""
    n_users = columns.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, columns.shape[1]))
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        weights = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=count).astype(np.float64)
        out[start:start + count] = weights @ columns / n_users
    return out


def intervals(ranks: dict[str, np.ndarray], ks, reference: str | None, resamples: int = 1000, seed: int = 42,
              level: float = 0.95) -> tuple[dict, dict]:
    """Per model and (metric, k): the mean and its interval; and per model other than `reference`: the paired
    difference model - reference with its interval. `ranks` maps model -> ranks over the same users, same order."""
    models = sorted(ranks)
    keys = [(metric, k) for k in ks for metric in PER_USER]
    values = {m: per_user_values(ranks[m], ks) for m in models}
    columns = np.column_stack([values[m][key] for m in models for key in keys])
    draws = bootstrap_means(columns, resamples, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    means = columns.mean(axis=0)
    index = {(m, key): i for i, (m, key) in enumerate((m, key) for m in models for key in keys)}
    single = {m: {key: Interval(float(means[index[m, key]]), float(low[index[m, key]]), float(high[index[m, key]]))
                  for key in keys} for m in models}
    paired: dict[str, dict] = {}
    if reference in ranks:
        for m in models:
            if m == reference:
                continue
            paired[m] = {}
            for key in keys:
                diff = draws[:, index[m, key]] - draws[:, index[reference, key]]
                d_low, d_high = np.quantile(diff, [tail, 1.0 - tail])
                paired[m][key] = Interval(float(means[index[m, key]] - means[index[reference, key]]),
                                          float(d_low), float(d_high))
    return single, paired
