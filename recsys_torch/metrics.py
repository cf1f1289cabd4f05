"""Full-ranking HR@K / NDCG@K over the whole catalogue, the user's seen items excluded (in-training validation)."""
from __future__ import annotations

import torch


def mask_seen(logits: torch.Tensor, seen_items: torch.Tensor) -> torch.Tensor:
    """logits[B, n_items + 1] with the seen items (0-padded [B, S]) set to -inf, in place."""
    return logits.scatter_(1, seen_items, float("-inf"))


def target_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target. Ties count against the target, so a constant score ranks it last
    among its equals instead of first. A row whose target score is not finite, or that holds a NaN, ranks it
    last (n_items + 1, a miss at any k): no item is >= NaN, so a broken model would otherwise rank every target
    first."""
    target_logit = logits.gather(1, targets[:, None])
    ranks = (logits >= target_logit).sum(dim=1) - 1
    broken = ~torch.isfinite(target_logit[:, 0]) | torch.isnan(logits).any(dim=1)
    return ranks.masked_fill(broken, logits.shape[1])


def hit_and_ndcg(ranks: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row HR@k and NDCG@k (one relevant item: 1 / log2(rank + 2) inside the top k)."""
    hit = (ranks < k).double()
    ndcg = hit / torch.log2(ranks.double() + 2.0)
    return hit, ndcg
