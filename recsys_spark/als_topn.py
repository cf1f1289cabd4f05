"""ALS top-K for every user from the saved factor tables (`recsys topn --model als`).

ALS is scored in blocks instead of with `recommendForAllUsers`: the item factor matrix is broadcast once, each
Arrow batch of users (factors plus the list of items they have seen) is cut into blocks, a block's scores are one
numpy matmul (BLAS), seen items are set to -inf, and a threshold selection keeps each user's k best. No cross join,
no per-pair rows, no shuffle of scores; and seen items are excluded exactly, without asking for k + |seen| items.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.delta import read_table, table_path
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import LIST_SPLITS, as_of_validation, list_table, seen_pairs, write_recommendations

TOPN_SCHEMA = "user_idx int, item_idx int, rank int, score double"


# ---------------------------------------------------------------------------------------------------------------
# Blocked scoring


def item_matrix(item_factors: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(item_idx int32 [n], factors float32 [n, rank]) on the driver: small (ML-25M: 59k x rank)."""
    table = item_factors.select(F.col("item_idx").cast("int"), "features").orderBy("item_idx").toArrow()
    ids = table.column("item_idx").to_numpy().astype(np.int32)
    if len(ids) == 0:
        raise RecsysError("the item factor table is empty: nothing to recommend")
    features = pc.list_flatten(table.column("features")).to_numpy().astype(np.float32)
    if not np.isfinite(features).all():  # a NaN score would silently drop items from every list
        bad = ids[~np.isfinite(features.reshape(len(ids), -1)).all(axis=1)]
        raise RecsysError(f"{len(bad)} item factor vectors are not finite (item_idx {bad[:5].tolist()}...): "
                          f"refit ALS (lower rank or higher reg_param)")
    return ids, features.reshape(len(ids), -1)


SELECTION_GROUPS = 1024  # strided item groups whose maxima bound each user's k-th best score from below


def selection_groups(n_items: int, k: int) -> int:
    """G >= k groups, so that the k-th largest group maximum is a lower bound on the k-th largest score."""
    return max(min(k, n_items), min(SELECTION_GROUPS, n_items))


def pad_items(item_features: np.ndarray, groups: int) -> np.ndarray:
    """Zero rows appended so the item axis splits into `groups` strided groups of equal length."""
    padding = -len(item_features) % groups
    if padding == 0:
        return item_features
    return np.vstack([item_features, np.zeros((padding, item_features.shape[1]), item_features.dtype)])


