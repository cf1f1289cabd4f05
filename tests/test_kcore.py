"""The ETL's k-core filter: the driver's numpy iterations (small inputs) and Spark's (large ones) keep the same users
and items, in the same number of iterations, converged or stopped by etl.kcore.max_iterations."""
from __future__ import annotations

import numpy as np
import pytest

from recsys_spark import kcore
from recsys_spark.etl_config import KcoreConfig


@pytest.mark.parametrize("max_iterations", [30, 2])
def test_the_driver_and_spark_keep_the_same_core(spark, monkeypatch, max_iterations):
    rng = np.random.default_rng(3)
    # a long tail of users and items with few rows: dropping them takes a cascade of several iterations
    users, items = rng.zipf(1.6, 600) % 90, rng.zipf(1.4, 600) % 120
    pairs = spark.createDataFrame(sorted(set(zip(users.tolist(), items.tolist()))), "userId long, movieId long")
    config = KcoreConfig(min_user_interactions=4, min_item_interactions=3, max_iterations=max_iterations)

    def core():
        kept_users, kept_items, iterations, converged = kcore.kcore_keep(pairs, config)
        found = (sorted(r.userId for r in kept_users.collect()), sorted(r.movieId for r in kept_items.collect()))
        kept_users.unpersist(), kept_items.unpersist()
        return found, iterations, converged

    on_driver = core()
    monkeypatch.setattr(kcore, "DRIVER_PAIRS", 0)
    in_spark = core()
    assert on_driver == in_spark
    (kept_users, kept_items), iterations, converged = on_driver
    assert kept_users and kept_items and len(kept_users) < len(set(users.tolist()))
    assert (iterations, converged) == ((iterations, True) if max_iterations == 30 else (2, False))
    assert max_iterations == 2 or iterations >= 3  # a cascade, not one pass
