"""What every baseline shares: the train rows, each user's history state, popularity padding and the final ranking.

Scores of the tiered models are `tier + value` with value in (0, 1]: a candidate of a higher tier always outranks
one of a lower tier, and within a tier the value orders. Popularity padding is tier 0, so every user gets k items
whenever the catalogue has k items they have not seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_core.ties import Ties
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
    """user_idx, item_idx, score: each user's k + n_seen most popular items and every item tied with the last of
    them, enough for k unseen ones whatever the tie order.

    `popularity` has item_idx, score, pop_rank (1 = most popular). Each user's ranks 1..k+n_seen are generated with
    sequence/explode and equi-joined to the (small, broadcast) item list; their lowest score is the user's threshold.
    """
    wanted = seen_counts(interactions).select(
        "user_idx", F.explode(F.sequence(F.lit(1), F.col("n_seen") + F.lit(k))).alias("pop_rank"))
    threshold = (wanted.join(F.broadcast(popularity.select("pop_rank", "score")), "pop_rank")
                 .groupBy("user_idx").agg(F.min("score").alias("threshold")))
    items = F.broadcast(popularity.select("item_idx", "score"))
    return threshold.join(items, items["score"] >= threshold["threshold"]).select("user_idx", "item_idx", "score")


def rank_candidates(candidates: DataFrame, interactions: DataFrame, k: int, ties: Ties) -> DataFrame:
    """user_idx, item_idx, rank, score: best score per (user, item), seen items removed, k best per user."""
    best = candidates.groupBy("user_idx", "item_idx").agg(F.max("score").alias("score"))
    unseen = best.join(seen_pairs(interactions), ["user_idx", "item_idx"], "left_anti")
    return top_k(unseen, k, ties).select("user_idx", "item_idx", "rank", "score")


# ---------------------------------------------------------------------------------------------------------------
# Catalogue-row models (popularity, genre, markov, ar2, hybrid, itemcf, ease): every user's scores over the catalogue,
# ranked in blocks by blocked_topk instead of exploding users x (k + n_seen) popular rows and shuffling them three
# times (group, anti-join, window): 41M rows a list at ML-25M size. Only the columns that can reach a row's top k
# are scored: the model's own candidates of the block and the block's popularity prefix (PopularityRow).


CATALOGUE_ROW_BLOCK = 128  # users a score block


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


@dataclass(frozen=True)
class PopularityRow:
    """Tier 0 of every catalogue-row model: each item's popularity score (item_ids ascending) and the columns in
    popularity order (score descending). Small: a few values per item.

    A row's tier-0 items of its top k are its k most popular unseen ones, all among its k + n_seen most popular and
    every item tied with the last of those (prefix_columns): an item outside that prefix scored only by popularity
    has a lower score than k unseen items of the prefix, so it never needs a column, whatever the tie order."""

    item_ids: np.ndarray  # int32, ascending
    scores: np.ndarray  # float64, scores[c] of item_ids[c]
    by_popularity: np.ndarray  # column indices, most popular first
    position: np.ndarray  # item_idx -> column (blocked_topk.item_positions)
    descending: np.ndarray  # scores[by_popularity]

    @classmethod
    def of(cls, popularity: DataFrame) -> "PopularityRow":
        table = popularity.select(F.col("item_idx").cast("int"), F.col("score").cast("double")).toArrow()
        order = np.argsort(table.column("item_idx").to_numpy())
        item_ids = table.column("item_idx").to_numpy()[order].astype(np.int32)
        scores = table.column("score").to_numpy()[order].astype(np.float64)
        by_popularity = np.lexsort((item_ids, -scores))
        return cls(item_ids, scores, by_popularity, item_positions(item_ids), scores[by_popularity])

    def prefix_columns(self, block: pa.RecordBatch, k: int) -> np.ndarray:
        """The block's k + n_seen most popular columns and those tied with the last, n_seen the largest of its
        rows (ascending)."""
        n_seen = pc.fill_null(pc.list_value_length(block.column("seen")), 0).to_numpy(zero_copy_only=False)
        n = min(k + int(n_seen.max(initial=0)), len(self.descending))
        if n:
            n = int(np.searchsorted(-self.descending, -self.descending[n - 1], side="right"))
        return np.sort(self.by_popularity[:n])

    def block(self, columns: np.ndarray, n_rows: int, k: int) -> np.ndarray:
        """[n_rows, padded_width(len(columns), k)]: each column's popularity, -inf on the padding columns."""
        scores = np.full((n_rows, padded_width(len(columns), k)), -np.inf)
        scores[:, :len(columns)] = self.scores[columns]
        return scores


