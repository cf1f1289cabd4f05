"""The user-item graph a graph model (LightGCN) propagates over, read from the shards of docs/SCHEMAS.md.

For training, validation and the validation-time list it is the train graph: the edges/ shard (one row per train
interaction). For the test-time list each user's validation item (validation/ `target_item`) is added, so the graph
holds the same history the sequence models read for a test row (train + validation items). Every rank reads the
whole shard, not its rank's share, so every rank builds the same normalised adjacency.
"""
from __future__ import annotations

import numpy as np
import torch

from recsys_torch.shards import PAIR_COLUMNS, column_names, parquet_files, read_columns, shard_path
from recsys_torch.errors import RecsysError
from recsys_torch.models.lightgcn import normalized_adjacency

SPLITS = ("validation", "test")


def _read_pairs(folder: str, user_col: str, item_col: str) -> tuple[np.ndarray, np.ndarray]:
    files = parquet_files(folder)
    if not files:
        raise RecsysError(f"no Parquet shards in {folder} (run `recsys export-sequences` to export them)")
    for path in files:
        missing = [c for c in (user_col, item_col) if c not in column_names(path)]
        if missing:
            raise RecsysError(f"{path}: missing column(s) {missing} (docs/SCHEMAS.md, sequence shards)")
    table = read_columns(folder, [user_col, item_col])
    return (table.column(user_col).to_numpy().astype(np.int64),
            table.column(item_col).to_numpy().astype(np.int64))


def _check_range(folder: str, column: str, values: np.ndarray, largest: int, key: str) -> None:
    bad = (values < 1) | (values > largest)
    if bad.any():
        raise RecsysError(f"{folder}: {column} {int(values[bad][0])} is outside 1..{largest} ({key} of meta.json): "
                          f"the shards are inconsistent, re-run `recsys export-sequences`")


def graph_edges(seq_dir: str, meta: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(user_idx, item_idx) of every edge of the graph for lists of `split` (validation: train edges; test: train
    edges + each user's validation item), checked against meta.json's n_users / n_items."""
    if split not in SPLITS:
        raise RecsysError(f"split must be one of {SPLITS}, got {split!r}")
    users, items = _read_pairs(shard_path(seq_dir, "edges"), *PAIR_COLUMNS)
    if not len(users):
        raise RecsysError(f"{shard_path(seq_dir, 'edges')} has no rows: a graph model needs train interactions")
    if split == "test":
        val_users, val_items = _read_pairs(shard_path(seq_dir, "validation"), "user_idx", "target_item")
        keep = val_items > 0
        users, items = np.concatenate([users, val_users[keep]]), np.concatenate([items, val_items[keep]])
    where = shard_path(seq_dir, "edges" if split == "validation" else "edges + validation")
    _check_range(where, "user_idx", users, int(meta["n_users"]), "n_users")
    _check_range(where, "item_idx", items, int(meta["n_items"]), "n_items")
    return torch.from_numpy(users), torch.from_numpy(items)


def build_graph(seq_dir: str, meta: dict, split: str) -> torch.Tensor:
    """The normalised adjacency D^-1/2 A D^-1/2 (sparse, on the CPU) of the graph for lists of `split`."""
    users, items = graph_edges(seq_dir, meta, split)
    return normalized_adjacency(users, items, int(meta["n_users"]), int(meta["n_items"]))
