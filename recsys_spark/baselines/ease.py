"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item × item weight matrix in closed form.

X is the binary user × item matrix of the train interactions over the `max_items` most-rated items (by train count,
ties by item index). With G = X^T X (in Spark: ItemCF's sparse block product, one task a block of items) the driver
solves, in numpy,

    P = (G + l2 * I)^-1,    B = -P / diag(P) (column-wise),    diag(B) = 0

and a user's scores over the kept items are x_u · B, x_u the user's history (train + validation items by the
test-time view, train only by the validation-time view). B is broadcast and each block of users is scored and
ranked on the executors: the positive scores go to tier 1 (1, 2] by the user's best, popularity pads below
(tier 0), seen items excluded: the same ranking as ItemCF's.

Memory: G, then P in its place and B in P's, float64 on the driver: n^2 * 8 bytes a matrix, about two at once
during the inverse (10,000 items: 0.8 GB a matrix), and B once more in each Python worker. The inverse costs n^3
flops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_core.config import POSITIVE, Config, above, checked
from recsys_core.ties import Ties
from recsys_spark.baselines.common import CATALOGUE_ROW_BLOCK, PopularityRow, train_rows, users_of
from recsys_spark.baselines.itemcf import binary_matrix, item_block_product
from recsys_spark.blocked_topk import blocked_top_k

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables

ITEM_BLOCK = 256   # Gram rows per task
GRAM_COLUMNS = "item_idx int, other_idx array<int>, co_count array<int>"


@dataclass(frozen=True)
class EASEConfig(Config):
    section = "baselines.ease"

    l2: float = checked(50.0, above(0))             # lambda: added to G's diagonal before the inverse
    max_items: int = checked(10_000, POSITIVE)      # the most-rated train items kept: B is max_items^2 float64


def kept_items(interactions: DataFrame, max_items: int) -> np.ndarray:
    """item_idx of the `max_items` items with the most train users (ties by item index), ascending."""
    counts = (train_rows(interactions).select("user_idx", "item_idx").distinct()
              .groupBy("item_idx").agg(F.count(F.lit(1)).alias("n"))
              .orderBy(F.col("n").desc(), F.col("item_idx").asc()).limit(max_items))
    return np.sort(counts.toArrow().column("item_idx").to_numpy().astype(np.int64))


def _kept_columns(kept: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(column in kept, whether the item is kept) of each item id."""
    if len(kept) == 0:
        return np.zeros(len(items), np.int64), np.zeros(len(items), bool)
    col = np.minimum(np.searchsorted(kept, items), len(kept) - 1)
    return col, kept[col] == items


def _train_matrix(interactions: DataFrame, kept: np.ndarray):
    """The binary train matrix over the kept items (column c = item kept[c]), or None without train rows."""
    pairs = train_rows(interactions).select("user_idx", "item_idx").distinct().toArrow()
    users = pairs.column("user_idx").to_numpy().astype(np.int64)
    items = pairs.column("item_idx").to_numpy().astype(np.int64)
    col, keep = _kept_columns(kept, items)
    if not keep.any():
        return None
    return binary_matrix(users[keep], col[keep], len(kept))


def _gram_block(X, XT, lo: int, hi: int) -> pd.DataFrame:
    co = (XT[lo:hi] @ X).tocsr()
    return pd.DataFrame({"item_idx": np.arange(lo, hi, dtype=np.int32),
                         "other_idx": [co.indices[co.indptr[r]:co.indptr[r + 1]].astype(np.int32)
                                       for r in range(hi - lo)],
                         "co_count": [co.data[co.indptr[r]:co.indptr[r + 1]].astype(np.int32)
                                      for r in range(hi - lo)]})


def gram_matrix(interactions: DataFrame, kept: np.ndarray, block: int = ITEM_BLOCK) -> np.ndarray:
    """G = X^T X (float64, len(kept) square) of the binary train matrix over the kept items, computed in Spark."""
    G = np.zeros((len(kept), len(kept)), np.float64)
    X = _train_matrix(interactions, kept)
    if X is None:
        return G
    rows = item_block_product(interactions.sparkSession, X, block, _gram_block, GRAM_COLUMNS).toArrow()
    for item, others, counts in zip(rows.column("item_idx").chunks, rows.column("other_idx").chunks,
                                    rows.column("co_count").chunks):
        row = np.repeat(item.to_numpy(), others.value_lengths().to_numpy())
        G[row, others.flatten().to_numpy()] = counts.flatten().to_numpy()
    return G


def ease_weights(G: np.ndarray, l2: float) -> np.ndarray:
    """B = -P / diag(P) with P = (G + l2 I)^-1 and a zero diagonal; G is overwritten (P, then B, take its place)."""
    from scipy import linalg

    G[np.diag_indices_from(G)] += l2
    P = linalg.inv(G, overwrite_a=True, check_finite=False)
    del G
    P /= -np.diag(P)[np.newaxis, :]  # column j divided by -P_jj
    P[np.diag_indices_from(P)] = 0.0
    return P


def fit_ease(interactions: DataFrame, config: EASEConfig) -> tuple[np.ndarray, np.ndarray]:
    """(kept item_idx, B): the item ids of B's rows/columns and the EASE weights, fitted on train rows only."""
    kept = kept_items(interactions, config.max_items)
    if len(kept) == 0:
        return kept, np.zeros((0, 0))
    return kept, ease_weights(gram_matrix(interactions, kept), float(config.l2))


def ease_block_scores(model: tuple[PopularityRow, int, np.ndarray, np.ndarray], block: pa.RecordBatch
                      ) -> tuple[np.ndarray, np.ndarray]:
    """blocked_top_k's score_block: x_u · B over the kept items (x_u: the user's seen items, which are their
    history), each unseen positive score raised to tier 1 by the user's best (1 + s / best), popularity below
    (tier 0); over the kept items' columns and the block's popularity prefix. model: (popularity, k, kept, B)."""
    from scipy import sparse

    pop, k, kept, B = model
    seen = block.column("seen")
    items = pc.list_flatten(seen).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = pc.list_parent_indices(seen).to_numpy(zero_copy_only=False)
    col, keep = _kept_columns(kept, items)
    H = sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], col[keep])), shape=(block.num_rows, len(kept)))
    H.data[:] = 1.0  # an item listed twice is still one item of the history
    S = np.asarray(H @ B)
    S[rows[keep], col[keep]] = -np.inf
    best = S.max(axis=1, keepdims=True, initial=-np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        tier1 = np.where(S > 0, 1.0 + S / best, -np.inf)
    kept_columns = pop.position[kept]
    columns = np.union1d(pop.prefix_columns(block, k), kept_columns)
    scores = pop.block(columns, block.num_rows, k)
    at = np.searchsorted(columns, kept_columns)
    scores[:, at] = np.maximum(scores[:, at], tier1)
    return scores, pop.item_ids[columns]


def recommend_ease(interactions: DataFrame, weights: tuple[np.ndarray, np.ndarray], popularity: DataFrame, k: int,
                   ties: Ties, users: DataFrame | None = None) -> DataFrame:
    """users: user_idx, seen of this view (common.seen_as_of; default: collected from `interactions`).

    Scored and ranked on the executors, a block of users at a time (blocked_topk): B is broadcast once
    (max_items^2 * 8 bytes to each Python worker), and no per-pair candidate rows are shuffled."""
    kept, B = weights
    users = users_of(interactions) if users is None else users
    pop = PopularityRow.of(popularity)
    return blocked_top_k(users, (pop, k, kept, B), ease_block_scores, pop.item_ids, k, ties,
                         block_size=CATALOGUE_ROW_BLOCK)


def ease(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry: EASE's weights fitted once on the train rows (shared by both views)."""
    weights = tables.shared(fit_ease, lambda: fit_ease(tables.interactions, config.ease))
    return recommend_ease(tables.interactions, weights, tables.popularity, k, tables.ties, tables.users_as_of())
