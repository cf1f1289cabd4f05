"""Negative sampling for the pair models: uniform items a user has not interacted with (recsys_torch.data reads
the positives; this draws the negatives)."""
from __future__ import annotations

import torch


def sample_negatives(users: torch.Tensor, n_items: int, n_neg: int, generator: torch.Generator,
                     positives: torch.Tensor | None = None, rounds: int = 10) -> torch.Tensor:
    """Uniform negatives over 1..n_items, [B, n_neg]; with `positives` (sorted keys), items the user has are
    redrawn up to `rounds` times (a rare leftover positive is kept rather than looping)."""
    negs = torch.randint(1, n_items + 1, (users.shape[0], n_neg), generator=generator)
    if positives is None or positives.numel() == 0:
        return negs
    for _ in range(rounds):
        keys = users[:, None] * (n_items + 1) + negs
        pos = torch.searchsorted(positives, keys).clamp_max(positives.numel() - 1)
        hit = positives[pos] == keys
        n_hit = int(hit.sum())
        if n_hit == 0:
            break
        negs[hit] = torch.randint(1, n_items + 1, (n_hit,), generator=generator)
    return negs
