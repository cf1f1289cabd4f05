"""Scoring the catalogue for a batch of evaluation rows, and the in-training validation: full-ranking HR@10 and
NDCG@10 of the validation targets, seen items excluded, over all ranks' shards (at most `max_rows` rows)."""
from __future__ import annotations

import torch

from recsys_core.ties import Ties
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


@torch.no_grad()
def validate(model: Recommender, loader, env: DistEnv, amp: bool, ties: Ties, max_rows: int | None = None,
             k: int = EVAL_K) -> dict[str, float]:
    """HR@k and NDCG@k averaged over the rows scored by every rank; each rank scores at most max_rows / world.
    ties: the shards' tie policy (meta.json), the order the lists are made in."""
    was_training = model.training
    model.eval()
    per_rank = None if max_rows is None else max(1, max_rows // env.world)
    sums = torch.zeros(3, dtype=torch.float64, device=env.device)  # hits, ndcg, rows: no host sync per batch
    for batch in eval_batches(loader, model, env.device, per_rank):
        with autocast(env.device, amp):
            logits = score_batch(model, batch)
        ranks = target_ranks(mask_seen(logits, batch["seen_items"]), batch["target_item"], batch["user_idx"], ties)
        hit, ndcg = hit_and_ndcg(ranks, k)
        sums += torch.stack([hit.sum(), ndcg.sum(), torch.tensor(float(len(hit)), device=hit.device,
                                                                   dtype=torch.float64)])
    model.train(was_training)
    hits, ndcgs, rows = all_reduce_sum(sums.tolist(), env)
    return {f"hr@{k}": hits / max(rows, 1.0), f"ndcg@{k}": ndcgs / max(rows, 1.0), "rows": rows}
