"""Every user's top-k from a score matrix built a block of users at a time on the executors.

A model whose scores for one user are a row over the whole catalogue (ALS's U @ I^T, a popularity or genre mixture
row) ranks without per-pair rows: the item-side model is broadcast once, each Arrow batch of users (their features
plus the list of items they have seen) is cut into blocks, the block's score matrix is built with numpy, seen items
are set to -inf and a threshold selection keeps each user's k best, equal scores in the tie key's order
(recsys_core.ties, as recommendations.top_k).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from recsys_core.ties import Ties

TOPN_SCHEMA = "user_idx int, item_idx int, rank int, score double"
SELECTION_GROUPS = 1024  # strided item groups whose maxima bound each user's k-th best score from below


def selection_groups(n_items: int, k: int) -> int:
    """G >= k groups, so that the k-th largest group maximum is a lower bound on the k-th largest score."""
    return max(min(k, n_items), min(SELECTION_GROUPS, n_items))


def padded_width(n_items: int, k: int) -> int:
    """Columns of a score block: n_items rounded up to a multiple of selection_groups (the extra ones are -inf)."""
    groups = selection_groups(n_items, k)
    return n_items + (-n_items % groups)


def item_positions(item_ids: np.ndarray) -> np.ndarray:
    """position[item_idx] = the item's column in a score block, -1 for an item_idx outside the scored catalogue."""
    position = np.full(int(item_ids.max()) + 1 if len(item_ids) else 0, -1, dtype=np.int64)
    position[item_ids] = np.arange(len(item_ids))
    return position


def seen_cells(seen_values: np.ndarray, seen_parents: np.ndarray, item_ids: np.ndarray,
               item_position: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the seen items that are columns of a score block; item_position None: the block's
    columns are item_ids (ascending), a subset of the catalogue, found by binary search."""
    if item_position is None:
        columns = np.minimum(np.searchsorted(item_ids, seen_values), max(len(item_ids) - 1, 0))
        known = item_ids[columns] == seen_values if len(item_ids) else np.zeros(len(seen_values), bool)
        return seen_parents[known], columns[known]
    in_range = seen_values < len(item_position)
    columns = item_position[seen_values[in_range]]
    known = columns >= 0
    return seen_parents[in_range][known], columns[known]


def select_top_k(user_idx: np.ndarray, scores: np.ndarray, seen_values: np.ndarray, seen_parents: np.ndarray,
                 item_ids: np.ndarray, item_position: np.ndarray, k: int, ties: Ties) -> pa.RecordBatch:
    """user_idx, item_idx, rank, score: each row's k best unseen columns of `scores` (overwritten in place).

    scores: [rows, padded_width(len(item_ids), k)], column c scoring item_ids[c], the padding columns -inf.
    seen_values/seen_parents: every seen item_idx of the block, flattened, and the block row it belongs to.
    item_position: item_idx -> column (item_positions); None when item_ids is an ascending subset of the catalogue.

    Selection without a per-row argpartition over the whole catalogue (the slow part): the columns are cut into
    G >= k strided groups; the k-th largest of a row's G group maxima is <= its k-th largest score, so every score
    at or above it is a candidate and the true top-k (ties included) is among them -- typically ~k candidates.
    Only those are sorted, by score descending then tie key ascending.
    """
    n_items = len(item_ids)
    k = min(k, n_items)
    groups = selection_groups(n_items, k)
    rows, columns = seen_cells(seen_values, seen_parents, item_ids, item_position)
    scores[rows, columns] = -np.inf

    n_rows, width = scores.shape
    group_max = scores.reshape(n_rows, width // groups, groups).max(axis=1)
    threshold = np.partition(group_max, groups - k, axis=1)[:, groups - k]
    flat = np.flatnonzero(scores >= threshold[:, None])
    rows, columns = np.divmod(flat, width)
    values = scores.ravel()[flat]
    keep = np.isfinite(values)  # seen items and padding; a user who has seen almost everything gets fewer than k
    rows, columns, values = rows[keep], columns[keep], values[keep]
    items = item_ids[columns]
    order = np.lexsort((ties.numpy(user_idx[rows], items), -values, rows))
    rows, items, values = rows[order], items[order], values[order]
    ranks = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    top = ranks < k
    return pa.RecordBatch.from_arrays(
        [pa.array(user_idx.astype(np.int32)[rows[top]]), pa.array(items[top].astype(np.int32)),
         pa.array((ranks[top] + 1).astype(np.int32)), pa.array(values[top].astype(np.float64))],
        names=["user_idx", "item_idx", "rank", "score"])


def blocked_top_k(users: DataFrame, model, score_block: Callable[[object, pa.RecordBatch], np.ndarray],
                  item_ids: np.ndarray, k: int, ties: Ties, block_size: int = 256) -> DataFrame:
    """DataFrame(user_idx, item_idx, rank, score): the k best unseen items of every row of `users`.

    users: user_idx int, seen array<int> (null: nothing seen), and whatever `score_block` reads.
    model: the item side, broadcast once; score_block(model, block) -> the block's scores,
    [block rows, padded_width(len(item_ids), k)], padding columns -inf, column c scoring item_ids[c]; or, for a
    model that knows which columns can reach a row's top k, (scores, columns): the scores of those items only,
    [block rows, padded_width(len(columns), k)], column c scoring columns[c] (item_idx, ascending).
    """
    position = item_positions(item_ids)
    broadcast = users.sparkSession.sparkContext.broadcast((model, item_ids, position))

    def top_k_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_model, ids, item_position = broadcast.value
        for batch in batches:
            for start in range(0, batch.num_rows, block_size):
                block = batch.slice(start, block_size)
                seen = block.column("seen")
                scores = score_block(item_model, block)
                columns, position = (scores[1], None) if isinstance(scores, tuple) else (ids, item_position)
                yield select_top_k(block.column("user_idx").to_numpy(zero_copy_only=False),
                                   scores[0] if isinstance(scores, tuple) else scores,
                                   pc.list_flatten(seen).to_numpy(zero_copy_only=False).astype(np.int64),
                                   pc.list_parent_indices(seen).to_numpy(zero_copy_only=False),
                                   columns, position, k, ties)

    return users.mapInArrow(top_k_batches, TOPN_SCHEMA)
