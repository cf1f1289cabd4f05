"""History order, leave-last-out and the global temporal split (recsys_spark.splits) on small hand-made frames."""
from __future__ import annotations

import math
import random

import pytest
from pyspark.sql import functions as F

from recsys_spark.errors import RecsysError
from recsys_spark.splits import add_sequence, add_temporal_split, history_order, temporal_cutoff

COLUMNS = "userId long, movieId long, rating double, timestamp long"


def frame(spark, rows):
    return spark.createDataFrame([(u, m, 4.0, t) for u, m, t in rows], COLUMNS)


def by_user(df) -> dict[int, list[tuple[int, int, str]]]:
    """userId -> [(seq, movieId, split)] in seq order."""
    out: dict[int, list] = {}
    for r in df.orderBy("userId", "seq").collect():
        out.setdefault(r.userId, []).append((r.seq, r.movieId, r.split))
    return out


def test_leave_last_out_for_one_two_and_many_interactions(spark):
    rows = [(1, 10, 100),
            (2, 10, 200), (2, 11, 100),
            (3, 12, 300), (3, 10, 100), (3, 13, 400), (3, 11, 200)]
    got = by_user(add_sequence(frame(spark, rows)))
    assert got[1] == [(1, 10, "test")]
    assert got[2] == [(1, 11, "validation"), (2, 10, "test")]
    assert got[3] == [(1, 10, "train"), (2, 11, "train"), (3, 12, "validation"), (4, 13, "test")]


def test_movieid_tie_break_orders_same_second_by_movie(spark):
    rows = [(1, 30, 100), (1, 10, 100), (1, 20, 100), (1, 5, 200), (1, 99, 50)]
    got = by_user(add_sequence(frame(spark, rows), tie_break="movieId"))
    assert [m for _, m, _ in got[1]] == [99, 10, 20, 30, 5]


def test_hash_tie_break_is_seeded_deterministic_and_only_breaks_ties(spark):
    movies = list(range(1, 41))
    rows = [(7, m, 1000) for m in movies] + [(7, 500, 10), (7, 400, 5000)]
    df = frame(spark, rows)

    def order(seed):
        return [m for _, m, _ in by_user(add_sequence(df, tie_break="hash", seed=seed))[7]]

    first, again, other = order(1), order(1), order(2)
    assert first == again
    assert first[0] == 500 and first[-1] == 400  # distinct timestamps still decide
    tied = first[1:-1]
    assert sorted(tied) == movies and tied != movies  # not the ascending-id order
    assert other[1:-1] != tied  # the seed changes the order
    # ...and it is the order of xxhash64(seed, userId, movieId)
    hashed = (df.where(F.col("timestamp") == 1000)
              .select("movieId", F.xxhash64(F.lit(1).cast("long"), "userId", "movieId").alias("h"))
              .orderBy("h", "movieId").collect())
    assert tied == [r.movieId for r in hashed]


def test_the_default_tie_break_is_the_seeded_hash(spark):
    df = frame(spark, [(7, m, 1000) for m in range(1, 41)])
    default = [m for _, m, _ in by_user(add_sequence(df))[7]]
    assert default == [m for _, m, _ in by_user(add_sequence(df, tie_break="hash", seed=42))[7]]
    assert default != sorted(default)  # not the ascending ids of tie_break=movieId
    assert [str(c) for c in history_order()] == [str(c) for c in history_order("hash", 42)]


def test_unknown_tie_break_is_a_clear_error():
    with pytest.raises(RecsysError, match="tie_break"):
        history_order("random")


def test_temporal_cutoff_is_the_exact_quantile(spark):
    rng = random.Random(5)
    # spread over many days, with many ties
    stamps = [rng.choice([rng.randrange(10**9, 10**9 + 90 * 86_400), 10**9 + 40 * 86_400 + 17]) for _ in range(2001)]
    df = frame(spark, [(i % 50 + 1, i + 1, t) for i, t in enumerate(stamps)]).cache()
    ordered = sorted(stamps)
    for q in (0.8, 0.01, 1.0):
        expected = ordered[math.ceil(q * len(stamps)) - 1]
        assert temporal_cutoff(df, q, rows=len(stamps)) == expected, q
    cutoff = ordered[math.ceil(0.8 * len(stamps)) - 1]
    labels = add_temporal_split(df, cutoff).groupBy("temporal_split").count().collect()
    counts = {r.temporal_split: r["count"] for r in labels}
    assert counts["train"] == sum(t <= cutoff for t in stamps) >= math.ceil(0.8 * len(stamps))
    assert counts["test"] == len(stamps) - counts["train"]


def test_temporal_cutoff_edge_cases(spark):
    assert temporal_cutoff(frame(spark, []), 0.8) is None
    assert temporal_cutoff(frame(spark, [(1, 1, 42)]), 0.8) == 42
    with pytest.raises(RecsysError, match="quantile"):
        temporal_cutoff(frame(spark, [(1, 1, 42)]), 0.0)