def popularity_scores(model: tuple[PopularityRow, int], block: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """blocked_top_k's score_block for popularity: the same row for every user, over the block's prefix."""
    pop, k = model
    columns = pop.prefix_columns(block, k)
    return pop.block(columns, block.num_rows, k), pop.item_ids[columns]


def candidate_pairs(block: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, item_idx, score) of the block's `candidates` (with_candidates), flattened."""
    candidates = block.column("candidates")
    pairs = pc.list_flatten(candidates)
    if not len(pairs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (pc.list_parent_indices(candidates).to_numpy(zero_copy_only=False),
            pairs.field("item_idx").to_numpy(zero_copy_only=False).astype(np.int64),
            pairs.field("score").to_numpy(zero_copy_only=False))


def with_candidates(users: DataFrame, candidates: DataFrame) -> DataFrame:
    """users (user_idx, seen) with `candidates`: each user's array of (item_idx, score) pairs from a model's own
    candidate rows (user_idx, item_idx, score), null for a user without any. An item may appear more than once
    (AR(2) and AR(1) both proposing it): candidate_scores keeps its best."""
    per_user = candidates.groupBy("user_idx").agg(
        F.collect_list(F.struct(F.col("item_idx").cast("int").alias("item_idx"),
                                F.col("score").cast("double").alias("score"))).alias("candidates"))
    return users.join(per_user, "user_idx", "left")


def candidate_scores(model: tuple[PopularityRow, int, bool], block: pa.RecordBatch
                     ) -> tuple[np.ndarray, np.ndarray]:
    """blocked_top_k's score_block for a tiered model: popularity (tier 0) over the block's prefix and candidate
    columns, each user's candidates raised to their score. model: (popularity, k, normalise); normalise: a
    candidate's score is 1 + score / the user's best (tier 1), else it is already tier + value."""
    pop, k, normalise = model
    rows, items, values = candidate_pairs(block)
    candidate_columns = pop.position[items]
    columns = np.union1d(pop.prefix_columns(block, k), candidate_columns)
    scores = pop.block(columns, block.num_rows, k)
    if len(rows):
        if normalise:
            best = np.full(block.num_rows, -np.inf)
            np.maximum.at(best, rows, values)
            values = 1.0 + values / best[rows]
        np.maximum.at(scores, (rows, np.searchsorted(columns, candidate_columns)), values)
    return scores, pop.item_ids[columns]


def users_of(interactions: DataFrame) -> DataFrame:
    """user_idx, seen: the users of a list made from this view of the interactions, and the items it leaves out."""
    return seen_as_of(user_histories(interactions), "test")


def rank_tiered(users: DataFrame, candidates: DataFrame, popularity: DataFrame, k: int, ties: Ties,
                normalise: bool = False) -> DataFrame:
    """Each user's (user_idx, seen: seen_as_of) k best unseen items: the model's candidates (user_idx, item_idx,
    score = tier + value, tier >= 1) over popularity padding (tier 0), ranked as catalogue rows."""
    pop = PopularityRow.of(popularity)
    return blocked_top_k(with_candidates(users, candidates), (pop, k, normalise), candidate_scores, pop.item_ids, k,
                         ties, block_size=CATALOGUE_ROW_BLOCK)


def rank_over_popularity(users: DataFrame, candidates: DataFrame, popularity: DataFrame, k: int,
                         ties: Ties) -> DataFrame:
    """The top-k of every user (user_idx, seen) from a model's unseen candidates (user_idx, item_idx, score > 0),
    put in tier 1 by the user's best score (1 + score / best), over popularity padding (tier 0).

    Ranked as catalogue rows: no padding rows at all, where ranking in Spark cost a group, an anti-join and a window
    over the candidates and every short user's k + n_seen popular items."""
    return rank_tiered(users, candidates, popularity, k, ties, normalise=True)
