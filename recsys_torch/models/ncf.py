"""NeuMF: neural collaborative filtering (He et al., WWW 2017).

Two towers over (user, item) pairs, fused by one output layer:
  GMF: p_u ⊙ q_i                                 (generalised matrix factorisation)
  MLP: ReLU layers over [p'_u ; q'_i]             (separate embeddings, as the paper)
  logit = h · [GMF ; MLP]
Trained point-wise with BCE on observed items (label 1) and sampled negatives (label 0).
Index 0 of users and items is padding (ids are 1-based, docs/SCHEMAS.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_torch.losses import pointwise_bce
from recsys_torch.model_configs import NCFConfig
from recsys_torch.models.base import PairModel


class NCF(PairModel):
    train_shard = "ncf_train"  # (user, item) rows; train.pair_negatives negatives sampled per row
    pair_loss_name = "bce (ncf)"
    scores_by_user_only = True  # the MLP over 59k items is most of a CPU nightly's top-N: one pass for both lists

    def __init__(self, cfg: NCFConfig):
        super().__init__()
        self.cfg = cfg
        half = cfg.mlp_dims[0] // 2
        self.user_gmf = nn.Embedding(cfg.n_users + 1, cfg.gmf_dim)
        self.item_gmf = nn.Embedding(cfg.n_items + 1, cfg.gmf_dim)
        self.user_mlp = nn.Embedding(cfg.n_users + 1, half)
        self.item_mlp = nn.Embedding(cfg.n_items + 1, half)
        self.mlp_layers = nn.ModuleList(
            nn.Linear(width_in, width_out) for width_in, width_out in zip(cfg.mlp_dims[:-1], cfg.mlp_dims[1:])
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.gmf_dim + cfg.mlp_dims[-1], 1)

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the paper: embeddings N(0, 0.01), Xavier-uniform layers (deterministic for a seed)."""
        for embedding in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(embedding.weight, std=0.01)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def pair_logits(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of (user, item) pairs: users[B, 1] with items[B, K] or [1, K] -> [B, K].

        Same function as the textbook concat-then-MLP, but each Linear that sees a user
        part and an item part is split in two, so user and item halves are projected once
        and only broadcast-added per pair (scoring the catalogue is ~5x cheaper)."""
        gmf_weight, mlp_weight = self.output.weight[0].split([self.cfg.gmf_dim, self.cfg.mlp_dims[-1]])
        # GMF: h_gmf . (p_u * q_i) = (p_u * h_gmf) . q_i
        user_gmf = (self.user_gmf(users) * gmf_weight)  # [B, 1, g]
        gmf = (user_gmf @ self.item_gmf(items).transpose(-1, -2)).squeeze(-2)  # [B, K]
        # MLP: W [p'_u ; q'_i] + b = W_user p'_u + W_item q'_i + b
        first = self.mlp_layers[0]
        user_weight, item_weight = first.weight.split(self.cfg.mlp_dims[0] // 2, dim=1)
        user_part = F.linear(self.dropout(self.user_mlp(users)), user_weight, first.bias)  # [B, 1, d1]
        item_part = F.linear(self.dropout(self.item_mlp(items)), item_weight)  # [B or 1, K, d1]
        hidden = F.relu(user_part + item_part)
        for layer in self.mlp_layers[1:]:
            hidden = F.relu(layer(self.dropout(hidden)))
        return gmf + hidden @ mlp_weight + self.output.bias

    def pair_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """users[B], pos_items[B], neg_items[B, n_neg] -> mean BCE over all B * (1 + n_neg) pairs."""
        items = torch.cat([pos_items[:, None], neg_items], dim=1)
        return pointwise_bce(self.pair_logits(users[:, None], items).float())

    def score_users(self, users: Tensor) -> Tensor:
        """Logits of every item for users[B]: [B, n_items + 1], column 0 = -inf."""
        if users.device.type == "cpu" and not self.training:
            return self.score_users_tiled(users)
        return self.score_users_chunked(users)

    def score_users_chunked(self, users: Tensor, items_per_chunk: int = 8192) -> Tensor:
        """score_users as pair_logits over chunks of the catalogue, so [B, chunk, mlp width] activations stay
        small (the accelerator path: a few large kernels)."""
        all_items = torch.arange(self.cfg.n_items + 1, device=users.device)
        chunks = [
            self.pair_logits(users[:, None], all_items[None, start : start + items_per_chunk]).float()
            for start in range(0, all_items.numel(), items_per_chunk)
        ]
        logits = torch.cat(chunks, dim=1)
        logits[:, 0] = float("-inf")
        return logits

    @torch.no_grad()
    def score_users_tiled(self, users: Tensor, users_per_tile: int = 16, items_per_tile: int = 512) -> Tensor:
        """score_users for inference on CPU, the same function as pair_logits (eval mode). Full ranking costs one
        MLP per (user, item) pair, 9.6e9 pairs per list at ML-25M size, and it is memory-bound: chunks of
        [B, 8192, width] activations stream through RAM several times per layer. Here each tile of
        users_per_tile x items_per_tile pairs is computed into buffers that stay in cache and are reused, and each
        layer's bias and ReLU are applied in place (benchmarks/ncf_topn.py measures both paths)."""
        cfg = self.cfg
        gmf_weight, mlp_weight = self.output.weight[0].split([cfg.gmf_dim, cfg.mlp_dims[-1]])
        first = self.mlp_layers[0]
        user_weight, item_weight = first.weight.split(cfg.mlp_dims[0] // 2, dim=1)
        user_part = F.linear(self.user_mlp(users), user_weight, first.bias).float()  # [B, d1]
        item_part = F.linear(self.item_mlp.weight, item_weight).float()  # [n_items + 1, d1]
        logits = (self.user_gmf(users) * gmf_weight).float() @ self.item_gmf.weight.float().T + self.output.bias
        layers = [(layer.weight.float().T.contiguous(), layer.bias.float()) for layer in self.mlp_layers[1:]]
        mlp_weight = mlp_weight.float()
        widths = [weight.shape[1] for weight, _ in layers]
        first_buffer = torch.empty(users_per_tile * items_per_tile, cfg.mlp_dims[1])
        buffers = [torch.empty(users_per_tile * items_per_tile, width) for width in widths]
        tile_scores = torch.empty(users_per_tile * items_per_tile)
        n_items = item_part.shape[0]
        for u0 in range(0, len(users), users_per_tile):
            u1 = min(u0 + users_per_tile, len(users))
            for i0 in range(0, n_items, items_per_tile):
                i1 = min(i0 + items_per_tile, n_items)
                pairs = (u1 - u0) * (i1 - i0)
                hidden = first_buffer[:pairs].view(u1 - u0, i1 - i0, -1)
                torch.add(user_part[u0:u1, None], item_part[None, i0:i1], out=hidden).relu_()
                hidden = hidden.view(pairs, -1)
                for (weight, bias), buffer in zip(layers, buffers):
                    hidden = torch.mm(hidden, weight, out=buffer[:pairs]).add_(bias).relu_()
                scores = torch.mv(hidden, mlp_weight, out=tile_scores[:pairs])
                logits[u0:u1, i0:i1] += scores.view(u1 - u0, i1 - i0)
        logits[:, 0] = float("-inf")
        return logits

    def item_vectors(self) -> Tensor:
        """The GMF item embedding: its dot product with the user's GMF vector is the matrix-factorisation half of
        the score."""
        return self.item_gmf.weight
