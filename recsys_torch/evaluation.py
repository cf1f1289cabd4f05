"""Scoring the catalogue for a batch of evaluation rows, and the in-training validation: full-ranking HR@10 and
NDCG@10 of the validation targets, seen items excluded, over the first `eval_rows` rows of the validation split in
file order, split among the ranks (the same rows whatever the number of ranks)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from recsys_core.ties import Ties
from recsys_torch.shards import EVAL_COLUMNS, column_array, row_groups
from recsys_torch.metrics import hit_and_ndcg, mask_seen, target_ranks
from recsys_torch.models.base import Recommender
from recsys_torch.runtime import DistEnv, all_reduce_sum, autocast, to_device

EVAL_K = 10


def score_batch(model: Recommender, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits over the whole catalogue, [B, n_items + 1] float32, column 0 = -inf (models/base.py)."""
    return model.score(batch).float()


def eval_batches(loader, model: Recommender, device: torch.device, max_rows: int | None = None):
    """The loader's batches, trimmed by the model, on `device`, stopping after `max_rows` rows."""
    rows = 0
    for batch in loader:
        if max_rows is not None and rows >= max_rows:
            break
        if max_rows is not None and rows + len(batch["target_item"]) > max_rows:
            batch = {name: t[: max_rows - rows] for name, t in batch.items()}
        rows += len(batch["target_item"])
        yield to_device(model.trim(batch), device)


def validation_batches(split: str | Path, batch_size: int, max_rows: int | None, rank: int = 0,
                       world: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's batches of the first `max_rows` rows of `split` (None: all) in file and row-group order: rank r
    takes rows r, r + world, ... of them, so the rows all ranks score together do not depend on the world size
    (a loader shards by row group, whose sizes differ, and would make early stopping depend on it)."""
    import pyarrow.parquet as pq

    filesys, groups = row_groups(split)
    start, files = 0, {}
    for path, group in groups:
        if max_rows is not None and start >= max_rows:
            return
        if path not in files:
            files[path] = pq.ParquetFile(path, filesystem=filesys)
        table = files[path].read_row_group(group, columns=list(EVAL_COLUMNS))
        end = start + table.num_rows if max_rows is None else min(start + table.num_rows, max_rows)
        mine = np.arange(start + (rank - start) % world, end, world) - start  # global row index % world == rank
        start += table.num_rows
        block = {name: column_array(table.column(name))[mine] for name in EVAL_COLUMNS}
        for at in range(0, len(mine), batch_size):
            yield {name: torch.from_numpy(col[at:at + batch_size].astype(np.int64)) for name, col in block.items()}


@torch.no_grad()
def validate(model: Recommender, batches, env: DistEnv, amp: bool, ties: Ties, k: int = EVAL_K) -> dict[str, float]:
    """HR@k and NDCG@k averaged over the rows every rank scored (each rank its own `batches`); ties: the shards' tie
    policy (meta.json), the order the lists are made in."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=env.device)  # hits, ndcg, rows: no host sync per batch
    for batch in eval_batches(batches, model, env.device):
        with autocast(env.device, amp):
            logits = score_batch(model, batch)
        ranks = target_ranks(mask_seen(logits, batch["seen_items"]), batch["target_item"], batch["user_idx"], ties)
        hit, ndcg = hit_and_ndcg(ranks, k)
        sums += torch.stack([hit.sum(), ndcg.sum(), torch.tensor(float(len(hit)), device=hit.device,
                                                                   dtype=torch.float64)])
    model.train(was_training)
    hits, ndcgs, rows = all_reduce_sum(sums.tolist(), env)
    return {f"hr@{k}": hits / max(rows, 1.0), f"ndcg@{k}": ndcgs / max(rows, 1.0), "rows": rows}
