"""How many movies each user rates (`allocate_user_counts`).

Activity = 20 + a log-normal(sigma 1.39) share of the remaining ratings, so the
minimum is 20 (when ratings/users allows it), the median ~ 70 and the mean the requested ratings/users; capped at
55% of the movies (ML-25M's heaviest user rated 55%); totals are exact.
"""
from __future__ import annotations

import numpy as np

from recsys_data.config import GeneratorConfig, rng_for


def allocate_user_counts(cfg: GeneratorConfig) -> np.ndarray:
    """Ratings per user: exactly n_ratings in total, >= min_ratings_per_user where possible, log-normal tail."""
    rng = rng_for(cfg, 3)
    n_users, total = cfg.n_users, cfg.n_ratings
    floor = min(cfg.min_ratings_per_user, total // n_users, cfg.n_items)
    cap = min(cfg.n_items, max(int(np.ceil(0.55 * cfg.n_items)), -(-total // n_users)))
    counts = np.full(n_users, floor, dtype=np.int64)
    weight = rng.lognormal(0.0, 1.39, n_users)
    remaining = total - counts.sum()
    while remaining > 0:
        room = cap - counts
        open_ = room > 0
        share = np.floor(remaining * weight * open_ / weight[open_].sum()).astype(np.int64)
        add = np.minimum(share, room)
        if add.sum() == 0:  # fewer than one rating per open user left: give them to the heaviest open users
            order = np.argsort(-(weight * open_), kind="stable")[:remaining]
            add = np.zeros(n_users, np.int64)
            add[order] = 1
        counts += add
        remaining -= int(add.sum())
    return counts
