"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Item embedding + learned positional embedding -> causal pre-LN transformer blocks
-> final LayerNorm; an item's score is the dot product of the hidden state with its
(tied) item embedding. The training loss over those scores is the trainer's choice (recsys_torch.losses).

Inputs follow docs/SCHEMAS.md: `items[B, L]` is left-padded with 0 (0 = padding).
Positions are counted from the first real item of a row (0, 1, 2, ...), so the hidden
state of an item depends only on the items up to it, never on how much padding there is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_torch.model_configs import SASRecConfig
from recsys_torch.models.base import SequenceModel


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


class SASRec(SequenceModel):  # train/ windows, a next-item loss over the tied item_emb (models/base.py)

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

    @staticmethod
    def encoder_flops(cfg: SASRecConfig, tokens: int, length: int, fused_attention: bool) -> tuple[float, ...]:
        """Analytic FLOPs of one training step's encoder (forward + backward, the output layer not included):
        (matmuls, what fused attention recomputes in backward, elementwise work) - the MFU of
        benchmarks/train_throughput.py."""
        d = cfg.hidden
        per_layer = 6 * 12 * d * d * tokens + 12 * length * d * tokens
        recompute = cfg.n_layers * 2 * length * d * tokens if fused_attention else 0
        return cfg.n_layers * per_layer, recompute, 0.0

    def forward(self, items: Tensor, timestamps: Tensor | None = None, query_timestamps: Tensor | None = None) -> Tensor:
        """items[B, L] (left-padded) -> hidden[B, L, D]; SASRec uses no times (taken for a common interface).
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
