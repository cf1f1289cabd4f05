"""What every baseline shares: the train rows, each user's history state, popularity padding and the final ranking.

Scores of the tiered models are `tier + value` with value in (0, 1]: a candidate of a higher tier always outranks
one of a lower tier, and within a tier the value orders. Popularity padding is tier 0, so every user gets k items
whenever the catalogue has k items they have not seen.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.blocked_topk import blocked_top_k, item_positions, padded_width
from recsys_spark.recommendations import HISTORY_SPLITS, LIST_SPLITS, seen_pairs, top_k


def train_rows(interactions: DataFrame) -> DataFrame:
    return interactions.where(F.col("split") == "train")


def all_users(interactions: DataFrame) -> DataFrame:
    return interactions.select("user_idx").distinct()


def seen_counts(interactions: DataFrame) -> DataFrame:
    """user_idx, n_seen for every user (0 for a user whose only interaction is the test item)."""
    seen = seen_pairs(interactions).groupBy("user_idx").agg(F.count(F.lit(1)).alias("n_seen"))
    return all_users(interactions).join(seen, "user_idx", "left").fillna(0, ["n_seen"])


def last_items(interactions: DataFrame) -> DataFrame:
    """user_idx, last_item_idx, second_last_item_idx: the end of each user's train+validation history by seq.

    Users without history are absent; second_last_item_idx is null for a history of one item.
    """
    newest_first = Window.partitionBy("user_idx").orderBy(F.col("seq").desc())
    tail = (interactions.where(F.col("split").isin(*HISTORY_SPLITS))
            .withColumn("back", F.row_number().over(newest_first))
            .where(F.col("back") <= 2))
    return tail.groupBy("user_idx").agg(
        F.max(F.when(F.col("back") == 1, F.col("item_idx"))).alias("last_item_idx"),
        F.max(F.when(F.col("back") == 2, F.col("item_idx"))).alias("second_last_item_idx"))


def popular_candidates(interactions: DataFrame, popularity: DataFrame, k: int) -> DataFrame:
    """user_idx, item_idx, score: each user's k + n_seen most popular items, enough for k unseen ones.

    `popularity` has item_idx, score, pop_rank (1 = most popular). Each user's ranks 1..k+n_seen are generated with
    sequence/explode and equi-joined to the (small, broadcast) item list: rows = users*k + seen rows, no cross join.
    """
    wanted = seen_counts(interactions).select(
        "user_idx", F.explode(F.sequence(F.lit(1), F.col("n_seen") + F.lit(k))).alias("pop_rank"))
    return (wanted.join(F.broadcast(popularity.select("pop_rank", "item_idx", "score")), "pop_rank")
            .select("user_idx", "item_idx", "score"))


def rank_candidates(candidates: DataFrame, interactions: DataFrame, k: int) -> DataFrame:
    """user_idx, item_idx, rank, score: best score per (user, item), seen items removed, k best per user."""
    best = candidates.groupBy("user_idx", "item_idx").agg(F.max("score").alias("score"))
    unseen = best.join(seen_pairs(interactions), ["user_idx", "item_idx"], "left_anti")
    return top_k(unseen, k).select("user_idx", "item_idx", "rank", "score")


# ---------------------------------------------------------------------------------------------------------------
# Catalogue-row models (popularity, genre): every user's score row over the whole catalogue, ranked in blocks by
# blocked_topk instead of exploding users x (k + n_seen) popular rows and shuffling them three times (group,
# anti-join, window): 41M rows a list at ML-25M size.


CATALOGUE_ROW_BLOCK = 128  # users a score block: 128 x 59k float64 = 60 MB at ML-25M size


def user_histories(interactions: DataFrame) -> DataFrame:
    """user_idx, train_items, validation_items (arrays, possibly empty): every user of the test-time view.

    Collected once per baselines run (one shuffle of the interactions) and shared by both lists of every
    catalogue-row model: see seen_as_of."""
    split = F.col("split")
    return interactions.groupBy("user_idx").agg(
        F.collect_list(F.when(split == "train", F.col("item_idx"))).alias("train_items"),
        F.collect_list(F.when(split == "validation", F.col("item_idx"))).alias("validation_items"))


def seen_as_of(histories: DataFrame, split: str) -> DataFrame:
    """user_idx, seen: the users a `split` list is made for and the items it must leave out.

    test: every user, seen = train + validation items. validation (as_of_validation's view): the users with a train
    or validation row, seen = train items."""
    if split not in LIST_SPLITS:
        raise ValueError(f"lists are made for {LIST_SPLITS}, not {split!r}")
    if split == "test":
        return histories.select("user_idx", F.concat("train_items", "validation_items").alias("seen"))
    return (histories.where(F.size("train_items") + F.size("validation_items") > 0)
            .select("user_idx", F.col("train_items").alias("seen")))


def popularity_row(popularity: DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, row): the catalogue's item_idx (ascending) and their popularity scores, the row padded with -inf
    to blocked_topk's width. Small: one value per item."""
    table = popularity.select(F.col("item_idx").cast("int"), F.col("score").cast("double")).toArrow()
    order = np.argsort(table.column("item_idx").to_numpy())
    item_ids = table.column("item_idx").to_numpy()[order].astype(np.int32)
    row = np.full(padded_width(len(item_ids), k), -np.inf)
    row[:len(item_ids)] = table.column("score").to_numpy()[order]
    return item_ids, row


def popularity_scores(row: np.ndarray, block: pa.RecordBatch) -> np.ndarray:
    """blocked_top_k's score_block for popularity: the same row for every user."""
    return np.tile(row, (block.num_rows, 1))


def with_candidates(users: DataFrame, candidates: DataFrame) -> DataFrame:
    """users (user_idx, seen) with `candidates`: each user's array of (item_idx, score) pairs from a model's own
    candidate rows (user_idx, item_idx, score), null for a user without any. An item may appear more than once
    (AR(2) and AR(1) both proposing it): candidate_scores keeps its best."""
    per_user = candidates.groupBy("user_idx").agg(
        F.collect_list(F.struct(F.col("item_idx").cast("int").alias("item_idx"),
                                F.col("score").cast("double").alias("score"))).alias("candidates"))
    return users.join(per_user, "user_idx", "left")


def candidate_scores(model: tuple[np.ndarray, np.ndarray, bool], block: pa.RecordBatch) -> np.ndarray:
    """blocked_top_k's score_block for a tiered model: the popularity row (tier 0), each user's candidate columns
    raised to their score. model: (popularity row, item_position, normalise); normalise: a candidate's score is
    1 + score / the user's best (tier 1), else it is already tier + value."""
    row, position, normalise = model
    scores = np.tile(row, (block.num_rows, 1))
    candidates = block.column("candidates")
    pairs = pc.list_flatten(candidates)
    if len(pairs):
        users = pc.list_parent_indices(candidates).to_numpy(zero_copy_only=False)
        items = pairs.field("item_idx").to_numpy(zero_copy_only=False)
        values = pairs.field("score").to_numpy(zero_copy_only=False)
        if normalise:
            best = np.full(block.num_rows, -np.inf)
            np.maximum.at(best, users, values)
            values = 1.0 + values / best[users]
        np.maximum.at(scores, (users, position[items]), values)
    return scores


def users_of(interactions: DataFrame) -> DataFrame:
    """user_idx, seen: the users of a list made from this view of the interactions, and the items it leaves out."""
    return seen_as_of(user_histories(interactions), "test")


def rank_tiered(users: DataFrame, candidates: DataFrame, popularity: DataFrame, k: int,
                normalise: bool = False) -> DataFrame:
    """Each user's (user_idx, seen: seen_as_of) k best unseen items: the model's candidates (user_idx, item_idx,
    score = tier + value, tier >= 1) over popularity padding (tier 0), ranked as catalogue rows."""
    item_ids, row = popularity_row(popularity, k)
    return blocked_top_k(with_candidates(users, candidates), (row, item_positions(item_ids), normalise),
                         candidate_scores, item_ids, k, block_size=CATALOGUE_ROW_BLOCK)


def rank_over_popularity(users: DataFrame, candidates: DataFrame, popularity: DataFrame, k: int) -> DataFrame:
    """The top-k of every user (user_idx, seen) from a model's unseen candidates (user_idx, item_idx, score > 0),
    put in tier 1 by the user's best score (1 + score / best), over popularity padding (tier 0).

    Ranked as catalogue rows: no padding rows at all, where ranking in Spark cost a group, an anti-join and a window
    over the candidates and every short user's k + n_seen popular items."""
    return rank_tiered(users, candidates, popularity, k, normalise=True)
