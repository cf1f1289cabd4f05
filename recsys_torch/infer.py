"""Full-ranking top-K for every user of the `test/` shard with a trained model -> the `recommendations` table
(and of the `validation/` shard -> `recommendations_validation`, the list a blend or a tuner chooses on), and the
model's item vectors -> the `item_embeddings` table (similar-item look-ups in recsys_serve).

History = train + validation items (the test row's `items`; train only in a validation row), scored at the row's
`query_timestamp` (meta.json `last_gap` says what that time is); a graph model propagates over the train edges plus,
for test lists, each user's validation item (recsys_torch.graph). The user's seen items are excluded before
`metrics.top_k` (score desc, then the tie key of recsys_core.ties from meta.json). `sampled_ranks`: the literature's sampled protocol (the target against a few items drawn at random),
an extra figure beside the full ranking, never instead of it.
"""
from __future__ import annotations

import datetime as dt
import gc
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from recsys_core import catalogue
from recsys_core.config import POSITIVE, check_value
from recsys_torch import checkpoint as ckpt_io
from recsys_torch.data import ShardSpec, make_loader
from recsys_torch.shards import EVAL_COLUMNS, read_columns, read_id_map, read_meta, sequences_dir, shard_path
from recsys_torch.errors import RecsysError
from recsys_torch.evaluation import eval_batches, score_batch
from recsys_core.ties import Ties
from recsys_torch.metrics import mask_seen, target_ranks, top_k
from recsys_torch.models import MODELS, build_model
from recsys_torch.models.base import Recommender
from recsys_torch.runtime import autocast, pick_device

SPLITS = ("test", "validation")  # recommendations, recommendations_validation


def load_best(warehouse: str | Path, model: str, device: torch.device, model_dir: str | Path | None = None,
              sequences: str | Path | None = None, split: str = "test") -> tuple[Recommender, dict]:
    """The best weights of `model` (models/<model>/best.pt) on `device`, in eval mode, and the checkpoint dict. A
    graph model also gets its graph for lists of `split` from the shards (`sequences`, default
    <warehouse>/sequences), so that the returned module scores on its own."""
    path = Path(model_dir or Path(warehouse) / "models" / model) / "best.pt"
    if not path.is_file():
        raise RecsysError(f"no trained {model} model: {path} is missing (run `recsys train --model {model}` first)")
    state = ckpt_io.load(path, map_location="cpu")
    if state.get("model_name") != model:
        raise RecsysError(f"{path} holds a {state.get('model_name')!r} model, not {model!r}")
    try:
        net = build_model(model, state["model_config"], device)
    except ValueError as exc:  # a config of another version of the model's code
        raise RecsysError(f"{path}: {exc}; retrain with `recsys train --model {model}`") from None
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:  # weights of another version of the model's code
        first = str(exc).strip().splitlines()[0]
        raise RecsysError(f"{path} does not fit the current {model} code ({first}): retrain with "
                          f"`recsys train --model {model}`") from None
    net.eval()
    if net.needs_graph:  # for test lists the graph holds the validation items too (recsys_torch.graph)
        from recsys_torch.graph import build_graph

        seq_dir = sequences_dir(warehouse, sequences)
        try:
            net.set_graph(build_graph(seq_dir, read_meta(seq_dir), split))
        except ValueError as exc:  # shards re-exported since training (other users or items)
            raise RecsysError(f"{path} does not fit the graph of {seq_dir} ({exc}): retrain after re-exporting "
                              f"the sequences") from None
    return net, state


