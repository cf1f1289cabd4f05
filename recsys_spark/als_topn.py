"""ALS top-K for every user from the saved factor tables (`recsys topn --model als`).

ALS is scored in blocks instead of with `recommendForAllUsers`: the item factor matrix is broadcast once, each
Arrow batch of users (factors plus the list of items they have seen) is cut into blocks, a block's scores are one
numpy matmul (BLAS), seen items are set to -inf, and a threshold selection keeps each user's k best. No cross join,
no per-pair rows, no shuffle of scores; and seen items are excluded exactly, without asking for k + |seen| items.
"""
from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_core.config import POSITIVE, check_value
from recsys_core.ties import Ties
from recsys_spark.blocked_topk import blocked_top_k, select_top_k, selection_groups
from recsys_spark.delta import read_table, table_path
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import LIST_SPLITS, as_of_validation, list_table, seen_pairs, write_recommendations

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


def pad_items(item_features: np.ndarray, groups: int) -> np.ndarray:
    """Zero rows appended so the item axis splits into `groups` strided groups of equal length."""
    padding = -len(item_features) % groups
    if padding == 0:
        return item_features
    return np.vstack([item_features, np.zeros((padding, item_features.shape[1]), item_features.dtype)])


def block_top_k(user_idx: np.ndarray, user_features: np.ndarray, seen_values: np.ndarray,
                seen_parents: np.ndarray, item_ids: np.ndarray, item_features: np.ndarray,
                item_position: np.ndarray, k: int, ties: Ties) -> pa.RecordBatch:
    """Top-k of one block of users: scores = U @ I^T, then blocked_topk.select_top_k.

    item_features may carry zero padding rows after the len(item_ids) real ones (see pad_items).
    """
    item_features = pad_items(item_features, selection_groups(len(item_ids), min(k, len(item_ids))))
    return select_top_k(user_idx, _scores(user_features, item_features, len(item_ids)), seen_values, seen_parents,
                        item_ids, item_position, k, ties)


def _scores(user_features: np.ndarray, padded_item_features: np.ndarray, n_items: int) -> np.ndarray:
    scores = user_features @ padded_item_features.T
    scores[:, n_items:] = -np.inf
    return scores


def _factor_scores(n_items: int, padded_item_features: np.ndarray, block: pa.RecordBatch) -> np.ndarray:
    """blocked_top_k's score_block for ALS: the block's user factors times every item factor."""
    user_features = (pc.list_flatten(block.column("features")).to_numpy(zero_copy_only=False)
                     .astype(np.float32).reshape(block.num_rows, -1))
    return _scores(user_features, padded_item_features, n_items)


def score_top_k(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame, k: int, ties: Ties,
                block_size: int = 256) -> DataFrame:
    """Every user's k best unseen items: DataFrame(user_idx, item_idx, rank, score).

    user_factors: user_idx, features.  item_factors: item_idx, features.  seen: user_idx, item_idx pairs.
    """
    check_value("k", k, POSITIVE)
    item_ids, item_features = item_matrix(item_factors)
    padded = pad_items(item_features, selection_groups(len(item_ids), min(k, len(item_ids))))
    seen_lists = seen.groupBy("user_idx").agg(F.collect_list(F.col("item_idx").cast("int")).alias("seen"))
    users = (user_factors.select(F.col("user_idx").cast("int"), "features")
             .join(seen_lists, "user_idx", "left"))
    return blocked_top_k(users, padded, functools.partial(_factor_scores, len(item_ids)), item_ids, k, ties,
                         block_size)


def als_top_k(spark: SparkSession, warehouse: str | Path, model: str, k: int, block_size: int = 256,
              split: str = "test") -> DataFrame:
    """Top-k of the saved ALS factors (the <model>_user/item_factors tables), the items seen before `split`'s
    target excluded (test: train + validation; validation: train). The factors are fitted on train only."""
    user_factors = read_table(spark, table_path(warehouse, f"{model}_user_factors"))
    item_factors = read_table(spark, table_path(warehouse, f"{model}_item_factors"))
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    if split == "validation":
        interactions = as_of_validation(interactions)
    return score_top_k(user_factors, item_factors, seen_pairs(interactions), k, Ties.of_warehouse(warehouse),
                       block_size)


def write_als_topn(spark: SparkSession, warehouse: str | Path, model: str, k: int, run_date: dt.date,
                   run_id: str, block_size: int = 256) -> str:
    """The test-time list (recommendations) and the validation-time list (recommendations_validation)."""
    items = read_table(spark, table_path(warehouse, "items"))
    users = read_table(spark, table_path(warehouse, "users"))
    for split in LIST_SPLITS:
        write_recommendations(als_top_k(spark, warehouse, model, k, block_size, split), warehouse, model,
                              run_date, run_id, items, users, table=list_table(split))
    return table_path(warehouse, list_table("test"))
