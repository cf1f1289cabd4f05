"""Random small user histories for the item-item baselines' tests (ItemCF, EASE), and their interactions frame."""
from __future__ import annotations

import numpy as np


def random_histories(seed: int, n_users: int, n_items: int, first_item: int) -> dict[int, list[int]]:
    """user_idx -> 3..14 distinct items numbered from `first_item`, oldest first (the last one is test, the one
    before validation); some items far more popular than others."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_items) + 0.1
    return {u: [int(i) + first_item for i in rng.choice(n_items, size=int(rng.integers(3, 15)), replace=False,
                                                        p=weights / weights.sum())]
            for u in range(1, n_users + 1)}


def interactions_frame(spark, histories: dict[int, list[int]]):
    rows = [(u, item, seq, "test" if seq == len(items) else "validation" if seq == len(items) - 1 else "train")
            for u, items in histories.items() for seq, item in enumerate(items, 1)]
    return spark.createDataFrame(rows, "user_idx int, item_idx int, seq int, split string").cache()
