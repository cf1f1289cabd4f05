"""Ordering of each user's history and the two evaluation splits (docs/SCHEMAS.md, `interactions`).

- History order: timestamp, then a tie-break for ratings given in the same second: `hash` (the default), a seeded
  xxhash64 of (userId, movieId) (movieId after it, so even a hash collision orders deterministically), or `movieId`.
  Ordering ties by movieId plants an "ids go up" signal that sequence models learn; the hash does not.
- Leave-last-out: a user's last interaction is `test`, the one before `validation`, the rest `train`.
- Global temporal split: `train` up to the cut-off timestamp (the exact `quantile` of all timestamps), `test` after.
"""
from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_core.ties import TIE_BREAKS
from recsys_spark.errors import RecsysError

SECONDS_PER_DAY = 86_400


def history_order(tie_break: str = "hash", seed: int = 42) -> list[Column]:
    """Sort key of a user's history, oldest first."""
    if tie_break == "movieId":
        return [F.col("timestamp"), F.col("movieId")]
    if tie_break == "hash":
        return [F.col("timestamp"), F.xxhash64(F.lit(seed).cast("long"), F.col("userId"), F.col("movieId")),
                F.col("movieId")]
    raise RecsysError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")


def add_sequence(interactions: DataFrame, tie_break: str = "hash", seed: int = 42) -> DataFrame:
    """Add `seq` (1-based position in the user's history) and `split` (leave-last-out).

    One window, partitioned by userId: on input already hash-partitioned by userId it adds no shuffle.
    """
    ordered = Window.partitionBy("userId").orderBy(*history_order(tie_break, seed))
    whole_history = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    seq, n = F.row_number().over(ordered), F.count(F.lit(1)).over(whole_history)
    with_seq = interactions.withColumns({"seq": seq, "_n": n})
    split = (F.when(F.col("seq") == F.col("_n"), F.lit("test"))
             .when(F.col("seq") == F.col("_n") - 1, F.lit("validation"))
             .otherwise(F.lit("train")))
    return with_seq.withColumn("split", split).drop("_n")


def _rank_point(counts: list[tuple[int, int]], rank: int) -> tuple[int, int]:
    """(key, rank left inside that key) of the key holding the rank-th smallest value; counts sorted by key."""
    seen = 0
    for key, rows in counts:
        if seen + rows >= rank:
            return key, rank - seen
        seen += rows
    raise AssertionError(f"rank {rank} beyond {seen} rows")


def temporal_cutoff(interactions: DataFrame, quantile: float = 0.8, rows: int | None = None) -> int | None:
    """The exact `quantile` of the timestamps: the smallest t with at least ceil(quantile * n) rows at or before t.

    Two small aggregations instead of a global sort: rows per day (a few thousand days) locate the day that holds
    the rank, rows per second inside that day locate the second. Exact and deterministic (percentile_approx is
    neither). None when there are no rows.
    """
    if not 0 < quantile <= 1:
        raise RecsysError(f"temporal quantile must be in (0, 1], got {quantile}")
    n = interactions.count() if rows is None else rows
    if n == 0:
        return None
    rank = max(1, math.ceil(quantile * n))
    day = F.floor(F.col("timestamp") / SECONDS_PER_DAY)
    per_day = sorted(interactions.groupBy(day.alias("day")).count().collect())
    cut_day, rank_in_day = _rank_point([(r["day"], r["count"]) for r in per_day], rank)
    per_second = sorted(interactions.where(day == cut_day).groupBy("timestamp").count().collect())
    cutoff, _ = _rank_point([(r["timestamp"], r["count"]) for r in per_second], rank_in_day)
    return int(cutoff)


def add_temporal_split(interactions: DataFrame, cutoff: int | None) -> DataFrame:
    label = F.when(F.col("timestamp") <= F.lit(cutoff), F.lit("train")).otherwise(F.lit("test"))
    return interactions.withColumn("temporal_split", label if cutoff is not None else F.lit("test"))
