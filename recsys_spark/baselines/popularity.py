"""Popularity: items ranked by their count of train interactions, globally or over a recent window."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import CATALOGUE_ROW_BLOCK, PopularityRow, popularity_scores, train_rows
from recsys_spark.blocked_topk import blocked_top_k
from recsys_core.ties import Ties
from recsys_core.config import POSITIVE, Config, checked

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PopularityConfig(Config):
    section = "baselines.popularity"

    # None: global train counts; N: only the last N days before the train cut-off
    recent_days: int | None = checked(None, POSITIVE)


def item_popularity(interactions: DataFrame, items: DataFrame, recent_days: int | None = None) -> DataFrame:
    """item_idx, train_count, recent_count, score in [0, 1], pop_rank (1 = most popular) over the whole catalogue.

    The catalogue is every item with an item_idx; items without train interactions score 0 and come last (by
    item_idx), so a list can always be filled to k with items the user has not seen.

    Global: score = train_count / max train_count. Recent window (the last `recent_days` days before the train
    cut-off, i.e. the newest train timestamp): the recent count orders first and the global count breaks its ties,
    score = (recent_count + train_count / (max train_count + 1)) / (max recent_count + 1), so items nobody rated in
    the window still follow, by global count, and every user can be given k items.
    """
    train = train_rows(interactions)
    if recent_days is None:
        in_window = F.lit(False)
    else:
        cutoff = train.agg(F.max("timestamp")).first()[0]
        in_window = F.col("timestamp") > F.lit((cutoff or 0) - recent_days * SECONDS_PER_DAY)
    counts = train.groupBy("item_idx").agg(
        F.count(F.lit(1)).alias("train_count"),
        F.sum(F.when(in_window, 1).otherwise(0)).alias("recent_count"))
    catalogue = items.where(F.col("item_idx").isNotNull()).select("item_idx").distinct()
    counts = catalogue.join(counts, "item_idx", "left").fillna(0, ["train_count", "recent_count"])
    everything = Window.partitionBy()  # the item list is small (tens of thousands of rows)
    max_train = F.max("train_count").over(everything)
    if recent_days is None:
        score = F.when(max_train > 0, F.col("train_count") / max_train).otherwise(F.lit(0.0))  # an empty train split
    else:
        score = ((F.col("recent_count") + F.col("train_count") / (max_train + 1))
                 / (F.max("recent_count").over(everything) + 1))
    scored = counts.withColumn("score", score.cast("double"))
    order = Window.orderBy(F.col("score").desc(), F.col("item_idx").asc())
    return scored.withColumn("pop_rank", F.row_number().over(order))


def recommend_popularity(users: DataFrame, popularity: DataFrame, k: int, ties: Ties) -> DataFrame:
    """The k most popular items each user (user_idx, seen: common.seen_as_of) has not seen."""
    pop = PopularityRow.of(popularity)
    return blocked_top_k(users, (pop, k), popularity_scores, pop.item_ids, k, ties,
                         block_size=CATALOGUE_ROW_BLOCK)


def popularity(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry: every user's top-k of the train counts."""
    return recommend_popularity(tables.users_as_of(), tables.popularity, k, tables.ties)
