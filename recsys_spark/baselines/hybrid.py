"""Hybrid: alpha * AR(1) + (1 - alpha) * popularity, both normalised to [0, 1] per user.

Candidates: the user's AR(1) successors and their k + n_seen most popular items; seen items removed first. Then
markov = P(next | last) / the user's largest such P (0 for an item that is no successor, and for every item of a
user without AR(1) state) and pop = popularity score / the user's largest among their candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import last_items, popular_candidates
from recsys_spark.baselines.markov import ar1_candidates
from recsys_core.config import Config, checked, number_in
from recsys_spark.recommendations import seen_pairs, top_k


@dataclass(frozen=True)
class HybridConfig(Config):
    section = "baselines.hybrid"

    alpha: float = checked(0.5, number_in(0, 1))  # weight of the AR(1) score; 1 - alpha goes to popularity


def _normalised(column: str) -> F.Column:
    top = F.max(column).over(Window.partitionBy("user_idx"))
    return F.when(top > 0, F.col(column) / top).otherwise(F.lit(0.0))


def recommend_hybrid(interactions: DataFrame, ar1: DataFrame, popularity: DataFrame, k: int,
                     alpha: float) -> DataFrame:
    item_pop = F.broadcast(popularity.select("item_idx", F.col("score").alias("pop")))
    markov = (ar1_candidates(last_items(interactions), ar1).join(item_pop, "item_idx", "left")
              .select("user_idx", "item_idx", F.col("prob").alias("markov"),
                      F.coalesce("pop", F.lit(0.0)).alias("pop")))
    popular = (popular_candidates(interactions, popularity, k)
               .select("user_idx", "item_idx", F.lit(0.0).alias("markov"), F.col("score").alias("pop")))
    candidates = (markov.unionByName(popular)
                  .groupBy("user_idx", "item_idx").agg(F.max("markov").alias("markov"), F.max("pop").alias("pop"))
                  .join(seen_pairs(interactions), ["user_idx", "item_idx"], "left_anti"))
    scored = candidates.withColumn(
        "score", F.lit(alpha) * _normalised("markov") + F.lit(1.0 - alpha) * _normalised("pop"))
    return top_k(scored, k).select("user_idx", "item_idx", "rank", "score")