def item_vectors(net: Recommender, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(movieId, vector) of every item in the item map: rows 1..n of the model's item vectors (models/base.py)."""
    weight = net.item_vectors().detach().float().cpu().numpy()
    item_idx = np.flatnonzero(movie_ids[:len(weight)] >= 0)
    item_idx = item_idx[item_idx > 0]
    return movie_ids[item_idx], weight[item_idx]


def _as_date(run_date: dt.date | str | None) -> dt.date:
    if run_date is None:
        return dt.date.today()
    if isinstance(run_date, dt.datetime):
        return run_date.date()
    if isinstance(run_date, dt.date):
        return run_date
    try:
        return dt.date.fromisoformat(str(run_date))
    except ValueError:
        raise RecsysError(f"run_date must be YYYY-MM-DD, got {run_date!r}") from None


def _constant(value: str, n_rows: int):
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(np.zeros(n_rows, np.int32), pa.array([value])).cast(pa.string())


def _check_args(model: str, k: int, splits: tuple[str, ...]) -> None:
    if model not in MODELS:
        raise catalogue.unknown_model(model, family=catalogue.TORCH)
    check_value("k", k, POSITIVE)
    for split in splits:
        if split not in SPLITS:
            raise RecsysError(f"split must be test or validation, got {split!r}")


def _open(warehouse, model: str, dev: torch.device, sequences, model_dir, split: str):
    """(net, shard folder, meta, movie_ids, user_ids) for lists of `split`, after checking best.pt fits the shards."""
    seq_dir = sequences_dir(warehouse, sequences)
    meta = read_meta(seq_dir)
    net, state = load_best(warehouse, model, dev, model_dir, seq_dir, split)
    for key in ("n_items", "n_users"):
        if key in state["model_config"] and int(state["model_config"][key]) != int(meta[key]):
            raise RecsysError(f"{model} was trained with {key} {state['model_config'][key]} but {seq_dir} has "
                              f"{meta[key]}: retrain after re-exporting the sequences")
    movie_ids = read_id_map(seq_dir, "item_map", "item_idx", "movieId")
    user_ids = read_id_map(seq_dir, "user_map", "user_idx", "userId")
    return net, seq_dir, meta, movie_ids, user_ids


class _Lists:
    """The (user_idx, item_idx[k], score[k]) rows of one split's lists, gathered batch by batch."""

    def __init__(self) -> None:
        self.users: list[np.ndarray] = []
        self.items: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def add(self, users: torch.Tensor, top_items: torch.Tensor, top_scores: torch.Tensor) -> None:
        self.users.append(users.cpu().numpy())
        self.items.append(top_items.cpu().numpy())
        self.scores.append(top_scores.cpu().numpy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self.users), np.concatenate(self.items), np.concatenate(self.scores)


def _scored_batches(net: Recommender, loader, dev: torch.device, amp: bool, model: str, where: str,
                    users: np.ndarray | None = None):
    """(batch, logits) of every batch of the loader (only the rows of `users`, when given). Scores that are not
    finite (a diverged model) raise before anything is written: the error names how many users have them."""
    broken, rows = [], 0
    batch = None
    for batch in eval_batches(loader, net, dev):
        if users is not None:
            rows_of = torch.from_numpy(np.isin(batch["user_idx"].cpu().numpy(), users)).to(dev)
            if not rows_of.any():
                continue
            batch = {name: column[rows_of] for name, column in batch.items()}
        with autocast(dev, amp):
            logits = score_batch(net, batch)
        rows += len(logits)
        broken.append(batch["user_idx"][~torch.isfinite(logits[:, 1:]).all(dim=1)].cpu().numpy())
        yield batch, logits
    del loader, batch
    gc.collect()  # release the reader's Arrow memory now, not at interpreter exit (apache/arrow#34314)
    broken = np.concatenate(broken) if broken else np.zeros(0, np.int64)
    if len(broken):
        raise RecsysError(f"{model}: non-finite scores for {len(broken)} of {rows} users of {where} (user_idx "
                          f"{broken[:5].tolist()}); nothing written: retrain the model")


def _loader(seq_dir, split: str, batch_size: int, use_cuda: bool):
    return make_loader(ShardSpec(shard_path(seq_dir, split), EVAL_COLUMNS, batch_size, shuffle=False), 0,
                       pin_memory=use_cuda)[1]


def _list_table(lists: _Lists, model: str, split: str, run_id: str, run_date: dt.date, seq_dir,
                user_ids: np.ndarray, movie_ids: np.ndarray):
    """The recommendations rows (docs/SCHEMAS.md) of one split's lists; -inf scores (seen items) are no rows."""
    import pyarrow as pa

    if not lists.users:
        raise RecsysError(f"{shard_path(seq_dir, split)} has no rows")
    user_idx, item_idx, score = lists.arrays()
    score = score.astype(np.float64)
    k_eff = item_idx.shape[1]
    rank = np.broadcast_to(np.arange(1, k_eff + 1, dtype=np.int32), item_idx.shape)
    keep = np.isfinite(score)  # fewer than k unseen items (the seen ones are -inf): no filler
    n_rows = int(keep.sum())
    if n_rows == 0:
        raise RecsysError(f"{model}: every user of {split}/ has seen every item; nothing written")
    if user_idx.max() >= len(user_ids) or item_idx.max() >= len(movie_ids):
        raise RecsysError(f"{seq_dir}: user_map/item_map do not cover every index in {split}/")
    user_col = np.repeat(user_ids[user_idx], k_eff).reshape(item_idx.shape)[keep]
    movie_col = movie_ids[item_idx][keep]
    if (user_col < 0).any() or (movie_col < 0).any():
        raise RecsysError(f"{seq_dir}: user_map/item_map lack ids for some indices in {split}/")
    table = pa.table({
        "model": _constant(model, n_rows),
        "run_id": _constant(run_id, n_rows),
        "run_date": pa.array(np.full(n_rows, np.datetime64(run_date.isoformat(), "D")), pa.date32()),
        "userId": pa.array(user_col, pa.int64()),
        "rank": pa.array(rank[keep], pa.int32()),
        "movieId": pa.array(movie_col, pa.int64()),
        "score": pa.array(score[keep], pa.float64()),
    })
    return table, len(user_idx)


def _write(warehouse, net: Recommender, lists: dict[str, _Lists], model: str, run_id: str, run_date: dt.date,
           k: int, seq_dir, user_ids: np.ndarray, movie_ids: np.ndarray, started: float) -> list[dict]:
    """Every split's table checked and built before the first is written; then the lists, and with the test
    lists the item vectors (they do not depend on the split)."""
    from recsys_torch.tables import write_item_embeddings, write_recommendations

    tables = {split: _list_table(rows, model, split, run_id, run_date, seq_dir, user_ids, movie_ids)
              for split, rows in lists.items()}
    out = []
    for split, (table, n_users) in tables.items():
        version = write_recommendations(warehouse, table, model, run_date, split)
        stats = {"model": model, "split": split, "run_id": run_id, "run_date": run_date.isoformat(),
                 "users": n_users, "rows": table.num_rows, "k": k, "table_version": version}
        if split == "test":
            stats["item_embeddings_version"] = write_item_embeddings(warehouse, model, run_date,
                                                                     *item_vectors(net, movie_ids))
        out.append(stats | {"seconds": round(time.time() - started, 3)})
    return out


@torch.no_grad()
def topn(warehouse: str | Path, model: str, k: int = 100, run_date: dt.date | str | None = None,
         run_id: str | None = None, batch_size: int = 1024, device: str = "auto",
         sequences: str | Path | None = None, model_dir: str | Path | None = None, amp: bool = True,
         split: str = "test") -> dict:
    """Write the top-`k` unseen items of every test user as the (model, run_date) partition of
    `<warehouse>/recommendations`, and the model's item vectors as that of `<warehouse>/item_embeddings`, replacing
    those partitions. Returns stats (users, rows, versions, seconds).

    sequences / model_dir: where `recsys train` read its shards and wrote best.pt (train.sequences, train.output);
    amp: bf16 autocast on CUDA, as in training (train.amp); split: test (recommendations) or validation
    (recommendations_validation, from the validation/ shard).

    Scores that are not finite (a diverged model) write nothing: the error names how many users have them."""
    started = time.time()
    _check_args(model, k, (split,))
    run_date, run_id, dev = _as_date(run_date), run_id or uuid.uuid4().hex, pick_device(device)
    net, seq_dir, meta, movie_ids, user_ids = _open(warehouse, model, dev, sequences, model_dir, split)
    k_eff, ties = min(k, int(meta["n_items"])), Ties.of_report(meta)
    lists = _Lists()
    for batch, logits in _scored_batches(net, _loader(seq_dir, split, batch_size, dev.type == "cuda"), dev, amp,
                                         model, f"{split}/"):
        top_scores, top_items = top_k(mask_seen(logits, batch["seen_items"]), batch["user_idx"], k_eff, ties)
        lists.add(batch["user_idx"], top_items, top_scores)
    return _write(warehouse, net, {split: lists}, model, run_id, run_date, k, seq_dir, user_ids, movie_ids,
                  started)[0]


@torch.no_grad()
def topn_lists(warehouse: str | Path, model: str, k: int = 100, run_date: dt.date | str | None = None,
               run_id: str | None = None, batch_size: int = 1024, device: str = "auto",
               sequences: str | Path | None = None, model_dir: str | Path | None = None,
               amp: bool = True) -> list[dict]:
    """Both lists of `model`: `recommendations` (test) and `recommendations_validation`, as two `topn` calls
    would write them; stats of each. A model whose scores depend on the user alone (`scores_by_user_only`, e.g.
    NCF) scores each user once for both: its validation-time list is the top k of the unseen items given the train
    history; the test-time list excludes the validation item too, so it is the top k + 1 less that item."""
    _check_args(model, k, SPLITS)
    if not MODELS[model][0].scores_by_user_only:
        return [topn(warehouse, model, k, run_date, run_id, batch_size, device, sequences, model_dir, amp, split)
                for split in SPLITS]
    started = time.time()
    run_date, run_id, dev = _as_date(run_date), run_id or uuid.uuid4().hex, pick_device(device)
    net, seq_dir, meta, movie_ids, user_ids = _open(warehouse, model, dev, sequences, model_dir, "validation")
    use_cuda = dev.type == "cuda"
    k_eff, ties = min(k, int(meta["n_items"])), Ties.of_report(meta)
    users_of = {split: read_columns(shard_path(seq_dir, split), ["user_idx"]).column("user_idx").to_numpy()
                for split in SPLITS}
    lists = {split: _Lists() for split in SPLITS}
    for batch, logits in _scored_batches(net, _loader(seq_dir, "validation", batch_size, use_cuda), dev, amp,
                                         model, "validation/"):
        masked = mask_seen(logits, batch["seen_items"])  # the train history
        top_scores, top_items = top_k(masked, batch["user_idx"], min(k_eff + 1, masked.shape[1]), ties)
        lists["validation"].add(batch["user_idx"], top_items[:, :k_eff], top_scores[:, :k_eff])
        is_target = top_items == batch["target_item"][:, None]  # the validation item: seen at test time
        test_scores, order = torch.sort(top_scores.masked_fill(is_target, float("-inf")), dim=1, descending=True,
                                        stable=True)
        in_test = torch.from_numpy(np.isin(batch["user_idx"].cpu().numpy(), users_of["test"])).to(dev)
        lists["test"].add(batch["user_idx"][in_test], top_items.gather(1, order)[in_test, :k_eff],
                          test_scores[in_test, :k_eff])
    rest = np.setdiff1d(users_of["test"], users_of["validation"])  # test users without a validation row
    if len(rest):
        for batch, logits in _scored_batches(net, _loader(seq_dir, "test", batch_size, use_cuda), dev, amp, model,
                                             "test/", users=rest):
            top_scores, top_items = top_k(mask_seen(logits, batch["seen_items"]), batch["user_idx"], k_eff, ties)
            lists["test"].add(batch["user_idx"], top_items, top_scores)
    return _write(warehouse, net, lists, model, run_id, run_date, k, seq_dir, user_ids, movie_ids, started)


@torch.no_grad()
def sampled_ranks(warehouse: str | Path, model: str, negatives: int = 100, seed: int = 42, split: str = "test",
                  batch_size: int = 1024, device: str = "auto", sequences: str | Path | None = None,
                  model_dir: str | Path | None = None, amp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The sampled protocol of SASRec (Kang & McAuley, ICDM 2018) and the papers after it: each user's target of
    `split` ranked by the trained model against `negatives` items drawn uniformly from the catalogue items the user
    never interacted with (not in the history, not the target), with replacement, as SASRec's own code draws them.

    Returns (userId[n], rank[n]): the target's 1-based rank among the negatives + 1 candidates, one row per user of
    the split's shard. Equal scores are ordered by the tie key, as in the lists (`target_ranks`); a row whose scores are not finite raises, as
    in `topn`. The draws come from a CPU generator seeded with `seed`, in shard order: the same on any device."""
    _check_args(model, 1, (split,))
    if negatives < 1:
        raise RecsysError(f"negatives must be >= 1, got {negatives}")
    dev = pick_device(device)
    net, seq_dir, meta, movie_ids, user_ids = _open(warehouse, model, dev, sequences, model_dir, split)
    n_items = int(meta["n_items"])
    known = np.full(n_items + 1, -1, dtype=np.int64)  # not a candidate whatever the user: padding 0, no id
    known[1:len(movie_ids)] = movie_ids[1:n_items + 1]
    never = torch.from_numpy(known < 0)
    never[0] = True
    generator, ties = torch.Generator().manual_seed(seed), Ties.of_report(meta)
    users, ranks = [], []
    for batch, logits in _scored_batches(net, _loader(seq_dir, split, batch_size, dev.type == "cuda"), dev, amp,
                                         model, f"{split}/"):
        target = batch["target_item"].long().cpu()
        excluded = never.repeat(len(target), 1)
        excluded.scatter_(1, batch["seen_items"].long().cpu(), True)
        excluded.scatter_(1, target[:, None], True)
        short = (~excluded).sum(dim=1) == 0
        if short.any():
            raise RecsysError(f"{model}: {int(short.sum())} users of {split}/ have interacted with every item: "
                              "no negative to draw")
        drawn = torch.randint(1, n_items + 1, (len(target), negatives), generator=generator)
        redraw = excluded.gather(1, drawn)
        while redraw.any():  # rejection, as SASRec's `while t in rated`
            drawn[redraw] = torch.randint(1, n_items + 1, (int(redraw.sum()),), generator=generator)
            redraw = excluded.gather(1, drawn)
        candidates = torch.cat([target[:, None], drawn], dim=1).to(logits.device)
        first = torch.zeros(len(candidates), dtype=torch.long, device=candidates.device)  # the target's column
        rank = target_ranks(logits.gather(1, candidates), first, batch["user_idx"], ties, candidates) + 1
        users.append(user_ids[batch["user_idx"].cpu().numpy()])
        ranks.append(rank.cpu().numpy().astype(np.float64))
    if not users:
        raise RecsysError(f"{shard_path(seq_dir, split)} has no rows")
    return np.concatenate(users).astype(np.int64), np.concatenate(ranks)
