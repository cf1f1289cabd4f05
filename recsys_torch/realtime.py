"""Scoring a history now with a trained sequence model (SASRec, SS4Rec): what `recsys serve`'s POST /recommendations
runs for the torch models (recsys_serve.realtime loads this module only when such a request comes).

The same forward and scoring as `recsys topn` (recsys_torch.infer): the model reads the last `max_len` items of the
history with their timestamps and scores every item at the query time (default: the last timestamp + 1 s, the
shards' `last_gap: query_time`); every item of the history is excluded, then `metrics.top_k` (equal scores by the tie key of
the user_idx, 0 for a history without a user, as the lists). The item table is kept
as one float32 matrix, so the final product is one `F.linear` over it. Under `torch.inference_mode`, no autograd.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recsys_core.ties import Ties
from recsys_torch import checkpoint as ckpt_io
from recsys_torch.shards import read_id_map, read_meta, sequences_dir
from recsys_torch.errors import RecsysError
from recsys_torch.metrics import top_k
from recsys_torch.models import build_model
from recsys_torch.models.base import SequenceModel

CHECKPOINTS = ("published.pt", "best.pt")  # published.pt: the one `recsys publish` chose; else the best trained


def checkpoint_path(warehouse: str | Path, model: str) -> Path | None:
    """<warehouse>/models/<model>/published.pt when it exists, else best.pt; None when neither does."""
    folder = Path(warehouse) / "models" / model
    return next((folder / name for name in CHECKPOINTS if (folder / name).is_file()), None)


def is_sequence_model(model: str) -> bool:
    """Whether the catalogue's torch model `model` scores a history (SequenceModel) rather than a user id."""
    from recsys_torch.models import MODELS

    return model in MODELS and issubclass(MODELS[model][0], SequenceModel)


def file_key(path: Path) -> tuple[int, int, int]:
    """What changes when a checkpoint is replaced (os.replace gives a new inode; a copy over it a new mtime)."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Query:
    """One history as model indices (oldest first), its timestamps (None: all gaps 0), the query time (None: the
    last timestamp + 1 s), the indices to leave out of the list (the whole history) and the user_idx its equal
    scores are ordered for (0: a history of no known user)."""
    items: np.ndarray
    timestamps: np.ndarray | None = None
    query_timestamp: int | None = None
    exclude: np.ndarray | None = None
    user: int = 0


@dataclass
class LiveModel:
    """A sequence model loaded for serving, with its item map; immutable once built (a swap builds a new one)."""
    name: str
    path: Path
    key: tuple[int, int, int]
    net: SequenceModel
    item_matrix: torch.Tensor  # [n_items + 1, D] float32: the tied item table the last hidden state is scored on
    movie_ids: np.ndarray  # int64 [n_items + 1]: item index -> movieId (-1: none)
    index_table: np.ndarray  # int32: movieId -> item index (-1: none)
    max_len: int
    step: int | None
    unlisted: torch.Tensor  # item indices without a movie (0, padding, and any the item map lacks): never listed
    ties: Ties  # the shards' tie policy (meta.json)
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, warehouse: str | Path, model: str, path: Path | None = None,
             sequences: str | Path | None = None, threads: int | None = None) -> "LiveModel":
        """`threads`: torch's intra-op threads for the process (None: leave them)."""
        if threads:
            torch.set_num_threads(threads)
        path = path or checkpoint_path(warehouse, model)
        if path is None:
            raise RecsysError(f"no trained {model} model: neither models/{model}/published.pt nor best.pt in "
                              f"{warehouse} (run `recsys train --model {model}`)")
        key = file_key(path)
        state = ckpt_io.load(path, map_location="cpu")
        if state.get("model_name") != model:
            raise RecsysError(f"{path} holds a {state.get('model_name')!r} model, not {model!r}")
        try:
            net = build_model(model, state["model_config"], "cpu")
            net.load_state_dict(state["model"])
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise RecsysError(f"{path} does not fit the current {model} code ({first})") from None
        if not isinstance(net, SequenceModel):
            raise RecsysError(f"{model} is not a sequence model: it cannot score a new history")
        net.eval()
        seq_dir = sequences_dir(warehouse, sequences)
        movie_ids = read_id_map(seq_dir, "item_map", "item_idx", "movieId")
        n_rows = net.item_emb.weight.shape[0]
        if len(movie_ids) > n_rows:
            raise RecsysError(f"{path} scores {n_rows - 1} items but the item map has {len(movie_ids) - 1}: "
                              f"retrain after re-exporting the sequences")
        movie_ids = np.concatenate([movie_ids, np.full(n_rows - len(movie_ids), -1, np.int64)])
        known = movie_ids >= 0
        index_table = np.full(int(movie_ids.max(initial=0)) + 1, -1, np.int32)
        index_table[movie_ids[known]] = np.flatnonzero(known).astype(np.int32)
        matrix = net.item_emb.weight.detach().float().contiguous()
        unlisted = torch.from_numpy(np.flatnonzero(~known))
        return cls(model, path, key, net, matrix, movie_ids, index_table, int(net.cfg.max_len), state.get("step"),
                   unlisted, Ties.of_report(read_meta(seq_dir)))

    def indices(self, movie_ids: np.ndarray) -> np.ndarray:
        """Model indices of `movie_ids` (int64; -1 where the model has none)."""
        movie_ids = np.asarray(movie_ids, np.int64)
        out = np.full(len(movie_ids), -1, np.int64)
        inside = (movie_ids >= 0) & (movie_ids < len(self.index_table))
        out[inside] = self.index_table[movie_ids[inside]]
        return out

    @torch.inference_mode()
    def top_k(self, queries: list[Query], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(movieIds, scores) of each query's k best items, best first, its excluded items left out: one forward
        over the batch (left-padded to the longest history, which changes no hidden state)."""
        width = max(1, min(self.max_len, max(len(q.items) for q in queries)))
        items = np.zeros((len(queries), width), np.int64)
        stamps = np.zeros((len(queries), width), np.int64)
        query_ts = np.zeros(len(queries), np.int64)
        for row, q in enumerate(queries):
            tail = q.items[-width:]
            if len(tail):
                items[row, width - len(tail):] = tail
            if q.timestamps is not None and len(tail):
                stamps[row, width - len(tail):] = q.timestamps[-len(tail):]
                query_ts[row] = q.timestamps[-1] + 1
            if q.query_timestamp is not None:
                query_ts[row] = q.query_timestamp
        hidden = self.net(torch.from_numpy(items), torch.from_numpy(stamps), torch.from_numpy(query_ts))[:, -1]
        if not bool(torch.isfinite(hidden).all()):  # a diverged checkpoint: no list rather than NaN scores
            raise RecsysError(f"{self.path} gives non-finite scores for this history: retrain the model")
        logits = F.linear(hidden.float(), self.item_matrix)
        logits[:, self.unlisted] = float("-inf")
        for row, q in enumerate(queries):
            seen = q.items if q.exclude is None else q.exclude
            if len(seen):
                logits[row, torch.from_numpy(np.asarray(seen, np.int64))] = float("-inf")
        k = min(k, logits.shape[1] - 1)
        users = torch.tensor([q.user for q in queries], dtype=torch.int64)
        scores, top = top_k(logits, users, k, self.ties)
        out = []
        for row in range(len(queries)):
            s, t = scores[row].numpy(), top[row].numpy()
            keep = np.isfinite(s)  # fewer unseen items than k: no filler
            out.append((self.movie_ids[t[keep]], s[keep].astype(np.float64)))
        return out
