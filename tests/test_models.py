"""Tests of the torch models (recsys_torch.models): CPU only, the whole file well under a minute."""
from __future__ import annotations

import math

import pytest
import torch

from recsys_torch.losses import NextItemLoss
from recsys_torch.models import MODELS, build_model
from recsys_torch.config import TrainConfig
from recsys_torch.models.base import PairModel, SequenceModel, TrainSplit
from recsys_torch.trainer import LossModule
from recsys_torch.models.lightgcn import normalized_adjacency
from recsys_torch.models.ss4rec import chunked_linear_scan

N_ITEMS = 50
DAY = 86400
SEQUENCE_MODELS = ["sasrec", "ss4rec"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: one thread is as fast, and far faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(name: str, **overrides) -> dict:
    cfg = {"n_items": N_ITEMS}
    if name == "ncf":
        cfg |= {"n_users": 100, "gmf_dim": 16, "mlp_dims": [32, 16], "dropout": 0.0}
    elif name == "lightgcn":
        cfg |= {"n_users": 100, "dim": 16, "n_layers": 2}
    else:
        cfg |= {"hidden": 32, "n_layers": 1, "dropout": 0.1, "max_len": 20}
    if name == "ss4rec":
        cfg |= {"state_size": 8, "time_state_size": 8}
    return cfg | overrides


def make_model(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model(name, small_config(name, **overrides), "cpu")
    if model.needs_graph:  # a random graph over every user and item
        users = torch.arange(1, model.cfg.n_users + 1).repeat_interleave(3)
        items = torch.randint(1, model.cfg.n_items + 1, (len(users),), generator=torch.Generator().manual_seed(1))
        model.set_graph(normalized_adjacency(users, items, model.cfg.n_users, model.cfg.n_items))
    return model


def next_item_loss(model, items, timestamps, targets, kind: str = "ce", query_timestamps=None):
    """What the trainer minimises: the loss over the hidden states of positions with a target."""
    hidden = model(items, timestamps, query_timestamps)
    has_target = targets != 0
    loss = NextItemLoss(kind, N_ITEMS, negatives=16, item_counts=torch.ones(N_ITEMS + 1))
    return loss(hidden[has_target], model.item_emb.weight, targets[has_target])


def left_padded_batch(lengths: list[int], max_len: int, generator: torch.Generator):
    """Random items and increasing timestamps (irregular gaps, seconds), left-padded to max_len."""
    items = torch.zeros(len(lengths), max_len, dtype=torch.long)
    timestamps = torch.zeros(len(lengths), max_len, dtype=torch.long)
    for row, length in enumerate(lengths):
        if length:
            items[row, -length:] = torch.randint(1, N_ITEMS + 1, (length,), generator=generator)
            gaps = (torch.rand(length, generator=generator) * 30 * DAY).long()
            timestamps[row, -length:] = 1_500_000_000 + gaps.cumsum(0)
    return items, timestamps


# ---------------------------------------------------------------- registry and construction


@pytest.mark.parametrize("name", sorted(MODELS))
def test_meta_build_materialises_every_tensor_deterministically(name):
    first, second, other_seed = make_model(name, seed=7), make_model(name, seed=7), make_model(name, seed=8)
    tensors = list(first.parameters()) + list(first.buffers())
    assert tensors and not any(t.is_meta for t in tensors)
    assert all(t.device.type == "cpu" for t in tensors)
    state, state_again, state_other = first.state_dict(), second.state_dict(), other_seed.state_dict()
    assert all(torch.equal(state[key], state_again[key]) for key in state)
    assert any(not torch.equal(state[key], state_other[key]) for key in state)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_init_weights_initialises_every_parameter(name):
    model = make_model(name)
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.fill_(float("nan"))
    model.init_weights()
    for key, tensor in model.state_dict().items():
        assert torch.isfinite(tensor).all(), key


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_config_key_names_the_key(name):
    with pytest.raises(ValueError, match="hiddden"):
        build_model(name, small_config(name, hiddden=8), "cpu")


def test_unknown_model_and_bad_values_raise_value_error():
    with pytest.raises(ValueError, match="gpt"):
        build_model("gpt", {"n_items": 5}, "cpu")
    with pytest.raises(ValueError, match="n_heads"):
        build_model("sasrec", {"n_items": 5, "hidden": 10, "n_heads": 3}, "cpu")
    with pytest.raises(ValueError, match="n_users"):
        build_model("ncf", {"n_items": 5}, "cpu")


# ---------------------------------------------------------------- shapes, padding, causality


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_sequence_model_shapes_and_no_nan_with_padded_rows(name):
    model = make_model(name)
    generator = torch.Generator().manual_seed(0)
    items, timestamps = left_padded_batch([20, 7, 1, 0], 20, generator)  # last row fully padded
    targets = items.roll(-1, dims=1) * (items != 0)
    hidden = model(items, timestamps)
    assert hidden.shape == (4, 20, 32) and torch.isfinite(hidden).all()
    loss = next_item_loss(model, items, timestamps, targets)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    scores = model.score_last(items, timestamps, timestamps[:, -1] + 60)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


@pytest.mark.parametrize("kind", ["bce", "sampled_ce"])
def test_sasrec_sampled_losses_are_finite_with_padded_rows(kind):
    model = make_model("sasrec")
    items, timestamps = left_padded_batch([20, 3, 0], 20, torch.Generator().manual_seed(1))
    loss = next_item_loss(model, items, timestamps, items.roll(-1, dims=1) * (items != 0), kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.item_emb.weight.grad).all()


def test_ncf_shapes_and_scores_equal_textbook_neumf():
    model = make_model("ncf", mlp_dims=[32, 16, 8]).eval()
    with torch.no_grad():  # weights far from the init's N(0, 0.01), so that every ReLU and bias matters
        for param in model.parameters():
            param.normal_(0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    users = torch.tensor([1, 2, 100])
    loss = model.pair_loss(users, torch.tensor([1, 2, 3]), torch.randint(1, N_ITEMS + 1, (3, 4)))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    with torch.no_grad():
        # He et al. 2017, eq. 11-12: concat -> ReLU MLP; [GMF ; MLP] -> output layer
        u, i = users[:, None].expand(-1, N_ITEMS), torch.arange(1, N_ITEMS + 1).expand(3, -1)
        hidden = torch.cat([model.user_mlp(u), model.item_mlp(i)], dim=-1)
        for layer in model.mlp_layers:
            hidden = torch.relu(layer(hidden))
        expected = model.output(torch.cat([model.user_gmf(u) * model.item_gmf(i), hidden], dim=-1)).squeeze(-1)
        assert expected.std() > 1.0
        for scores in (model.score_users(users),  # the CPU inference path: cache-sized tiles
                       model.score_users_chunked(users, items_per_chunk=16),  # the accelerator path
                       model.score_users_tiled(users, users_per_tile=2, items_per_tile=7)):  # ragged last tiles
            assert scores.shape == (3, N_ITEMS + 1) and torch.isneginf(scores[:, 0]).all()
            torch.testing.assert_close(scores[:, 1:], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_changing_a_later_item_leaves_earlier_hidden_states_unchanged(name):
    model = make_model(name).eval()
    items, timestamps = left_padded_batch([20, 15], 20, torch.Generator().manual_seed(2))
    changed = items.clone()
    changed[:, 12] = changed[:, 12] % N_ITEMS + 1
    with torch.no_grad():
        before, after = model(items, timestamps), model(changed, timestamps)
    torch.testing.assert_close(before[:, :12], after[:, :12], rtol=0, atol=1e-6)
    assert (before[:, 12] - after[:, 12]).abs().max() > 1e-3


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_amount_of_left_padding_does_not_change_hidden_states(name):
    model = make_model(name).eval()
    items, timestamps = left_padded_batch([9], 20, torch.Generator().manual_seed(3))
    with torch.no_grad():
        long_pad = model(items, timestamps)[:, -9:]
        short_pad = model(items[:, -12:], timestamps[:, -12:])[:, -9:]
    torch.testing.assert_close(long_pad, short_pad, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_runs_under_bfloat16_autocast(name):
    model = make_model(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if isinstance(model, PairModel):
            loss = model.pair_loss(torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5], [6]]))
            scores = model.score_users(torch.tensor([1, 2]))
        else:
            items, timestamps = left_padded_batch([20, 4, 0], 20, torch.Generator().manual_seed(4))
            loss = next_item_loss(model, items, timestamps, items.roll(-1, dims=1) * (items != 0))
            scores = model.score_last(items, timestamps, timestamps[:, -1] + 1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores[:, 1:]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_scores_and_gives_item_vectors_through_the_contract_alone(name):
    """What the trainer, validation and top-N call (models/base.py), on batches of the columns the model declares:
    a finite loss whose gradient reaches every parameter, full-ranking logits, one item vector per item."""
    from recsys_torch import schemas

    model = make_model(name)
    assert isinstance(model, (SequenceModel, PairModel))
    shard_rows = {"train": schemas.SEQUENCE_ROWS, "ncf_train": schemas.NCF_ROWS, "edges": schemas.EDGE_ROWS}
    assert set(model.train_columns) <= set(shard_rows[model.train_shard].names)  # columns its shard has
    generator = torch.Generator().manual_seed(5)
    items, timestamps = left_padded_batch([12, 7, 3], 20, generator)
    users = torch.tensor([1, 2, 3])
    columns = {"user_idx": users, "item_idx": torch.tensor([4, 5, 6]), "items": items, "timestamps": timestamps,
               "targets": items.roll(-1, dims=1) * (items != 0)}
    batch = {column: columns[column] for column in model.train_columns}
    tcfg = TrainConfig(negatives=8)
    negatives = model.negatives_per_row(tcfg)
    assert negatives == 0 if isinstance(model, SequenceModel) else negatives >= 1  # a pair model needs negatives
    if negatives:
        batch["neg_items"] = torch.randint(1, N_ITEMS + 1, (3, negatives), generator=generator)
    split = TrainSplit(rows=3, target_counts=lambda: torch.ones(N_ITEMS + 1, dtype=torch.long))
    model.train()
    loss = LossModule(model, model.make_loss(tcfg, False, split))(model.trim(batch))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and isinstance(model.loss_name(tcfg, False), str)
    assert all(p.grad is not None for p in model.parameters())

    evaluation = {"user_idx": users, "items": items, "timestamps": timestamps, "seen_items": items,
                  "query_timestamp": timestamps[:, -1] + 60, "target_item": torch.tensor([1, 2, 3])}
    model.eval()
    with torch.no_grad():
        trimmed = model.trim(evaluation)
        logits = model.score(trimmed)
        torch.testing.assert_close(logits, model.score(evaluation), rtol=0, atol=1e-5)  # trimming changes no score
    if isinstance(model, SequenceModel):  # the history's left padding is cut: 12 of 20 positions are items
        assert trimmed["items"].shape == (3, 12)
    assert logits.shape == (3, N_ITEMS + 1) and torch.isneginf(logits[:, 0]).all()
    assert torch.isfinite(logits[:, 1:]).all()
    assert model.item_vectors().shape[0] == N_ITEMS + 1


# ---------------------------------------------------------------- LightGCN against a dense reference

TINY_EDGES = [(1, 1), (1, 2), (2, 2), (2, 3), (2, 3), (3, 1), (3, 4), (3, 5), (1, 5)]  # (2, 3) twice
TINY_USERS, TINY_ITEMS = 4, 6  # user 4 and item 6 have no edge


def dense_lightgcn(user_emb: torch.Tensor, item_emb: torch.Tensor, n_layers: int):
    """The paper's equations, dense and in float64: A of the bipartite graph (a repeated edge once), its
    D^-1/2 A D^-1/2 (0 for a node without edges), E_{k+1} = L E_k, the mean of E_0..E_K."""
    offset = TINY_USERS + 1
    n_nodes = offset + TINY_ITEMS + 1
    adjacency = torch.zeros(n_nodes, n_nodes, dtype=torch.float64)
    for user, item in set(TINY_EDGES):
        adjacency[user, offset + item] = adjacency[offset + item, user] = 1.0
    degree = adjacency.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    laplacian = inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    layers = [torch.cat([user_emb, item_emb]).double()]
    for _ in range(n_layers):
        layers.append(laplacian @ layers[-1])
    final = torch.stack(layers).mean(0)
    return laplacian, final[:offset], final[offset:]


def tiny_lightgcn(n_layers: int = 3, reg: float = 0.01, per_user: bool = True):
    torch.manual_seed(3)
    model = build_model("lightgcn", {"n_users": TINY_USERS, "n_items": TINY_ITEMS, "dim": 5, "n_layers": n_layers,
                                     "reg": reg, "per_user": per_user}, "cpu")
    users, items = (torch.tensor(column) for column in zip(*TINY_EDGES))
    model.set_graph(normalized_adjacency(users, items, TINY_USERS, TINY_ITEMS))
    return model


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_lightgcn_propagation_matches_a_dense_reference_on_a_tiny_graph(n_layers):
    model = tiny_lightgcn(n_layers).eval()
    laplacian, users, items = dense_lightgcn(model.user_emb.weight.detach(), model.item_emb.weight.detach(), n_layers)
    torch.testing.assert_close(model.adj.to_dense().double(), laplacian, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        got_users, got_items = model.propagate()
    torch.testing.assert_close(got_users.double(), users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_items.double(), items, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        scores = model.score_users(torch.tensor([1, 2, 3, 4]))
    assert torch.isneginf(scores[:, 0]).all()
    torch.testing.assert_close(scores[:, 1:].double(), users[1:] @ items[1:].T, rtol=1e-5, atol=1e-6)
    # a node without edges keeps only its own layer-0 share
    torch.testing.assert_close(got_items[6], model.item_emb.weight[6].detach() / (n_layers + 1))


@pytest.mark.parametrize("n_layers", [1, 2])  # one layer: only the batch's rows of the graph are multiplied
@pytest.mark.parametrize("per_user", [False, True])
def test_lightgcn_bpr_loss_and_its_gradient_match_the_dense_reference(per_user, n_layers):
    model = tiny_lightgcn(n_layers=n_layers, reg=0.01, per_user=per_user).train()
    users, positives = torch.tensor([1, 2, 3, 3]), torch.tensor([2, 3, 4, 5])
    negatives = torch.tensor([[3, 6], [1, 4], [2, 6], [1, 3]])
    loss = model.pair_loss(users, positives, negatives)
    loss.backward()

    user_emb = model.user_emb.weight.detach().double().requires_grad_()
    item_emb = model.item_emb.weight.detach().double().requires_grad_()
    _, u, i = dense_lightgcn(user_emb, item_emb, n_layers)
    pos = (u[users] * i[positives]).sum(-1)
    neg = (u[users][:, None] * i[negatives]).sum(-1)
    bpr = -torch.log(torch.sigmoid(pos[:, None] - neg)).mean(1)
    if per_user:  # as if users were drawn uniformly: (8 edges / 3 users with edges) / the user's degree
        degree = {user: sum(1 for u, _ in set(TINY_EDGES) if u == user) for user in (1, 2, 3)}
        bpr = bpr * torch.tensor([8 / 3 / degree[int(u)] for u in users], dtype=torch.float64)
    bpr = bpr.mean()
    l2 = 0.5 * (user_emb[users].pow(2).sum() + item_emb[positives].pow(2).sum()
                + item_emb[negatives].pow(2).sum() / 2) / len(users)  # the negatives' share averaged over 2 each
    expected = bpr + 0.01 * l2
    expected.backward()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model.user_emb.weight.grad.double(), user_emb.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(model.item_emb.weight.grad.double(), item_emb.grad, rtol=1e-4, atol=1e-7)


def test_lightgcn_rows_of_the_graph_are_the_adjacency_rows_including_nodes_without_edges():
    model = tiny_lightgcn(n_layers=1)
    nodes = torch.tensor([0, 2, 4, 5 + 3, 5 + 6])  # padding, users 2 and 4 (no edges), items 3 and 6 (no edges)
    torch.testing.assert_close(model.rows_of(nodes).to_dense(), model.adj.to_dense()[nodes])


# the paper's reference settings (He et al. 2020, section 4.1.2, and the authors' code): 64-d embeddings, K = 3
# layers, L2 1e-4 on the batch's layer-0 embeddings, BPR with one negative
PAPER_SETTINGS = {"dim": 64, "n_layers": 3, "reg": 1e-4, "negatives": 1, "per_user": False}


def test_lightgcn_at_the_papers_settings_equals_its_matrix_form_on_a_random_graph():
    """The paper's formulas written another way than the layer loop: A = [[0, R], [R^T, 0]] over the real ids only
    (no padding rows), A_hat = D^-1/2 A D^-1/2 (an isolated node's 0^-1/2 set to 0, as the authors' code),
    E = (sum_k alpha_k A_hat^k) E_0 with alpha_k = 1 / (K + 1); loss = mean of -ln sigmoid(y_ui - y_uj) over the
    batch + reg * (||e_u^0||^2 + ||e_i^0||^2 + ||e_j^0||^2) / (2 B) (the authors' `reg_loss`: layer-0 vectors of
    the batch only). Loss and every embedding's gradient must agree."""
    n_users, n_items = 30, 40
    gen = torch.Generator().manual_seed(11)
    users = torch.randint(1, n_users, (300,), generator=gen)  # user n_users and item n_items stay isolated;
    items = torch.randint(1, n_items, (300,), generator=gen)  # repeated pairs are one edge
    torch.manual_seed(5)
    model = build_model("lightgcn", {"n_users": n_users, "n_items": n_items, **PAPER_SETTINGS}, "cpu").train()
    model.set_graph(normalized_adjacency(users, items, n_users, n_items))

    R = torch.zeros(n_users, n_items, dtype=torch.float64)
    R[users - 1, items - 1] = 1.0
    A = torch.zeros(n_users + n_items, n_users + n_items, dtype=torch.float64)
    A[:n_users, n_users:], A[n_users:, :n_users] = R, R.T
    d_inv_sqrt = A.sum(1).pow(-0.5)
    d_inv_sqrt[torch.isinf(d_inv_sqrt)] = 0.0
    A_hat = d_inv_sqrt[:, None] * A * d_inv_sqrt[None, :]
    K = PAPER_SETTINGS["n_layers"]
    smoothing = sum(torch.linalg.matrix_power(A_hat, k) for k in range(K + 1)) / (K + 1)
    E0 = torch.cat([model.user_emb.weight[1:], model.item_emb.weight[1:]]).detach().double().requires_grad_()
    E = smoothing @ E0
    e_user, e_item = E[:n_users], E[n_users:]

    batch = torch.randint(0, len(users), (64,), generator=gen)
    b_users, b_pos = users[batch], items[batch]
    b_neg = torch.randint(1, n_items + 1, (64,), generator=gen)
    y_ui = (e_user[b_users - 1] * e_item[b_pos - 1]).sum(1)
    y_uj = (e_user[b_users - 1] * e_item[b_neg - 1]).sum(1)
    ego = E0[b_users - 1].pow(2).sum() + E0[n_users + b_pos - 1].pow(2).sum() + E0[n_users + b_neg - 1].pow(2).sum()
    expected = -torch.log(torch.sigmoid(y_ui - y_uj)).mean() + PAPER_SETTINGS["reg"] * ego / (2 * len(batch))
    expected.backward()

    loss = model.pair_loss(b_users, b_pos, b_neg[:, None])
    loss.backward()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    grad_users, grad_items = model.user_emb.weight.grad.double(), model.item_emb.weight.grad.double()
    torch.testing.assert_close(grad_users[1:], E0.grad[:n_users], rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(grad_items[1:], E0.grad[n_users:], rtol=1e-4, atol=1e-8)
    assert not grad_users[0].any() and not grad_items[0].any()  # padding: no edge, never in a batch
    with torch.no_grad():  # and the propagated vectors themselves, which score_users ranks by
        got_users, got_items = model.propagate()
    torch.testing.assert_close(got_users[1:].double(), e_user.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_items[1:].double(), e_item.detach(), rtol=1e-5, atol=1e-6)


def test_lightgcn_scores_follow_new_weights_and_a_new_graph():
    """Eval mode propagates once and reuses it; a training step, weights loaded after eval() or a new graph must
    not leave stale vectors behind."""
    model = tiny_lightgcn().eval()
    with torch.no_grad():
        before = model.score_users(torch.tensor([1]))
        model.train()  # scores are bilinear in the layer-0 embeddings: all of them x2 -> scores x4
        model.user_emb.weight.mul_(2.0)
        model.item_emb.weight.mul_(2.0)
        model.eval()
        assert torch.allclose(model.score_users(torch.tensor([1]))[:, 1:], 4 * before[:, 1:], rtol=1e-5)
        model.load_state_dict({name: 2 * value for name, value in model.state_dict().items()})
        assert torch.allclose(model.score_users(torch.tensor([1]))[:, 1:], 16 * before[:, 1:], rtol=1e-5)
        model.set_graph(normalized_adjacency(torch.tensor([1]), torch.tensor([1]), TINY_USERS, TINY_ITEMS))
        assert not torch.allclose(model.score_users(torch.tensor([1]))[:, 1:], 16 * before[:, 1:])
    with pytest.raises(ValueError, match="nodes"):
        model.set_graph(normalized_adjacency(torch.tensor([1]), torch.tensor([1]), TINY_USERS + 1, TINY_ITEMS))


# ---------------------------------------------------------------- SS4Rec scan and time gaps


def sequential_scan(log_decay, inputs):
    state, states = torch.zeros_like(inputs[:, 0]), []
    for t in range(inputs.shape[1]):
        state = log_decay[:, t].exp() * state + inputs[:, t]
        states.append(state)
    return torch.stack(states, dim=1)


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 6, 37, 64])
def test_chunked_scan_equals_sequential_scan_real(chunk_size):
    generator = torch.Generator().manual_seed(5)
    log_decay = -2.0 * torch.rand(3, 37, 5, 4, generator=generator)
    inputs = torch.randn(3, 37, 5, 4, generator=generator)
    torch.testing.assert_close(
        chunked_linear_scan(log_decay, inputs, chunk_size), sequential_scan(log_decay, inputs), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("chunk_size", [None, 3, 8])
def test_chunked_scan_equals_sequential_scan_complex_irregular_gaps(chunk_size):
    generator = torch.Generator().manual_seed(6)
    eigenvalues = torch.complex(-torch.rand(6, generator=generator), math.pi * torch.arange(6.0))
    gaps = torch.rand(2, 41, generator=generator) ** 4 * 400 * DAY  # mostly short, a few months-long
    step = 0.05 * (1 + torch.log1p(gaps / DAY))
    step[0, :10] = 0.0  # padding: identity steps
    log_decay = eigenvalues * step[..., None]
    inputs = torch.randn(2, 41, 6, dtype=torch.complex64, generator=generator) * (step[..., None] > 0)
    torch.testing.assert_close(
        chunked_linear_scan(log_decay, inputs, chunk_size), sequential_scan(log_decay, inputs), rtol=0, atol=1e-5
    )


def test_time_aware_ssm_matches_a_sequential_reference():
    model = make_model("ss4rec").eval()
    items, timestamps = left_padded_batch([20, 11], 20, torch.Generator().manual_seed(7))
    query = timestamps[:, -1] + 3 * DAY
    step_scale = model.step_scale(timestamps, items != 0, query)
    ssm = model.layers[0].time_ssm
    u = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = ssm(u, step_scale)
        eigenvalues = torch.complex(-ssm.log_neg_real.exp(), ssm.imag)
        b = torch.complex(ssm.input_matrix[0], ssm.input_matrix[1])
        c = torch.complex(ssm.output_matrix[0], ssm.output_matrix[1])
        state, expected = torch.zeros(2, eigenvalues.numel(), dtype=torch.complex64), []
        for k in range(20):
            gap_days = torch.where(
                torch.tensor(k < 19), timestamps[:, min(k + 1, 19)] - timestamps[:, k], query - timestamps[:, k]
            ) / DAY
            step = ssm.log_base_step.exp() * ((1 + torch.log1p(gap_days)) * (items[:, k] != 0))[:, None]
            decay = torch.exp(eigenvalues * step)
            state = decay * state + (decay - 1) / eigenvalues * (u[:, k].to(torch.complex64) @ b.T)
            expected.append((state @ c.T).real + ssm.skip * u[:, k])
    torch.testing.assert_close(out, torch.stack(expected, dim=1), rtol=0, atol=1e-5)


def test_ss4rec_output_depends_on_time_gaps():
    model = make_model("ss4rec").eval()
    items, timestamps = left_padded_batch([20], 20, torch.Generator().manual_seed(9))
    stretched = timestamps.clone()
    stretched[:, 10:] += 90 * DAY  # the gap between positions 9 and 10 becomes three months longer
    with torch.no_grad():
        base, moved = model(items, timestamps), model(items, stretched)
        torch.testing.assert_close(base[:, :9], moved[:, :9], rtol=0, atol=1e-6)  # positions before the gap
        assert (base[:, 9:] - moved[:, 9:]).abs().max() > 1e-3
        soon = model.score_last(items, timestamps, timestamps[:, -1] + 60)
        later = model.score_last(items, timestamps, timestamps[:, -1] + 200 * DAY)
    assert (soon[:, 1:] - later[:, 1:]).abs().max() > 1e-3


# ---------------------------------------------------------------- learning planted patterns


def planted_sequences(n_rows: int, length: int, generator: torch.Generator, time_dependent: bool):
    """Rows of length+1 items; item k+1 follows item k by a rule.

    time_dependent=False: next = item % 50 + 1 (90%) or a random item; gaps random.
    time_dependent=True: a gap of one minute -> next = item % 50 + 1, a gap of 30 days ->
    next = (item + 25) % 50 + 1; from the items alone, either is equally likely.
    Returns items, timestamps [n_rows, length + 1] with random left padding (>= 3 items).
    """
    items = torch.zeros(n_rows, length + 1, dtype=torch.long)
    timestamps = torch.zeros(n_rows, length + 1, dtype=torch.long)
    for row in range(n_rows):
        size = int(torch.randint(3, length + 2, (1,), generator=generator))
        current = int(torch.randint(1, N_ITEMS + 1, (1,), generator=generator))
        time = 1_500_000_000
        for k in range(length + 1 - size, length + 1):
            items[row, k], timestamps[row, k] = current, time
            long_gap = bool(torch.rand(1, generator=generator) < 0.5)
            time += 30 * DAY if long_gap else 60
            if time_dependent:
                current = (current + 25) % N_ITEMS + 1 if long_gap else current % N_ITEMS + 1
            elif torch.rand(1, generator=generator) < 0.9:
                current = current % N_ITEMS + 1
            else:
                current = int(torch.randint(1, N_ITEMS + 1, (1,), generator=generator))
    return items, timestamps


def train_sequence_model(model, items, timestamps, steps: int, batch_size: int = 64, lr: float = 5e-3,
                         loss: str = "ce"):
    """Train on windows: input = row[:-1], targets = row[1:], the last step at the time of the last target."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(10)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, items.shape[0], (batch_size,), generator=generator)
        inputs, targets = items[rows, :-1], items[rows, 1:] * (items[rows, :-1] != 0)
        value = next_item_loss(model, inputs, timestamps[rows, :-1], targets, loss, timestamps[rows, -1])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return model.eval()


def hit_rate(scores: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    return (scores.topk(k, dim=1).indices == targets[:, None]).any(dim=1).float().mean().item()


@pytest.mark.parametrize("name,loss", [("sasrec", "ce"), ("sasrec", "bce"), ("sasrec", "sampled_ce"),
                                       ("ss4rec", "ce")])
def test_sequence_model_learns_next_item_pattern(name, loss):
    generator = torch.Generator().manual_seed(11)
    train_items, train_times = planted_sequences(2000, 20, generator, time_dependent=False)
    test_items, test_times = planted_sequences(300, 20, generator, time_dependent=False)
    model = train_sequence_model(make_model(name), train_items, train_times, steps=100, loss=loss)
    with torch.no_grad():
        scores = model.score_last(test_items[:, :-1], test_times[:, :-1], test_times[:, -1])
    popularity = torch.bincount(train_items[:, 1:].flatten(), minlength=N_ITEMS + 1).float()
    popularity[0] = float("-inf")
    model_hr = hit_rate(scores, test_items[:, -1], 10)
    popularity_hr = hit_rate(popularity.expand(len(test_items), -1), test_items[:, -1], 10)
    assert popularity_hr < 0.35
    assert model_hr > 0.85, (model_hr, popularity_hr)


def test_ss4rec_uses_the_gap_to_the_query_time():
    generator = torch.Generator().manual_seed(12)
    train_items, train_times = planted_sequences(2000, 20, generator, time_dependent=True)
    test_items, test_times = planted_sequences(300, 20, generator, time_dependent=True)
    model = train_sequence_model(make_model("ss4rec", dropout=0.0), train_items, train_times, steps=180, lr=1e-2)
    with torch.no_grad():
        scores = model.score_last(test_items[:, :-1], test_times[:, :-1], test_times[:, -1])
    # a model blind to time can only guess between the two successors: HR@1 about 0.5
    assert hit_rate(scores, test_items[:, -1], 1) > 0.8


def test_ncf_learns_user_item_clusters():
    """User u likes the 10 items of cluster u % 5; 7 are seen in training, one held-out one is the test."""
    generator = torch.Generator().manual_seed(13)
    n_users, seen_per_user = 100, 7
    train_users, train_items, test_items = [], [], []
    for user in range(1, n_users + 1):
        cluster = torch.arange(10) + 10 * (user % 5) + 1
        cluster = cluster[torch.randperm(10, generator=generator)]
        train_users += [user] * seen_per_user
        train_items += cluster[:seen_per_user].tolist()
        test_items.append(int(cluster[seen_per_user]))
    train_users, train_items = torch.tensor(train_users), torch.tensor(train_items)

    model = make_model("ncf")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(300):
        rows = torch.randint(0, len(train_users), (128,), generator=generator)
        negatives = torch.randint(1, N_ITEMS + 1, (128, 4), generator=generator)
        loss = model.pair_loss(train_users[rows], train_items[rows], negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    users = torch.arange(1, n_users + 1)
    with torch.no_grad():
        scores = model.score_users(users)
    scores[train_users - 1, train_items] = float("-inf")  # exclude seen items, as the evaluator does
    popularity = torch.bincount(train_items, minlength=N_ITEMS + 1).float().expand(n_users, -1).clone()
    popularity[:, 0] = float("-inf")
    popularity[train_users - 1, train_items] = float("-inf")
    targets = torch.tensor(test_items)
    assert hit_rate(popularity, targets, 10) < 0.45
    assert hit_rate(scores, targets, 10) > 0.9


def test_selective_scan_matches_the_sequential_recurrence_forward_and_backward():
    from recsys_torch.models.selective_scan import SelectiveScan

    generator = torch.Generator().manual_seed(21)
    batch, length, inner, state = 3, 37, 5, 4  # the length is no multiple of the chunk

    def tensor(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).requires_grad_()

    u, B, C = tensor(batch, length, inner), tensor(batch, length, state), tensor(batch, length, state)
    delta = (torch.rand(batch, length, inner, generator=generator, dtype=torch.float64) * 0.5).requires_grad_()
    A = (-torch.rand(inner, state, generator=generator, dtype=torch.float64) * 3).requires_grad_()

    h = torch.zeros(batch, inner, state, dtype=torch.float64)
    reference = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        reference.append((h * C[:, t, None, :]).sum(-1))
    reference = torch.stack(reference, dim=1)
    ours = SelectiveScan.apply(u, delta, A, B, C, 8)
    torch.testing.assert_close(ours, reference)
    dy = torch.randn(reference.shape, generator=generator, dtype=torch.float64)
    inputs = (u, delta, A, B, C)
    for got, want in zip(torch.autograd.grad(ours, inputs, dy), torch.autograd.grad(reference, inputs, dy)):
        torch.testing.assert_close(got, want)
