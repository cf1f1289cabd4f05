"""Markov chains over each user's time-ordered train interactions: AR(1) and AR(2) transition counts and scoring.

Transitions are counted over consecutive TRAIN interactions (lag over seq within a user); a user's state for
recommendation is the end of their train+validation history (the items just before the test item).

transitions_ar1: prev_item_idx -> next_item_idx
transitions_ar2: (prev2_item_idx, prev_item_idx) -> next_item_idx, prev_item_idx the item just before next,
                 prev2_item_idx the one before that.
Both keep count, prob = count / all transitions out of the state (before truncation), and rank (1 = most frequent,
ties by next_item_idx), with rank <= top_k.

Scoring with back-off, as score tiers (score = tier + prob, prob in (0, 1]):
  markov (AR(1)): 1 + P(next | last)                    then popularity (tier 0)
  ar2:            2 + P(next | second_last, last)       then 1 + P(next | last) for items not already scored by
                  AR(2), then popularity. So every AR(2) candidate outranks every AR(1) candidate, which outranks
                  every popular item; a user whose AR(2) state was never seen in train gets pure AR(1), and a user
                  with no history (or an unseen AR(1) state) pure popularity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import last_items, rank_tiered, train_rows
from recsys_core.ties import Ties
from recsys_core.config import POSITIVE, Config, checked

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables

TIER_AR1 = 1.0
TIER_AR2 = 2.0
AR1_STATE = ["prev_item_idx"]
AR2_STATE = ["prev2_item_idx", "prev_item_idx"]


@dataclass(frozen=True)
class MarkovConfig(Config):
    section = "baselines.markov"

    top_k: int = checked(50, POSITIVE)  # successors kept per state in transitions_ar1 / transitions_ar2


def _train_sequences(interactions: DataFrame) -> DataFrame:
    """Each train interaction with the one or two train interactions before it (null at the start of a history)."""
    by_user = Window.partitionBy("user_idx").orderBy("seq")
    return (train_rows(interactions)
            .select("user_idx", "seq", F.col("item_idx").alias("next_item_idx"))
            .withColumn("prev_item_idx", F.lag("next_item_idx", 1).over(by_user))
            .withColumn("prev2_item_idx", F.lag("next_item_idx", 2).over(by_user)))


def _count_transitions(steps: DataFrame, state: list[str], top_k: int) -> DataFrame:
    counts = steps.groupBy(*state, "next_item_idx").agg(F.count(F.lit(1)).alias("count"))
    out_of_state = Window.partitionBy(*state)
    by_count = Window.partitionBy(*state).orderBy(F.col("count").desc(), F.col("next_item_idx").asc())
    return (counts.withColumn("prob", F.col("count") / F.sum("count").over(out_of_state))
            .withColumn("rank", F.row_number().over(by_count))
            .where(F.col("rank") <= top_k)
            .select(*state, "next_item_idx", "count", "prob", "rank"))


def transitions_ar1(interactions: DataFrame, top_k: int) -> DataFrame:
    steps = _train_sequences(interactions).where(F.col("prev_item_idx").isNotNull())
    return _count_transitions(steps, AR1_STATE, top_k)


def transitions_ar2(interactions: DataFrame, top_k: int) -> DataFrame:
    steps = _train_sequences(interactions).where(F.col("prev2_item_idx").isNotNull())
    return _count_transitions(steps, AR2_STATE, top_k)


def ar1_candidates(states: DataFrame, ar1: DataFrame) -> DataFrame:
    """user_idx, item_idx, prob: successors of each user's last item."""
    return (states.join(ar1, states["last_item_idx"] == ar1["prev_item_idx"])
            .select("user_idx", F.col("next_item_idx").alias("item_idx"), "prob"))


def ar2_candidates(states: DataFrame, ar2: DataFrame) -> DataFrame:
    """user_idx, item_idx, prob: successors of each user's last two items."""
    on = ((states["second_last_item_idx"] == ar2["prev2_item_idx"])
          & (states["last_item_idx"] == ar2["prev_item_idx"]))
    return states.join(ar2, on).select("user_idx", F.col("next_item_idx").alias("item_idx"), "prob")


def recommend_markov(interactions: DataFrame, users: DataFrame, ar1: DataFrame, popularity: DataFrame,
                     k: int, ties: Ties) -> DataFrame:
    """users: user_idx, seen (common.seen_as_of for the view `interactions` is)."""
    states = last_items(interactions)
    markov = ar1_candidates(states, ar1).select("user_idx", "item_idx", (F.col("prob") + TIER_AR1).alias("score"))
    return rank_tiered(users, markov, popularity, k, ties)


def recommend_ar2(interactions: DataFrame, users: DataFrame, ar1: DataFrame, ar2: DataFrame,
                  popularity: DataFrame, k: int, ties: Ties) -> DataFrame:
    states = last_items(interactions)
    order2 = ar2_candidates(states, ar2).select("user_idx", "item_idx", (F.col("prob") + TIER_AR2).alias("score"))
    order1 = ar1_candidates(states, ar1).select("user_idx", "item_idx", (F.col("prob") + TIER_AR1).alias("score"))
    # rank_tiered keeps the highest tier of an item proposed by both.
    return rank_tiered(users, order2.unionByName(order1), popularity, k, ties)


def markov(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry of AR(1)."""
    return recommend_markov(tables.interactions, tables.users_as_of(), tables.chain(1), tables.popularity, k,
                            tables.ties)


def ar2(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry of AR(2)."""
    return recommend_ar2(tables.interactions, tables.users_as_of(), tables.chain(1), tables.chain(2),
                         tables.popularity, k, tables.ties)
