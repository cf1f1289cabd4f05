"""The count models' real-time lists (recsys_serve.realtime): popularity, markov, ar2 and itemcf score a posted
history from their tables, as `recsys baselines` scores a stored one (recsys_spark.baselines): popularity (global
train counts: exact unless `baselines.popularity.recent_days` is set), markov (AR(1) from transitions_ar1 +
popularity), ar2 (transitions_ar2, then AR(1), then popularity, as score tiers), itemcf (the item_neighbors of the
newest `history` items weighted `recency_decay`^back, as models/itemcf/config.json says: the section the baselines
step wrote item_neighbors with, normalised into tier 1, popularity below). Which models, and the tables each reads,
are their catalogue entries' (`Model.realtime`); each one's tiers are a `CountModels` method named after it. Tables
are loaded at first use, again when a table's Delta version moves.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import numpy as np

from recsys_core import catalogue, storage
from recsys_core.ties import Ties
from recsys_serve.errors import NotFound
from recsys_serve.reader import Warehouse

TIER_AR1, TIER_AR2, TIER_ITEMCF = 1.0, 2.0, 1.0


def table_models() -> list[str]:
    """The catalogue's count models that score a history from their tables (Model.realtime: those tables)."""
    return [m for m in catalogue.realtime_models() if catalogue.MODELS[m].realtime]


def table_sources(model: str) -> tuple[str, ...]:
    return catalogue.MODELS[model].realtime


@dataclass(frozen=True)
class ItemSpace:
    """The ranking catalogue of the count models: item_idx <-> movieId, and the global train popularity."""
    movie_of: np.ndarray  # int64 [max item_idx + 1], -1: none
    table: np.ndarray  # int32 movieId -> item_idx (-1)
    pop_score: np.ndarray  # float64 per item_idx: train count / max train count (0 for idx 0 / unrated)
    ties: Ties  # the ETL's tie policy

    def indices(self, movie_ids: np.ndarray) -> np.ndarray:
        out = np.full(len(movie_ids), -1, np.int64)
        inside = (movie_ids >= 0) & (movie_ids < len(self.table))
        out[inside] = self.table[movie_ids[inside]]
        return out


def _item_space(warehouse: Warehouse) -> ItemSpace:
    items = warehouse.query("SELECT movieId, item_idx FROM {items} WHERE item_idx IS NOT NULL", items="items")
    idx, movies = np.asarray(items["item_idx"], np.int64), np.asarray(items["movieId"], np.int64)
    movie_of = np.full(int(idx.max(initial=0)) + 1, -1, np.int64)
    movie_of[idx] = movies
    table = np.full(int(movies.max(initial=0)) + 1, -1, np.int32)
    table[movies] = idx
    counts = warehouse.query("SELECT item_idx, count(*) AS n FROM {i} WHERE split = 'train' AND item_idx IS NOT "
                             "NULL GROUP BY item_idx", i="interactions")
    train = np.zeros(len(movie_of), np.float64)
    cidx = np.asarray(counts["item_idx"], np.int64)
    ok = (cidx >= 0) & (cidx < len(train))
    train[cidx[ok]] = np.asarray(counts["n"], np.float64)[ok]
    pop = train / train.max() if train.max() > 0 else train
    pop[movie_of < 0] = -np.inf  # index 0 and gaps: never listed
    return ItemSpace(movie_of, table, pop, Ties.of_warehouse(warehouse.root))


