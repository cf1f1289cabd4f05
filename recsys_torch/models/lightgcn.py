"""LightGCN: simplifying and powering graph convolution for recommendation (He et al., SIGIR 2020).

Users and items are the nodes of one bipartite graph whose edges are the train interactions. Only the layer-0
embeddings E_0 are parameters; each layer propagates the previous one over the symmetrically normalised adjacency

    E_{k+1} = D^-1/2 A D^-1/2 E_k          (no weight matrix, no non-linearity, no self-loop)

and a node's final vector is the mean of its layers 0..K; score(u, i) = e_u . e_i. Trained with BPR on (user,
positive, sampled negative) triples plus the paper's L2 penalty on the batch's layer-0 embeddings (`reg`). A training
step needs the final vectors of the batch's nodes only: with one layer (the default) those are exactly the batch's
rows of the graph times E_0, so only those rows are multiplied (at ML-25M size ~1/20 of the whole graph's 49M
non-zeros a step); deeper models propagate the whole graph at every step. With `per_user` every user weighs the same in the loss, as with the authors'
sampler (a user drawn uniformly, then one of their items), however many items they have.

NGCF (Wang et al., 2019) is this model plus per-layer weight matrices, non-linear activations and self-connections;
LightGCN's ablations show that those parts hurt collaborative filtering, so NGCF is not implemented.

Node layout: users 0..n_users, then items 0..n_items (item i is node n_users + 1 + i). Index 0 of both is padding
(ids are 1-based, docs/SCHEMAS.md): padding nodes have no edges, so they propagate to zero. The graph is data, not
weights: it is given after construction with `set_graph` and is not in the state dict.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys_torch.losses import bpr
from recsys_torch.model_configs import LightGCNConfig
from recsys_torch.models.base import PairModel


def normalized_adjacency(users: Tensor, items: Tensor, n_users: int, n_items: int) -> Tensor:
    """D^-1/2 A D^-1/2 of the user-item graph as a sparse COO tensor [N, N], N = n_users + n_items + 2.
    A repeated (user, item) edge counts once."""
    keys = torch.unique(users.long() * (n_items + 1) + items.long())
    users, items = keys // (n_items + 1), keys % (n_items + 1)
    offset = n_users + 1
    rows = torch.cat([users, items + offset])
    cols = torch.cat([items + offset, users])
    n_nodes = offset + n_items + 1
    inv_sqrt_degree = torch.bincount(rows, minlength=n_nodes).clamp(min=1).float().pow(-0.5)
    values = inv_sqrt_degree[rows] * inv_sqrt_degree[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n_nodes, n_nodes),
                                   check_invariants=True).coalesce()


class LightGCN(PairModel):
    train_shard = "edges"  # one (user, item) row per train edge; lightgcn.negatives negatives sampled per row
    needs_graph = True
    pair_loss_name = "bpr"

    def __init__(self, cfg: LightGCNConfig):
        super().__init__()
        self.cfg = cfg
        self.user_emb = nn.Embedding(cfg.n_users + 1, cfg.dim)
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim)
        self.adj: Tensor | None = None
        self.adj_rows: tuple[Tensor, Tensor, Tensor] | None = None  # the graph as CSR (crow, col, value): row lookup
        self.user_weight: Tensor | None = None  # per_user: each user's edge weight (set_graph)
        self._propagated: tuple[Tensor, Tensor] | None = None  # eval mode: propagated once, reused by every batch

    @torch.no_grad()
    def init_weights(self) -> None:
        """N(0, 0.1), as the authors' code (deterministic for a seed)."""
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)

    def set_graph(self, adj: Tensor) -> None:
        """The normalised adjacency (normalized_adjacency) to propagate over, moved to the embeddings' device."""
        n_nodes = self.cfg.n_users + self.cfg.n_items + 2
        if tuple(adj.shape) != (n_nodes, n_nodes):
            raise ValueError(f"the graph has {adj.shape[0]} nodes, the model {n_nodes}")
        self.adj = adj.to(self.user_emb.weight.device)
        rows, cols = self.adj.indices()  # coalesced: sorted by row, then column, as CSR wants them
        crow = torch.zeros(n_nodes + 1, dtype=torch.long, device=rows.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_nodes), 0)
        self.adj_rows = (crow, cols, self.adj.values())
        self._propagated = None
        # The authors draw a user uniformly, then one of their items; the trainer draws edges uniformly, so an edge
        # of user u is weighed (edges / users with edges) / degree(u): the same objective in expectation.
        degree = torch.bincount(self.adj.indices()[0], minlength=n_nodes)[: self.cfg.n_users + 1].float()
        has_edges = degree > 0
        self.user_weight = torch.where(has_edges, degree.sum() / has_edges.sum() / degree.clamp(min=1), 0.0)

    # Eval mode treats the weights as frozen: the propagated vectors are dropped whenever they may change.
    def train(self, mode: bool = True) -> "LightGCN":
        self._propagated = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._propagated = None
        return super().load_state_dict(*args, **kwargs)

    def propagate(self) -> tuple[Tensor, Tensor]:
        """The layer-averaged user [n_users + 1, dim] and item [n_items + 1, dim] vectors."""
        if self.adj is None:
            raise RuntimeError("LightGCN has no graph: call set_graph() before training or scoring")
        if self._propagated is not None:
            return self._propagated
        layer = torch.cat([self.user_emb.weight, self.item_emb.weight]).float()
        total = layer
        with torch.autocast(layer.device.type, enabled=False):  # sparse products in float32 (no bf16 kernels)
            for _ in range(self.cfg.n_layers):
                layer = torch.sparse.mm(self.adj, layer)
                total = total + layer
        users, items = (total / (self.cfg.n_layers + 1)).split([self.cfg.n_users + 1, self.cfg.n_items + 1])
        if not self.training:
            self._propagated = (users, items)
        return users, items

    def negatives_per_row(self, tcfg) -> int:
        return self.cfg.negatives

    def pair_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """users[B], pos_items[B], neg_items[B, n_neg] -> BPR averaged over the B * n_neg pairs (each user's
        weighted by user_weight with per_user) + reg * L2."""
        u, items = self.batch_vectors(users, torch.cat([pos_items, neg_items.reshape(-1)]))
        pos = (u * items[: len(users)]).sum(-1)
        neg = (u[:, None] * items[len(users):].view(*neg_items.shape, -1)).sum(-1)
        ranking = bpr(pos, neg, self.user_weight[users] if self.cfg.per_user else None)
        l2 = (self.user_emb(users).pow(2).sum() + self.item_emb(pos_items).pow(2).sum()
              + self.item_emb(neg_items).pow(2).sum() / neg_items.shape[1]) / (2 * len(users))
        return ranking + self.cfg.reg * l2

    def batch_vectors(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """The layer-averaged vectors of `users` and `items` (any shapes' flat indices): with one layer in training,
        from just their rows of the graph (E_1 = A_hat E_0 row by row); otherwise from the whole propagation."""
        if self.cfg.n_layers != 1 or not self.training or self.adj_rows is None:
            user_vecs, item_vecs = self.propagate()
            return user_vecs[users], item_vecs[items]
        nodes, where = torch.unique(torch.cat([users, items + self.cfg.n_users + 1]), return_inverse=True)
        layer0 = torch.cat([self.user_emb.weight, self.item_emb.weight]).float()
        with torch.autocast(layer0.device.type, enabled=False):
            vecs = (layer0[nodes] + torch.sparse.mm(self.rows_of(nodes), layer0)) / 2
        vecs = vecs[where]
        return vecs[: len(users)], vecs[len(users):]

    def rows_of(self, nodes: Tensor) -> Tensor:
        """Rows `nodes` (sorted, unique) of the normalised adjacency as a sparse [len(nodes), N] tensor."""
        crow, col, value = self.adj_rows
        starts = crow[nodes]
        counts = crow[nodes + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        first = torch.cumsum(counts, 0) - counts  # where each row's entries begin in the gathered arrays
        at = starts[row] + torch.arange(len(row), device=nodes.device) - first[row]
        return torch.sparse_coo_tensor(torch.stack([row, col[at]]), value[at], (len(nodes), crow.numel() - 1),
                                       is_coalesced=True, check_invariants=False)  # CSR order: sorted, unique

    def score_users(self, users: Tensor) -> Tensor:
        """Scores of every item for users[B]: [B, n_items + 1], column 0 = -inf."""
        user_vecs, item_vecs = self.propagate()
        logits = user_vecs[users] @ item_vecs.T
        logits[:, 0] = float("-inf")
        return logits

    def item_vectors(self) -> Tensor:
        """The layer-averaged item vectors [n_items + 1, dim] (row 0 padding): what score_users ranks by."""
        return self.propagate()[1]
