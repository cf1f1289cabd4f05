"""Next-item losses of the sequence models, over hidden states [N, D] and the tied item table [n_items + 1, D]
(row 0 = padding, never a candidate).

- `ce`: softmax over the whole catalogue. Exact; on CPU it is most of a step's time.
- `sampled_ce`: softmax over the target and K negatives shared by the batch, drawn (with replacement) from the
  train item popularity q. Each negative's logit is corrected by -log(K q_j), so that in expectation the sampled
  denominator exp(s_y) + sum_j exp(s_j) / (K q_j) equals the full one (Bengio & Senecal; the "logQ correction"
  of Yi et al. 2019); the target's own logit is left as it is, and a negative that is the row's target is
  dropped (masked to -inf), never counted against it.
- `bce`: one uniform negative per position, binary cross-entropy (the original SASRec objective).

The pair models' losses (recsys_torch.models.base.PairModel), over the scores of a positive and its sampled
negatives: `pointwise_bce` (NCF) and `bpr` (LightGCN).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

LOGITS_PER_CHUNK = 1 << 27  # float32 logits held at once by the full softmax (512 MB); beyond: checkpointed chunks


class NextItemLoss(nn.Module):
    """`targets_per_row` (the train split's targets / its rows) weighs a batch of windows in `over_windows`."""

    def __init__(self, kind: str, n_items: int, negatives: int = 1024, item_counts: Tensor | None = None,
                 targets_per_row: float = 0.0):
        super().__init__()
        if kind not in ("ce", "sampled_ce", "bce"):
            raise ValueError(f"loss must be ce, sampled_ce or bce, got {kind!r}")
        self.kind, self.n_items, self.negatives, self.targets_per_row = kind, n_items, negatives, targets_per_row
        if kind == "sampled_ce":
            if item_counts is None:
                raise ValueError("sampled_ce needs the train item counts (its proposal distribution)")
            probs = proposal(item_counts, n_items)
            self.register_buffer("probs", probs.float(), persistent=False)
            self.register_buffer("log_kq", torch.log(probs * negatives).float(), persistent=False)

    def forward(self, hidden: Tensor, item_weight: Tensor, targets: Tensor) -> Tensor:
        """Mean loss over the rows of hidden[N, D] with targets[N] (all > 0)."""
        if targets.numel() == 0:
            return hidden.sum() * 0.0 + item_weight.sum() * 0.0
        if self.kind == "ce":
            return full_softmax_cross_entropy(hidden, item_weight, targets)
        if self.kind == "bce":
            return one_negative_bce(hidden, item_weight, targets, self.n_items)
        negatives = torch.multinomial(self.probs, self.negatives, replacement=True)
        return sampled_softmax_cross_entropy(hidden, item_weight, targets, negatives, self.log_kq)

    def over_windows(self, hidden: Tensor, item_weight: Tensor, targets: Tensor) -> Tensor:
        """The loss of a batch of windows, hidden[B, L, D] and targets[B, L] (0: no target at that position).

        The mean over the batch's target positions times (its targets / the targets a batch of its rows holds on
        average): every position of the data weighs the same whatever batch it lands in. With batches grouped by
        length, a plain per-batch mean would give each position of a batch of short windows many times the weight
        of one in a batch of full windows (and over-fit the users with few items). targets_per_row 0: the mean."""
        has_target = targets != 0
        loss = self(hidden[has_target], item_weight, targets[has_target])
        if self.targets_per_row:
            loss = loss * (has_target.sum() / (len(has_target) * self.targets_per_row))
        return loss


def proposal(item_counts: Tensor, n_items: int) -> Tensor:
    """Popularity over items 1..n_items (float64), every item at least a pseudo-count of 1 so none is never drawn
    and no correction is infinite; index 0 (padding) has probability 0."""
    counts = torch.zeros(n_items + 1, dtype=torch.float64)
    given = item_counts.double().flatten()[: n_items + 1]
    counts[: given.numel()] = given
    counts[1:] = counts[1:].clamp(min=1.0)
    counts[0] = 0.0
    return counts / counts.sum()


def sampled_softmax_cross_entropy(hidden: Tensor, item_weight: Tensor, targets: Tensor, negatives: Tensor,
                                  log_kq: Tensor) -> Tensor:
    """hidden[N, D], targets[N], negatives[K] shared by all rows, log_kq[n_items + 1] = log(K q).

    -log softmax of the target among [target, negatives] = logaddexp(s_y, logsumexp_j s_j) - s_y, with the
    [N, K] negative logits corrected and masked in place: one tensor of that size is kept for backward."""
    target_logits = (hidden * item_weight[targets]).sum(-1).float()                          # [N]
    negative_logits = (hidden @ item_weight[negatives].T).float()                             # [N, K]
    negative_logits.sub_(log_kq[negatives]).masked_fill_(negatives[None, :] == targets[:, None], float("-inf"))
    return (torch.logaddexp(target_logits, torch.logsumexp(negative_logits, dim=1)) - target_logits).mean()


def full_softmax_cross_entropy(hidden: Tensor, item_weight: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of softmax(hidden @ item_weight.T) over the catalogue (row 0 excluded).

    When all logits fit in LOGITS_PER_CHUNK they are computed at once; beyond that, in row chunks under activation
    checkpointing, so only one chunk's logits exist at a time (59k items x 25.6k positions would be 6 GB)."""
    rows = max(1, LOGITS_PER_CHUNK // item_weight.shape[0])
    if targets.numel() <= rows:
        return _cross_entropy_sum(hidden, item_weight, targets) / targets.numel()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), rows):
        part = slice(start, start + rows)
        total = total + checkpoint(_cross_entropy_sum, hidden[part], item_weight, targets[part], use_reentrant=False)
    return total / targets.numel()


def _cross_entropy_sum(hidden: Tensor, item_weight: Tensor, targets: Tensor) -> Tensor:
    logits = (hidden @ item_weight.T).float()
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets, reduction="sum")


def one_negative_bce(hidden: Tensor, item_weight: Tensor, targets: Tensor, n_items: int) -> Tensor:
    # uniform negatives over the catalogue; a collision with the positive is rare and harmless
    negatives = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
    positive = (hidden * item_weight[targets]).sum(-1)
    negative = (hidden * item_weight[negatives]).sum(-1)
    logits = torch.cat([positive, negative]).float()
    labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)]).float()
    return F.binary_cross_entropy_with_logits(logits, labels)


def pointwise_bce(logits: Tensor) -> Tensor:
    """logits[B, 1 + n_neg] of a positive (column 0) and its negatives -> mean binary cross-entropy over all pairs
    (label 1 for the positive, 0 for each negative)."""
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels)


def bpr(positive: Tensor, negative: Tensor, row_weight: Tensor | None = None) -> Tensor:
    """Bayesian personalised ranking: positive[B] and negative[B, n_neg] scores -> -log sigmoid(pos - neg)
    averaged over each row's negatives, then over the rows (weighted by row_weight[B] when given)."""
    per_row = F.softplus(negative - positive[:, None]).mean(1)
    return (per_row * row_weight).mean() if row_weight is not None else per_row.mean()