@dataclass(frozen=True)
class Transitions:
    """A transition table as sorted state keys: the successors of state s are rows start[s]..end[s]."""
    keys: np.ndarray  # int64, ascending
    next_idx: np.ndarray
    weight: np.ndarray  # prob (AR) or similarity (ItemCF)

    @classmethod
    def load(cls, warehouse: Warehouse, sql: str, table: str) -> "Transitions":
        rows = warehouse.query(sql, t=table)
        keys = np.asarray(rows["k"], np.int64)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], np.asarray(rows["n"], np.int64)[order], np.asarray(rows["w"], np.float64)[order])

    def of(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(self.keys, key, "left"), np.searchsorted(self.keys, key, "right")
        return self.next_idx[lo:hi], self.weight[lo:hi]


AR_KEY = 1 << 32  # AR(2) state key: prev2 * AR_KEY + prev


class CountModels:
    """The count models' tables, loaded at first use and again when a table's Delta version moves."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self._cache: dict = {}
        self._lock = threading.Lock()

    def require(self, model: str) -> None:
        for table in table_sources(model):
            if not self.warehouse.exists(table):
                raise NotFound(f"model: {model!r} needs the {table} table, which this warehouse lacks (run "
                               f"`recsys baselines`)")

    def _get(self, name: str, load, tables: tuple[str, ...]):
        versions = tuple(self.warehouse.version(t) for t in tables)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == versions:
            return hit[1]
        with self._lock:
            hit = self._cache.get(name)
            if hit is None or hit[0] != versions:
                hit = (versions, load(), time.time())
                self._cache[name] = hit
            return hit[1]

    def loaded_at(self, name: str) -> float | None:
        hit = self._cache.get(name)
        return None if hit is None else hit[2]

    def space(self) -> ItemSpace:
        return self._get("items", lambda: _item_space(self.warehouse), ("items", "interactions"))

    def ar1(self) -> Transitions:
        return self._get("transitions_ar1", lambda: Transitions.load(
            self.warehouse, "SELECT prev_item_idx::BIGINT AS k, next_item_idx AS n, prob AS w FROM {t}",
            "transitions_ar1"), ("transitions_ar1",))

    def ar2(self) -> Transitions:
        return self._get("transitions_ar2", lambda: Transitions.load(
            self.warehouse, f"SELECT prev2_item_idx::BIGINT * {AR_KEY} + prev_item_idx AS k, next_item_idx AS n, "
            "prob AS w FROM {t}", "transitions_ar2"), ("transitions_ar2",))

    def neighbors(self) -> tuple[Transitions, int, float]:
        """item_neighbors, with the `history` and `recency_decay` it was written with."""
        def load():
            location = storage.join(self.warehouse.root, "models", "itemcf", "config.json")
            raw = storage.read_bytes(location)
            if raw is None:
                raise NotFound(f"model: 'itemcf' has no {location} beside its item_neighbors table "
                               "(`recsys baselines` writes the two together: run it again)")
            try:
                section = json.loads(raw)
                history, decay = int(section["history"]), float(section["recency_decay"])
            except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
                raise NotFound(f"model: 'itemcf': {location} holds no history and recency_decay ({exc}); "
                               "`recsys baselines` writes it: run it again") from None
            return (Transitions.load(self.warehouse, "SELECT item_idx::BIGINT AS k, neighbor_idx AS n, similarity "
                                     "AS w FROM {t}", "item_neighbors"), history, decay)
        return self._get("item_neighbors", load, ("item_neighbors",))

    # Each count model's tiers over popularity, in place (its catalogue entry names the tables they read); returns
    # how many history items were read.

    def _popularity_tiers(self, scores: np.ndarray, history: np.ndarray) -> int:
        return 0

    def _markov_tiers(self, scores: np.ndarray, history: np.ndarray) -> int:
        if not len(history):
            return 0
        nxt, prob = self.ar1().of(int(history[-1]))
        np.maximum.at(scores, nxt, TIER_AR1 + prob)
        return 1

    def _ar2_tiers(self, scores: np.ndarray, history: np.ndarray) -> int:
        used = self._markov_tiers(scores, history)
        if len(history) >= 2:
            nxt, prob = self.ar2().of(int(history[-2]) * AR_KEY + int(history[-1]))
            np.maximum.at(scores, nxt, TIER_AR2 + prob)
            used = 2
        return used

    def _itemcf_tiers(self, scores: np.ndarray, history: np.ndarray) -> int:
        neighbors, newest, decay = self.neighbors()
        seen_recent: list[int] = []
        for item in history[::-1]:  # the newest `newest` distinct items, newest first
            if int(item) not in seen_recent:
                seen_recent.append(int(item))
            if len(seen_recent) == newest:
                break
        total = np.zeros(len(scores))
        for back, item in enumerate(seen_recent):
            nxt, sim = neighbors.of(item)
            np.add.at(total, nxt, decay ** back * sim)
        total[history[(history >= 0) & (history < len(total))]] = 0.0  # normalised by the best unseen sum
        total = np.round(total, 12)  # as the baselines step rounds its sums (equal sums stay ties)
        best = total.max(initial=0.0)
        if best > 0:
            hit = total > 0
            scores[hit] = np.maximum(scores[hit], TIER_ITEMCF + total[hit] / best)
        return len(seen_recent)

    def top_k(self, model: str, history: np.ndarray, k: int, user_idx: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """(movieIds, scores, items read) of `model`'s k best items after `history` (item indices, oldest first),
        equal scores ordered for `user_idx`."""
        self.require(model)
        space = self.space()
        scores = space.pop_score.copy()  # tier 0: popularity pads every list
        used = getattr(self, f"_{model}_tiers")(scores, history)
        scores[history[(history >= 0) & (history < len(scores))]] = -np.inf
        top = _top(scores, k, space.ties.numpy(user_idx, np.arange(len(scores))))
        return space.movie_of[top], scores[top], used


def _top(scores: np.ndarray, k: int, keys: np.ndarray) -> np.ndarray:
    """Indices of the k highest finite scores, equal scores by ascending tie key (the Spark baselines' order)."""
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k <= 0:
        return np.zeros(0, np.int64)
    threshold = np.partition(scores[finite], -k)[-k]
    candidates = np.flatnonzero(finite & (scores >= threshold))
    order = np.lexsort((keys[candidates], -scores[candidates]))
    return candidates[order[:k]]
