"""The next-item losses (recsys_torch.losses) against brute-force computations on a tiny catalogue."""
from __future__ import annotations

import math

import pytest
import torch

from recsys_torch import losses
from recsys_torch.losses import NextItemLoss, full_softmax_cross_entropy, proposal, sampled_softmax_cross_entropy

N_ITEMS, DIM = 12, 4


def tiny(seed: int = 0, rows: int = 5):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, DIM, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(N_ITEMS + 1, DIM, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, N_ITEMS + 1, (rows,), generator=generator)
    counts = torch.randint(1, 50, (N_ITEMS + 1,), generator=generator)
    return hidden, weight, targets, counts


def brute_force_sampled(hidden, weight, targets, negatives, q):
    """Row by row, as the formula reads: -log( e^{s_y} / (e^{s_y} + sum over drawn j != y of e^{s_j} / (K q_j)) )."""
    total = 0.0
    k = len(negatives)
    for row in range(len(targets)):
        y = int(targets[row])
        s_y = hidden[row] @ weight[y]
        terms = [s_y]
        for j in negatives.tolist():
            if j != y:  # the target is never its own negative
                terms.append(hidden[row] @ weight[j] - math.log(k * float(q[j])))
        total = total - (s_y - torch.logsumexp(torch.stack(terms), dim=0))
    return total / len(targets)


def test_sampled_loss_and_gradients_equal_the_brute_force_formula():
    hidden, weight, targets, counts = tiny()
    negatives = torch.tensor([3, 3, 7, 1, 12, targets[0].item(), targets[2].item(), 5])  # repeats and hits
    q = proposal(counts, N_ITEMS)
    log_kq = torch.log(q * len(negatives))
    ours = sampled_softmax_cross_entropy(hidden, weight, targets, negatives, log_kq)
    grads = torch.autograd.grad(ours, [hidden, weight])
    reference = brute_force_sampled(hidden, weight, targets, negatives, q)
    expected = torch.autograd.grad(reference, [hidden, weight])
    torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-6)  # logits are taken in float32
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_a_negative_equal_to_the_target_changes_nothing():
    hidden, weight, targets, counts = tiny(1, rows=1)
    log_kq = torch.log(proposal(counts, N_ITEMS) * 3)
    others = [i for i in range(1, N_ITEMS + 1) if i != int(targets[0])][:2]
    with_hit = sampled_softmax_cross_entropy(hidden, weight, targets, torch.tensor([*others, int(targets[0])]), log_kq)
    # the same two real negatives, and in place of the hit an item with a score of -inf (contributes nothing)
    weight_far = weight.detach().clone()
    weight_far = torch.cat([weight_far, torch.zeros(1, DIM, dtype=weight.dtype)])
    log_kq_far = torch.cat([log_kq, torch.tensor([float("inf")], dtype=log_kq.dtype)])
    without = sampled_softmax_cross_entropy(hidden, weight_far, targets, torch.tensor([*others, N_ITEMS + 1]),
                                            log_kq_far)
    torch.testing.assert_close(with_hit, without)


def test_with_many_draws_the_corrected_sampled_loss_approaches_the_full_softmax():
    hidden, weight, targets, counts = tiny(2, rows=8)
    hidden, weight = hidden.detach(), weight.detach()
    full = full_softmax_cross_entropy(hidden, weight, targets)
    q = proposal(counts, N_ITEMS)
    torch.manual_seed(0)
    k = 200_000
    negatives = torch.multinomial(q.float(), k, replacement=True)
    sampled = sampled_softmax_cross_entropy(hidden, weight, targets, negatives, torch.log(q * k))
    assert abs(float(sampled) - float(full)) < 0.02 * float(full), (float(sampled), float(full))
    # uncorrected, the same draws give a visibly different (popularity-biased) loss
    biased = sampled_softmax_cross_entropy(hidden, weight, targets, negatives, torch.zeros_like(q) + math.log(k))
    assert abs(float(biased) - float(full)) > 5 * abs(float(sampled) - float(full))


def test_full_softmax_never_ranks_padding_and_chunks_agree(monkeypatch):
    hidden, weight, targets, _ = tiny(3, rows=7)
    logits = hidden @ weight.T
    logits[:, 0] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits, targets).float()  # the loss takes logits in float32
    whole = full_softmax_cross_entropy(hidden, weight, targets)
    monkeypatch.setattr(losses, "LOGITS_PER_CHUNK", 2 * (N_ITEMS + 1))  # 2 rows a chunk, checkpointed
    chunked = full_softmax_cross_entropy(hidden, weight, targets)
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(chunked, expected)
    grad_whole = torch.autograd.grad(whole, weight)[0]
    grad_chunked = torch.autograd.grad(chunked, weight)[0]
    torch.testing.assert_close(grad_whole, grad_chunked)
    assert torch.all(grad_whole[0] == 0)


def test_proposal_gives_every_item_a_chance_and_padding_none():
    q = proposal(torch.tensor([5, 0, 3, 1]), 3)
    assert q[0] == 0 and (q[1:] > 0).all() and torch.isclose(q.sum(), torch.tensor(1.0, dtype=q.dtype))
    assert q[2] > q[3] and q[1] == q[3]  # an unseen item gets the pseudo-count of one


def test_next_item_loss_module_dispatch():
    hidden, weight, targets, counts = tiny(4)
    with pytest.raises(ValueError, match="item counts"):
        NextItemLoss("sampled_ce", N_ITEMS)
    with pytest.raises(ValueError, match="loss must be"):
        NextItemLoss("hinge", N_ITEMS)
    torch.manual_seed(0)
    for kind in ("ce", "sampled_ce", "bce"):
        value = NextItemLoss(kind, N_ITEMS, negatives=6, item_counts=counts)(hidden.float(), weight.float(), targets)
        assert value.ndim == 0 and torch.isfinite(value)
    empty = NextItemLoss("ce", N_ITEMS)(hidden[:0].float(), weight.float(), targets[:0])
    assert float(empty) == 0.0


def test_every_target_position_weighs_the_same_whatever_the_batch():
    """Sequence batches are grouped by length: the trainer's loss scales each batch's mean by its share of targets,
    so a batch of short windows does not give its few positions the weight of a full batch."""
    from recsys_torch.models import build_model
    from recsys_torch.trainer import LossModule

    torch.manual_seed(0)
    model = build_model("sasrec", {"n_items": N_ITEMS, "hidden": 8, "n_heads": 1, "n_layers": 1, "max_len": 6,
                                   "dropout": 0.0}, "cpu")
    module = LossModule(model, NextItemLoss("ce", N_ITEMS, targets_per_row=4.0))
    full = {"items": torch.tensor([[1, 2, 3, 4, 5, 6]] * 2), "timestamps": torch.zeros(2, 6, dtype=torch.long),
            "targets": torch.tensor([[0, 0, 4, 5, 6, 7]] * 2)}  # 4 targets a row: the average
    short = {**full, "targets": torch.tensor([[0, 0, 0, 0, 6, 7]] * 2)}  # 2 a row
    hidden = model(full["items"], full["timestamps"])
    per_position = torch.nn.functional.cross_entropy(
        (hidden @ model.item_emb.weight.T).masked_fill(torch.arange(N_ITEMS + 1) == 0, float("-inf")).flatten(0, 1),
        full["targets"].flatten(), reduction="none", ignore_index=0)
    torch.testing.assert_close(module(full), per_position.sum() / 8)
    torch.testing.assert_close(module(short), per_position.view(2, 6)[:, 4:].sum() / 8)