def block_top_k(user_idx: np.ndarray, user_features: np.ndarray, seen_values: np.ndarray,
                seen_parents: np.ndarray, item_ids: np.ndarray, item_features: np.ndarray,
                item_position: np.ndarray, k: int) -> pa.RecordBatch:
    """Top-k of one block of users: scores = U @ I^T, seen items -> -inf, threshold selection, sort by score.

    seen_values/seen_parents: every seen item_idx of the block, flattened, and the block row it belongs to.
    item_position[item_idx] = the item's row in item_features, -1 if it has no factor.
    item_features may carry zero padding rows after the len(item_ids) real ones (see pad_items).

    Selection without a per-row argpartition over the whole catalogue (the slow part): the columns are cut into
    G >= k strided groups; the k-th largest of a row's G group maxima is <= its k-th largest score, so every score
    at or above it is a candidate and the true top-k (ties included) is among them -- typically ~k candidates.
    Only those are sorted, by score descending then item_idx ascending (recommendations.top_k's tie-break).
    """
    n_items = len(item_ids)
    k = min(k, n_items)
    groups = selection_groups(n_items, k)
    item_features = pad_items(item_features, groups)
    scores = user_features @ item_features.T
    scores[:, n_items:] = -np.inf
    in_range = seen_values < len(item_position)
    columns = item_position[seen_values[in_range]]
    known = columns >= 0
    scores[seen_parents[in_range][known], columns[known]] = -np.inf

    n_rows, width = scores.shape
    group_max = scores.reshape(n_rows, width // groups, groups).max(axis=1)
    threshold = np.partition(group_max, groups - k, axis=1)[:, groups - k]
    flat = np.flatnonzero(scores >= threshold[:, None])
    rows, columns = np.divmod(flat, width)
    values = scores.ravel()[flat]
    keep = np.isfinite(values)  # seen items and padding; a user who has seen almost everything gets fewer than k
    rows, columns, values = rows[keep], columns[keep], values[keep]
    items = item_ids[columns]
    order = np.lexsort((items, -values, rows))
    rows, items, values = rows[order], items[order], values[order]
    ranks = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    top = ranks < k
    return pa.RecordBatch.from_arrays(
        [pa.array(user_idx.astype(np.int32)[rows[top]]), pa.array(items[top].astype(np.int32)),
         pa.array((ranks[top] + 1).astype(np.int32)), pa.array(values[top].astype(np.float64))],
        names=["user_idx", "item_idx", "rank", "score"])


def score_top_k(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame, k: int,
                block_size: int = 256) -> DataFrame:
    """Every user's k best unseen items: DataFrame(user_idx, item_idx, rank, score).

    user_factors: user_idx, features.  item_factors: item_idx, features.  seen: user_idx, item_idx pairs.
    """
    if k < 1:
        raise RecsysError(f"k must be >= 1, got {k}")
    spark = user_factors.sparkSession
    item_ids, item_features = item_matrix(item_factors)
    item_position = np.full(int(item_ids.max()) + 1, -1, dtype=np.int64)
    item_position[item_ids] = np.arange(len(item_ids))
    broadcast = spark.sparkContext.broadcast((item_ids, item_features, item_position))

    seen_lists = seen.groupBy("user_idx").agg(F.collect_list(F.col("item_idx").cast("int")).alias("seen"))
    users = (user_factors.select(F.col("user_idx").cast("int"), "features")
             .join(seen_lists, "user_idx", "left"))

    def top_k_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, features, position = broadcast.value
        features = pad_items(features, selection_groups(len(ids), k))  # once per task, not per block
        for batch in batches:
            for start in range(0, batch.num_rows, block_size):
                block = batch.slice(start, block_size)
                n = block.num_rows
                user_features = (pc.list_flatten(block.column("features")).to_numpy(zero_copy_only=False)
                                 .astype(np.float32).reshape(n, -1))
                seen_col = block.column("seen")
                yield block_top_k(block.column("user_idx").to_numpy(zero_copy_only=False), user_features,
                                  pc.list_flatten(seen_col).to_numpy(zero_copy_only=False).astype(np.int64),
                                  pc.list_parent_indices(seen_col).to_numpy(zero_copy_only=False),
                                  ids, features, position, k)

    return users.mapInArrow(top_k_batches, TOPN_SCHEMA)


def als_top_k(spark: SparkSession, warehouse: str | Path, model: str, k: int, block_size: int = 256,
              split: str = "test") -> DataFrame:
    """Top-k of the saved ALS factors (the <model>_user/item_factors tables), the items seen before `split`'s
    target excluded (test: train + validation; validation: train). The factors are fitted on train only."""
    user_factors = read_table(spark, table_path(warehouse, f"{model}_user_factors"))
    item_factors = read_table(spark, table_path(warehouse, f"{model}_item_factors"))
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    if split == "validation":
        interactions = as_of_validation(interactions)
    return score_top_k(user_factors, item_factors, seen_pairs(interactions), k, block_size)


def write_als_topn(spark: SparkSession, warehouse: str | Path, model: str, k: int, run_date: dt.date,
                   run_id: str, block_size: int = 256) -> str:
    """The test-time list (recommendations) and the validation-time list (recommendations_validation)."""
    items = read_table(spark, table_path(warehouse, "items"))
    users = read_table(spark, table_path(warehouse, "users"))
    for split in LIST_SPLITS:
        write_recommendations(als_top_k(spark, warehouse, model, k, block_size, split), warehouse, model,
                              run_date, run_id, items, users, table=list_table(split))
    return table_path(warehouse, list_table("test"))
