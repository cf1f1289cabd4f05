"""Item-based collaborative filtering: item–item cosine over users' train interactions, in Spark SQL.

Each train interaction is a 1 in a binary user × item matrix X (a user's most recent `max_user_items` train items
only, so that a few very active users do not dominate the co-counts and the self-join stays bounded). Then

    co(i, j)  = users who have both i and j                      (a self-join on user, pairs i < j, mirrored)
    sim(i, j) = co(i, j) / (sqrt(n_i * n_j) + shrinkage)         (n_i = users who have i; shrinkage 0: cosine)

Each item's `neighbors` most similar items (ties by neighbour index) are kept in the Delta table `item_neighbors`.
A user's list scores the neighbours of their `history` most recent items (train + validation, by seq), the item
b places back from the newest weighted `recency_decay ** b`:

    score(u, j) = sum over recent items i of weight(i) * sim(i, j)

normalised by the user's best score into tier 1 (1, 2]; popularity pads below (tier 0), seen items excluded.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import popular_candidates, rank_candidates, train_rows
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import HISTORY_SPLITS

TIER_ITEMCF = 1.0


@dataclass(frozen=True)
class ItemCFConfig:
    neighbors: int = 50                # K: most similar items kept per item in item_neighbors
    shrinkage: float = 0.0             # added to the cosine's denominator: damps pairs seen by few users
    max_user_items: int | None = 500   # a user's most recent train items that count (null: all)
    history: int = 20                  # the user's most recent items whose neighbours are scored
    recency_decay: float = 0.8         # weight of the item b back from the newest: recency_decay ** b

    def __post_init__(self):
        for name in ("neighbors", "history"):
            if getattr(self, name) < 1:
                raise RecsysError(f"baselines.itemcf.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_user_items is not None and self.max_user_items < 2:
            raise RecsysError(f"baselines.itemcf.max_user_items must be null or at least 2, "
                              f"got {self.max_user_items!r}")
        if self.shrinkage < 0:
            raise RecsysError(f"baselines.itemcf.shrinkage must be >= 0, got {self.shrinkage!r}")
        if not 0 < self.recency_decay <= 1:
            raise RecsysError(f"baselines.itemcf.recency_decay must be in (0, 1], got {self.recency_decay!r}")


def _newest_first(rows: DataFrame) -> DataFrame:
    """rows with `back`: 0 for the user's newest row (by seq), 1 for the one before, ..."""
    return rows.withColumn("back", F.row_number().over(Window.partitionBy("user_idx").orderBy(F.col("seq").desc()))
                           - 1)


def user_items(interactions: DataFrame, max_user_items: int | None) -> DataFrame:
    """user_idx, item_idx: the binary train matrix, each user cut to their most recent `max_user_items` items."""
    rows = train_rows(interactions).select("user_idx", "item_idx", "seq")
    if max_user_items is not None:
        rows = _newest_first(rows).where(F.col("back") < max_user_items)
    return rows.select("user_idx", "item_idx").distinct()


def item_neighbors(interactions: DataFrame, config: ItemCFConfig) -> DataFrame:
    """item_idx, neighbor_idx, similarity, co_count, rank (1 = most similar): each item's top `neighbors`."""
    pairs = user_items(interactions, config.max_user_items)
    counts = pairs.groupBy("item_idx").agg(F.count(F.lit(1)).alias("n"))
    a, b = pairs.alias("a"), pairs.alias("b")
    upper = (a.join(b, (F.col("a.user_idx") == F.col("b.user_idx")) & (F.col("a.item_idx") < F.col("b.item_idx")))
             .groupBy(F.col("a.item_idx").alias("i"), F.col("b.item_idx").alias("j"))
             .agg(F.count(F.lit(1)).alias("co_count")))
    both = upper.unionByName(upper.select(F.col("j").alias("i"), F.col("i").alias("j"), "co_count"))
    n_i = counts.select(F.col("item_idx").alias("i"), F.col("n").alias("n_i"))
    n_j = counts.select(F.col("item_idx").alias("j"), F.col("n").alias("n_j"))
    scored = both.join(n_i, "i").join(n_j, "j").withColumn(
        "similarity", F.col("co_count") / (F.sqrt(F.col("n_i") * F.col("n_j")) + F.lit(float(config.shrinkage))))
    best_first = Window.partitionBy("i").orderBy(F.col("similarity").desc(), F.col("j").asc())
    return (scored.withColumn("rank", F.row_number().over(best_first))
            .where(F.col("rank") <= config.neighbors)
            .select(F.col("i").cast("int").alias("item_idx"), F.col("j").cast("int").alias("neighbor_idx"),
                    F.col("similarity").cast("double"), F.col("co_count").cast("long"), F.col("rank").cast("int")))


def recent_history(interactions: DataFrame, config: ItemCFConfig) -> DataFrame:
    """user_idx, item_idx, weight: the user's `history` newest train+validation items, recency-weighted."""
    rows = interactions.where(F.col("split").isin(*HISTORY_SPLITS)).select("user_idx", "item_idx", "seq")
    recent = _newest_first(rows).where(F.col("back") < config.history)
    return recent.select("user_idx", "item_idx", F.pow(F.lit(config.recency_decay), F.col("back")).alias("weight"))


def itemcf_scores(interactions: DataFrame, neighbors: DataFrame, config: ItemCFConfig) -> DataFrame:
    """user_idx, item_idx, score: the recency-weighted sum of similarities (seen items not yet removed)."""
    recent = recent_history(interactions, config)
    return (recent.join(neighbors, "item_idx")
            .groupBy("user_idx", F.col("neighbor_idx").alias("item_idx"))
            .agg(F.sum(F.col("weight") * F.col("similarity")).alias("score")))


def recommend_itemcf(interactions: DataFrame, neighbors: DataFrame, popularity: DataFrame, k: int,
                     config: ItemCFConfig) -> DataFrame:
    scores = itemcf_scores(interactions, neighbors, config)
    best = F.max("score").over(Window.partitionBy("user_idx"))
    tiered = scores.where(F.col("score") > 0).select(
        "user_idx", "item_idx", (F.lit(TIER_ITEMCF) + F.col("score") / best).alias("score"))
    return rank_candidates(tiered.unionByName(popular_candidates(interactions, popularity, k)), interactions, k)
