"""Full-ranking HR@K / NDCG@K over the whole catalogue, the user's seen items excluded (in-training validation), and
the one list order: score descending, equal scores by the tie key of (user_idx, item_idx) (recsys_core.ties)."""
from __future__ import annotations

import torch

from recsys_core.ties import P, Ties


def mask_seen(logits: torch.Tensor, seen_items: torch.Tensor) -> torch.Tensor:
    """logits[B, n_items + 1] with the seen items (0-padded [B, S]) set to -inf, in place."""
    return logits.scatter_(1, seen_items, float("-inf"))


def top_k(scores: torch.Tensor, users: torch.Tensor, k: int, ties: Ties) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, columns) [B, k] of each row's k best columns (column = item_idx), best first, equal scores in the
    tie key's order: exactly the order of the Spark lists. torch.topk picks among equal scores in no set order, so
    in a row whose k-th score is shared by more columns than fit (bf16 scores, count-like models; every row of a
    constant model) the columns at or above it are re-ranked by (row, above first, key), with keys computed for
    those columns only; then the k are sorted by (score desc, key asc)."""
    wider = k < scores.shape[1]  # one more column says whether the k-th score is shared past the boundary
    values, columns = torch.topk(scores, k + wider, dim=1)
    kth = values[:, k - 1:k]
    over = torch.nonzero(values[:, k] == kth[:, 0])[:, 0] if wider else values.new_zeros(0, dtype=torch.long)
    values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
    if len(over):
        rows, cols = torch.nonzero(scores[over] >= kth[over], as_tuple=True)
        user_rows = over[rows]
        tied = scores[user_rows, cols] == kth[user_rows, 0]
        key = torch.where(tied, ties.torch(users[user_rows], cols), -1)  # -1: above the k-th score, always kept
        order = torch.argsort(rows * (P + 1) + key + 1)
        rows, cols = rows[order], cols[order]
        first = torch.searchsorted(rows, torch.arange(len(over), device=rows.device))
        columns[over] = cols[first[:, None] + torch.arange(k, device=rows.device)[None, :]]
        values[over] = scores[over[:, None], columns[over]]
    by_key = torch.argsort(ties.torch(users[:, None], columns), dim=1, stable=True)
    columns, values = columns.gather(1, by_key), values.gather(1, by_key)
    values, by_score = torch.sort(values, dim=1, descending=True, stable=True)
    return values, columns.gather(1, by_score)


def target_ranks(logits: torch.Tensor, targets: torch.Tensor, users: torch.Tensor, ties: Ties,
                 items: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each row's target column in the list order (`top_k`): the columns scored above it plus the
    equal ones whose tie key is lower (keys computed for those only). items [B, C]: the item_idx of each column
    (default: column = item_idx). A row whose target score is not finite, or that holds a NaN, ranks it last
    (n_items + 1, a miss at any k): no item is >= NaN, so a broken model would otherwise rank every target first."""
    target_logit = logits.gather(1, targets[:, None])
    ranks = (logits > target_logit).sum(dim=1)
    rows, cols = torch.nonzero(logits == target_logit, as_tuple=True)
    item = cols if items is None else items[rows, cols]
    target_item = targets if items is None else items.gather(1, targets[:, None])[:, 0]
    lower = ties.torch(users[rows], item) < ties.torch(users, target_item)[rows]
    ranks.index_add_(0, rows, lower.long())
    broken = ~torch.isfinite(target_logit[:, 0]) | torch.isnan(logits).any(dim=1)
    return ranks.masked_fill(broken, logits.shape[1])


def hit_and_ndcg(ranks: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row HR@k and NDCG@k (one relevant item: 1 / log2(rank + 2) inside the top k)."""
    hit = (ranks < k).double()
    ndcg = hit / torch.log2(ranks.double() + 2.0)
    return hit, ndcg
