"""Small sequence shards in the docs/SCHEMAS.md layout, from a planted-pattern generator (torch-side tests only).

The pattern: items fall into `n_clusters` clusters; each cluster's items form a cycle, and every user walks a
contiguous stretch of one cluster's cycle (no repeats). So the next item is fully determined by the last one (a
sequence model can learn it), the user's cluster is determined by their history (NCF can learn that), and item
popularity is nearly flat (popularity ranking is close to chance).

The real exporter is the Spark job `recsys export-sequences`; this writes the same files with pyarrow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_torch.schemas import EDGE_ROWS as EDGE_SCHEMA
from recsys_torch.schemas import NCF_ROWS as NCF_SCHEMA
from recsys_torch.schemas import SEQUENCE_ROWS as SEQ_SCHEMA


@dataclass
class PlantedData:
    n_users: int = 240
    n_items: int = 80
    n_clusters: int = 4
    min_len: int = 6
    max_len_user: int = 14
    max_len: int = 12          # shard sequence length (max_len in meta.json)
    rows_per_group: int = 16
    n_files: int = 2
    seed: int = 7

    def sequences(self) -> dict[int, tuple[list[int], list[int]]]:
        """user_idx -> (items, timestamps), oldest first; item and user indices are 1-based."""
        rng = np.random.default_rng(self.seed)
        per_cluster = self.n_items // self.n_clusters
        # a fixed random cycle through each cluster's items
        cycles = [list(rng.permutation(np.arange(c * per_cluster, (c + 1) * per_cluster) + 1))
                  for c in range(self.n_clusters)]
        out = {}
        for user in range(1, self.n_users + 1):
            cycle = cycles[(user - 1) % self.n_clusters]
            start = int(rng.integers(len(cycle)))
            length = int(rng.integers(self.min_len, self.max_len_user + 1))
            items = [int(cycle[(start + i) % len(cycle)]) for i in range(length)]
            t0 = 1_000_000_000 + int(rng.integers(0, 10_000_000))
            timestamps = list(t0 + np.cumsum(rng.integers(60, 86_400, size=length)).astype(int))
            out[user] = (items, [int(t) for t in timestamps])
        return out


def _pad(values: list[int], length: int) -> list[int]:
    values = values[-length:]
    return [0] * (length - len(values)) + list(values)


def _train_windows(items, times, max_len):
    """Windows over the train items: inputs s[t-L:t], targets s[t-L+1:t+1], stride L, newest window whole."""
    rows = []
    end = len(items) - 1  # exclusive end of the inputs; the last input predicts items[end]
    while end >= 1:
        start = max(0, end - max_len)
        rows.append((_pad(items[start:end], max_len), _pad(times[start:end], max_len),
                     _pad(items[start + 1:end + 1], max_len)))
        end -= max_len
    return rows


def _write_parts(table: pa.Table, folder: Path, n_files: int, rows_per_group: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int)
    for i in range(n_files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=rows_per_group)


def write_shards(root: str | Path, data: PlantedData | None = None) -> Path:
    """Write `<root>/sequences/` (train, validation, test, ncf_train, edges, maps, meta.json); returns that folder."""
    data = data or PlantedData()
    out = Path(root) / "sequences"
    L = data.max_len
    train, validation, test, ncf = [], [], [], []
    for user, (items, times) in data.sequences().items():
        tr_items, tr_times = items[:-2], times[:-2]
        for win_items, win_times, win_targets in _train_windows(tr_items, tr_times, L):
            train.append((user, win_items, win_times, win_targets, 0, 0, 0, []))
        validation.append((user, _pad(tr_items, L), _pad(tr_times, L), [0] * L, items[-2], times[-2],
                           tr_times[-1] + 1, sorted(set(tr_items))))
        test.append((user, _pad(items[:-1], L), _pad(times[:-1], L), [0] * L, items[-1], times[-1],
                     times[-2] + 1, sorted(set(items[:-1]))))
        ncf += [(user, item) for item in tr_items]

    def seq_table(rows):
        cols = list(zip(*rows))
        return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, SEQ_SCHEMA)], schema=SEQ_SCHEMA)

    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        _write_parts(seq_table(rows), out / name, data.n_files, data.rows_per_group)
    users, items_ = zip(*ncf)
    _write_parts(pa.Table.from_arrays([pa.array(users, pa.int32()), pa.array(items_, pa.int32())], schema=NCF_SCHEMA),
                 out / "ncf_train", data.n_files, data.rows_per_group * 4)
    edges = sorted(ncf)
    users, items_ = zip(*edges)
    _write_parts(pa.Table.from_arrays([pa.array(users, pa.int32()), pa.array(items_, pa.int32())],
                                      schema=EDGE_SCHEMA), out / "edges", data.n_files, data.rows_per_group * 4)
    idx = np.arange(1, data.n_items + 1, dtype=np.int32)
    pq.write_table(pa.table({"item_idx": idx, "movieId": (idx.astype(np.int64) * 10 + 7)}), out / "item_map.parquet")
    uidx = np.arange(1, data.n_users + 1, dtype=np.int32)
    pq.write_table(pa.table({"user_idx": uidx, "userId": uidx.astype(np.int64) + 1000}), out / "user_map.parquet")
    meta = {"schema_version": 1, "n_items": data.n_items, "n_users": data.n_users, "max_len": L,
            "rows": {"train": len(train), "validation": len(validation), "test": len(test), "ncf_train": len(ncf),
                     "edges": len(edges)},
            "tie_break": "movieId", "seed": data.seed, "last_gap": "query_time", "created_at": "2024-01-01T00:00:00Z"}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
