"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Item embedding + learned positional embedding -> causal pre-LN transformer blocks
-> final LayerNorm; an item's score is the dot product of the hidden state with its
(tied) item embedding.

Inputs follow docs/SCHEMAS.md: `items[B, L]` is left-padded with 0 (0 = padding).
Positions are counted from the first real item of a row (0, 1, 2, ...), so the hidden
state of an item depends only on the items up to it, never on how much padding there is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

LOSSES = ("ce", "bce")


@dataclass
class SASRecConfig:
    n_items: int  # largest item index; 0 is padding, so tables have n_items + 1 rows
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 200  # longest input sequence (size of the positional table)
    loss: str = "ce"  # "ce": full-softmax cross-entropy; "bce": one sampled negative per position

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if self.hidden % self.n_heads != 0:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by n_heads ({self.n_heads})")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=-1)
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(batch, length, hidden))


class Block(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden, 4 * cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(4 * cfg.hidden, cfg.hidden),
        )
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), attend))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


@torch.no_grad()
def init_dense_layers(model: nn.Module) -> None:
    """GPT-style init of every Linear/Embedding (N(0, 0.02), zero bias) and LayerNorm (1, 0) in `model`."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter from the global torch RNG (deterministic for a seed)."""
        init_dense_layers(self)
        self.item_emb.weight[0].zero_()

    def forward(self, items: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """items[B, L] (left-padded) -> hidden[B, L, D]; timestamps are not used by SASRec.
        Hidden states at padded positions are 0."""
        length = items.shape[1]
        if length > self.cfg.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.cfg.max_len}")
        is_item = items != 0
        positions = (is_item.long().cumsum(dim=1) - 1).clamp(min=0)
        x = self.item_emb(items) * self.cfg.hidden**0.5 + self.pos_emb(positions)
        x = self.emb_dropout(x)

        # query i may attend key j when j <= i and j is an item; every position also
        # attends itself so a fully padded prefix (or row) never gives softmax(all -inf) = NaN
        arange = torch.arange(length, device=items.device)
        causal = arange[None, :] <= arange[:, None]
        attend = causal & (is_item[:, None, :] | torch.eye(length, dtype=torch.bool, device=items.device))
        attend = attend[:, None]  # [B, 1 (heads), L, L]

        for block in self.blocks:
            x = block(x, attend)
        return self.final_norm(x) * is_item[..., None]

    def training_loss(
        self, items: Tensor, timestamps: Tensor | None, targets: Tensor, query_timestamps: Tensor | None = None
    ) -> Tensor:
        """Mean loss over positions with targets != 0 (query_timestamps accepted for a common interface)."""
        hidden = self(items, timestamps)
        has_target = targets != 0
        if self.cfg.loss == "ce":
            return full_softmax_cross_entropy(hidden[has_target], self.item_emb.weight, targets[has_target])
        hidden, positives = hidden[has_target], targets[has_target]
        if positives.numel() == 0:
            return hidden.sum() * 0.0
        # uniform negatives over the catalogue; a collision with the positive is rare and harmless
        negatives = torch.randint(1, self.cfg.n_items + 1, positives.shape, device=positives.device)
        pos_logits = (hidden * self.item_emb(positives)).sum(-1)
        neg_logits = (hidden * self.item_emb(negatives)).sum(-1)
        logits = torch.cat([pos_logits, neg_logits]).float()
        labels = torch.cat([torch.ones_like(pos_logits), torch.zeros_like(neg_logits)]).float()
        return F.binary_cross_entropy_with_logits(logits, labels)

    def score_last(self, items: Tensor, timestamps: Tensor | None, query_timestamps: Tensor | None = None) -> Tensor:
        """Scores of every item as the next one after the last position: [B, n_items + 1], column 0 = -inf."""
        last_hidden = self(items, timestamps)[:, -1]
        logits = last_hidden.float() @ self.item_emb.weight.float().T
        logits[:, 0] = float("-inf")
        return logits


def full_softmax_cross_entropy(hidden: Tensor, item_weight: Tensor, targets: Tensor, rows_per_chunk: int = 4096) -> Tensor:
    """Mean cross-entropy of softmax(hidden @ item_weight.T) over the whole catalogue (row 0 = padding excluded).

    Computed in chunks of rows under activation checkpointing, so only one chunk's
    [rows, n_items + 1] logits exist at a time (59k items x 12.8k positions would be 3 GB).
    """
    if targets.numel() == 0:
        return hidden.sum() * 0.0 + item_weight.sum() * 0.0
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        total = total + checkpoint(_cross_entropy_sum, hidden[rows], item_weight, targets[rows], use_reentrant=False)
    return total / targets.numel()


def _cross_entropy_sum(hidden: Tensor, item_weight: Tensor, targets: Tensor) -> Tensor:
    logits = (hidden @ item_weight.T).float()
    is_padding = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    is_padding[0] = True
    return F.cross_entropy(logits.masked_fill(is_padding, float("-inf")), targets, reduction="sum")
