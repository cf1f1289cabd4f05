"""The bootstrap intervals (recsys_spark.intervals) against what statistics says they must be."""
from __future__ import annotations

import math

import numpy as np

from recsys_spark.intervals import bootstrap_means, intervals, per_user_values


def test_hit_rate_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    n, p = 4000, 0.1
    ranks = np.where(rng.random(n) < p, 1.0, np.inf)
    single, _ = intervals({"m": ranks}, [10], None, resamples=2000, seed=1)
    hr = single["m"]["hr", 10]
    mean = float((ranks <= 10).mean())
    half = 1.96 * math.sqrt(mean * (1 - mean) / n)
    assert hr.value == mean
    assert abs((hr.high - hr.low) / 2 - half) < 0.1 * half
    assert abs((hr.high + hr.low) / 2 - mean) < 0.2 * half


def test_paired_difference_is_exact_for_identical_models_and_tight_when_paired():
    rng = np.random.default_rng(1)
    n = 3000
    reference = np.where(rng.random(n) < 0.2, rng.integers(1, 11, n).astype(float), np.inf)
    better = reference.copy()
    better[:60] = 1.0  # 60 users more hit at rank 1: a 2-point gain on exactly the same users otherwise
    _, paired = intervals({"ref": reference, "same": reference.copy(), "better": better}, [10], "ref",
                          resamples=1000, seed=2)
    same = paired["same"]["hr", 10]
    assert same.value == same.low == same.high == 0.0
    gain = paired["better"]["hr", 10]
    assert gain.excludes_zero and gain.low > 0
    # unpaired intervals of the two would overlap; the paired one is far narrower than their widths
    single, _ = intervals({"ref": reference, "better": better}, [10], None, resamples=1000, seed=2)
    assert single["better"]["hr", 10].low < single["ref"]["hr", 10].high
    assert gain.high - gain.low < 0.5 * (single["ref"]["hr", 10].high - single["ref"]["hr", 10].low)


def test_per_user_values_and_resampled_means():
    ranks = np.array([1.0, 3.0, 12.0, np.inf])
    values = per_user_values(ranks, [10])
    np.testing.assert_allclose(values["hr", 10], [1, 1, 0, 0])
    np.testing.assert_allclose(values["ndcg", 10], [1, 0.5, 0, 0])
    np.testing.assert_allclose(values["mrr", 10], [1, 1 / 3, 0, 0])
    draws = bootstrap_means(np.ones((5, 2)), 7, seed=0, chunk=3)
    np.testing.assert_allclose(draws, np.ones((7, 2)))
    a, b = bootstrap_means(np.arange(10.0)[:, None], 50, seed=9), bootstrap_means(np.arange(10.0)[:, None], 50, seed=9)
    np.testing.assert_array_equal(a, b)
