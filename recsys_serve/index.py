"""What the API answers from: the served tables loaded once into numpy arrays keyed by position.

A request is a binary search for the user (or movie) and a slice; nothing is read from disk while serving the
latest lists. Movies are referred to by their position in Movies (int32), users by their position in the
Histories, so that a model's 100 x 162k list costs 8 bytes a row (position + float32 score).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from recsys_serve.reader import Warehouse

HISTORY_SPLITS = ("train", "validation")  # what the user had rated before the held-out test item
POPULAR_LEN = 100  # the fallback list's length, the largest k served


DENSE_IDS = 1 << 24  # ids below this are looked up in a table indexed by id (at most 64 MB), others by binary search


class IdIndex:
    """Positions of ids in an ascending id array. MovieLens ids are small, so a table indexed by id answers 16M
    lookups (a model's partition at 25M) in a fraction of a second, where a binary search takes seconds."""

    def __init__(self, sorted_ids: np.ndarray):
        self.ids = np.asarray(sorted_ids, np.int64)
        self.table = None
        if len(self.ids) and self.ids[0] >= 0 and self.ids[-1] < DENSE_IDS:
            self.table = np.full(int(self.ids[-1]) + 1, -1, np.int32)
            self.table[self.ids] = np.arange(len(self.ids), dtype=np.int32)

    def position(self, value: int) -> int | None:
        pos = int(self.positions(np.array([value], np.int64))[0])
        return pos if pos >= 0 else None

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Positions of `values` (int32; -1 where absent)."""
        values = np.asarray(values, np.int64)
        if self.table is not None:
            out = np.full(len(values), -1, np.int32)
            inside = (values >= 0) & (values < len(self.table))
            out[inside] = self.table[values[inside]]
            return out
        pos = np.searchsorted(self.ids, values)
        found = pos < len(self.ids)
        found[found] = self.ids[pos[found]] == values[found]
        return np.where(found, pos, -1).astype(np.int32)


@dataclass(frozen=True)
class Movies:
    """The `items` table, sorted by movieId."""

    movie_ids: np.ndarray  # int64, ascending
    titles: list[str]
    genres: list[list[str]]
    years: list[int | None]
    index: IdIndex

    @classmethod
    def load(cls, warehouse: Warehouse) -> "Movies":
        cols = warehouse.query("SELECT movieId, title, genres, year FROM {items} ORDER BY movieId", items="items")
        years = [None if np.ma.is_masked(y) else int(y) for y in cols["year"]]
        movie_ids = np.asarray(cols["movieId"], np.int64)
        return cls(movie_ids, [str(t) for t in cols["title"]],
                   [list(g) if g is not None else [] for g in cols["genres"]], years, IdIndex(movie_ids))

    def position(self, movie_id: int) -> int | None:
        return self.index.position(movie_id)

    def positions(self, movie_ids: np.ndarray) -> np.ndarray:
        return self.index.positions(movie_ids)

    def movie(self, pos: int) -> dict:
        return {"movieId": int(self.movie_ids[pos]), "title": self.titles[pos], "genres": self.genres[pos],
                "year": self.years[pos]}

    def search(self, text: str) -> list[int]:
        """Positions of the movies whose title contains `text` (any case): titles that start with it first, then
        by title."""
        needle = text.casefold()
        found = [(not title.casefold().startswith(needle), title.casefold(), pos)
                 for pos, title in enumerate(self.titles) if needle in title.casefold()]
        return [pos for *_, pos in sorted(found)]


@dataclass(frozen=True)
class Histories:
    """Every user of `users`, with their last `length` rated movies before the test item (newest first), the
    held-out test item, and what each has seen in train and validation (the fallback list leaves it out)."""

    user_ids: np.ndarray  # int64, ascending
    n_interactions: np.ndarray  # int64
    offsets: np.ndarray  # int64, len(user_ids) + 1: the user's rows in the arrays below
    item_pos: np.ndarray  # int32 movie positions
    rating: np.ndarray  # float32
    timestamp: np.ndarray  # int64
    held_out_pos: np.ndarray  # int32 per user, -1: none
    held_out_rating: np.ndarray
    held_out_timestamp: np.ndarray
    popular: np.ndarray  # int32 movie positions: the most-rated train items, most first (ties by movieId)
    popular_count: np.ndarray  # their train ratings
    by_text: np.ndarray  # user positions in the order of their ids as text (prefix search)
    id_text: np.ndarray  # the ids as text, in that order
    index: IdIndex

    @classmethod
    def load(cls, warehouse: Warehouse, movies: Movies, length: int = 10) -> "Histories":
        users = warehouse.query("SELECT userId, n_interactions FROM {users} ORDER BY userId", users="users")
        user_ids = np.asarray(users["userId"], np.int64)
        index = IdIndex(user_ids)
        # The last `length` + 1 rows of each user: seq counts accepted ratings 1..n_interactions, the last is test.
        rows = warehouse.query(
            "SELECT i.userId, i.movieId, i.rating, i.timestamp, i.split FROM {interactions} i "
            "JOIN {users} u ON i.userId = u.userId WHERE i.seq > u.n_interactions - ? "
            "ORDER BY i.userId, i.seq DESC", [length + 1], interactions="interactions", users="users")
        user_pos = index.positions(rows["userId"])
        item_pos = movies.positions(rows["movieId"])
        is_test = rows["split"] == "test"
        keep = (user_pos >= 0) & (item_pos >= 0)
        seen = keep & np.isin(rows["split"], HISTORY_SPLITS)
        held_out_pos = np.full(len(user_ids), -1, np.int32)
        held_out_rating = np.zeros(len(user_ids), np.float32)
        held_out_timestamp = np.zeros(len(user_ids), np.int64)
        test = keep & is_test
        held_out_pos[user_pos[test]] = item_pos[test]
        held_out_rating[user_pos[test]] = rows["rating"][test]
        held_out_timestamp[user_pos[test]] = rows["timestamp"][test]
        # At most `length` history rows per user: the rows are the user's newest first.
        counts = np.bincount(user_pos[seen], minlength=len(user_ids))
        rank_in_user = np.arange(int(seen.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        short = rank_in_user < length
        offsets = np.concatenate([[0], np.cumsum(np.minimum(counts, length))]).astype(np.int64)
        popular = warehouse.query(
            "SELECT movieId, count(*) AS n FROM {interactions} WHERE split = 'train' GROUP BY movieId "
            "ORDER BY n DESC, movieId LIMIT ?", [POPULAR_LEN + length], interactions="interactions")
        popular_pos = movies.positions(popular["movieId"])
        id_text = user_ids.astype(str)
        by_text = np.argsort(id_text, kind="stable")
        return cls(user_ids, np.asarray(users["n_interactions"], np.int64), offsets,
                   item_pos[seen][short], rows["rating"][seen][short].astype(np.float32),
                   rows["timestamp"][seen][short].astype(np.int64), held_out_pos, held_out_rating,
                   held_out_timestamp, popular_pos[popular_pos >= 0],
                   np.asarray(popular["n"], np.float64)[popular_pos >= 0], by_text, id_text[by_text], index)

    def position(self, user_id: int) -> int | None:
        return self.index.position(user_id)

    def history(self, user_pos: int) -> slice:
        return slice(int(self.offsets[user_pos]), int(self.offsets[user_pos + 1]))

    def fallback(self, user_pos: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The most-rated train items (positions, their train ratings) but those in the user's kept history."""
        unseen = ~np.isin(self.popular, self.item_pos[self.history(user_pos)])
        return self.popular[unseen][:k], self.popular_count[unseen][:k]

    def with_prefix(self, prefix: str) -> np.ndarray:
        """Positions of the users whose id, as text, starts with `prefix` (in text order)."""
        if not prefix:
            return self.by_text
        start = np.searchsorted(self.id_text, prefix, side="left")
        end = np.searchsorted(self.id_text, prefix + "\U0010ffff", side="left")
        return self.by_text[start:end]


@dataclass(frozen=True)
class TopLists:
    """One (model, run_date) partition of `recommendations`: each user's ranked list, by Histories position."""

    model: str
    run_date: dt.date
    run_id: str
    files: tuple[str, ...]  # the partition's data files when it was loaded
    offsets: np.ndarray  # int64, n_users + 1
    item_pos: np.ndarray  # int32 movie positions, rank order
    score: np.ndarray  # float32, finite
    dropped: int = 0  # rows left out because their score was NaN or infinite

    @property
    def users(self) -> int:
        return int(np.count_nonzero(np.diff(self.offsets)))

    @property
    def max_k(self) -> int:
        return int(np.diff(self.offsets).max(initial=0))

    @classmethod
    def load(cls, warehouse: Warehouse, histories: Histories, movies: Movies, model: str, run_date: dt.date,
             files: tuple[str, ...]) -> "TopLists":
        where = "WHERE model = ? AND run_date = ?"
        run_ids = warehouse.query(f"SELECT DISTINCT run_id FROM {{recs}} {where}", [model, run_date],
                                  recs="recommendations")["run_id"]
        rows = warehouse.query(f"SELECT userId, rank, movieId, score::FLOAT AS score FROM {{recs}} {where}",
                               [model, run_date], recs="recommendations")
        # The id columns are dropped as soon as they are positions: a 16M-row partition's peak memory is the server's.
        user_pos = histories.index.positions(rows.pop("userId"))
        item_pos = movies.positions(rows.pop("movieId"))
        rank, score = rows.pop("rank"), rows.pop("score")
        keep = (user_pos >= 0) & (item_pos >= 0)  # rows of users or movies the ETL tables no longer have
        finite = np.isfinite(score)  # a NaN or infinite score is no recommendation (nor a hit for the evaluator)
        dropped = int(np.count_nonzero(keep & ~finite))
        keep &= finite
        if not keep.all():
            user_pos, item_pos, rank, score = user_pos[keep], item_pos[keep], rank[keep], score[keep]
        counts = np.bincount(user_pos, minlength=len(histories.user_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        order = _rank_order(user_pos, rank, offsets)
        return cls(model, run_date, ",".join(sorted(str(r) for r in run_ids)), files, offsets,
                   item_pos[order], score[order], dropped)

    def of(self, user_pos: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's first k (movie positions, scores); None when the run did not cover the user."""
        start, end = int(self.offsets[user_pos]), int(self.offsets[user_pos + 1])
        if start == end:
            return None
        end = min(end, start + k)
        return self.item_pos[start:end], self.score[start:end]


def _vector(value) -> np.ndarray | None:
    """A vector cell as a 1-d float array; None when it is NULL or has a NULL or non-number element."""
    if value is None or np.ma.is_masked(value):
        return None
    try:
        vector = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return None
    return vector if vector.ndim == 1 else None


def _rank_order(user_pos: np.ndarray, rank: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The permutation that puts rows (arriving in no particular order) by user, then rank. Ranks are 1..n per user
    (the table's contract), so each row's place is its user's offset + rank - 1: one pass instead of a sort of 16M
    rows; a partition that breaks the contract (gaps, repeats) is sorted instead."""
    slot = offsets[user_pos] + rank.astype(np.int64) - 1
    kind = np.int32 if len(slot) < 2**31 else np.int64  # half the memory of a 16M-row partition's permutation
    order = np.full(len(slot), -1, kind)
    valid = (rank >= 1) & (slot < offsets[user_pos + 1])
    if valid.all():
        order[slot] = np.arange(len(slot), dtype=kind)
        if (order >= 0).all():
            return order
    return np.lexsort((rank, user_pos))


@dataclass(frozen=True)
class ItemVectors:
    """A model's item vectors, scaled to unit length: exact cosine search (one matrix-vector product; at 59k items
    and 64 dimensions about a millisecond, so no approximate index is needed)."""

    source: str  # the table they came from
    run_date: dt.date | None  # None for ALS factors (a fit replaces them)
    item_pos: np.ndarray  # int32 movie positions, one per row
    unit: np.ndarray  # float32 [rows, dim]
    row_of: np.ndarray  # int32 per movie position: its row, -1 without a vector
    dropped: int = 0  # rows left out: a NULL vector, one of another length than the rest, or not finite

    @classmethod
    def from_rows(cls, source: str, run_date: dt.date | None, movies: Movies, movie_ids: np.ndarray,
                  vectors: np.ndarray) -> "ItemVectors":
        item_pos = movies.positions(movie_ids)
        rows = [_vector(v) for v in vectors]
        lengths = np.array([len(v) if v is not None else 0 for v in rows], np.int64)
        known = (item_pos >= 0) & (lengths > 0)
        dim = 0
        if known.any():  # the model's dimension: the usual length
            values, counts = np.unique(lengths[known], return_counts=True)
            dim = int(values[counts.argmax()])
        keep = known & (lengths == dim) & np.array([v is not None and np.isfinite(v).all() for v in rows], bool)
        matrix = (np.stack([rows[i] for i in np.flatnonzero(keep)]).astype(np.float32) if keep.any()
                  else np.zeros((0, 1), np.float32))
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = matrix / np.where(norms > 0, norms, 1)
        row_of = np.full(len(movies.movie_ids), -1, np.int32)
        row_of[item_pos[keep]] = np.arange(int(keep.sum()), dtype=np.int32)
        return cls(source, run_date, item_pos[keep], unit, row_of, int(np.count_nonzero((item_pos >= 0) & ~keep)))

    @classmethod
    def load_factors(cls, warehouse: Warehouse, movies: Movies, table: str) -> "ItemVectors":
        rows = warehouse.query("SELECT movieId, features FROM {t}", t=table)
        return cls.from_rows(table, None, movies, rows["movieId"], rows["features"])

    @classmethod
    def load_embeddings(cls, warehouse: Warehouse, movies: Movies, model: str,
                        run_date: dt.date) -> "ItemVectors":
        rows = warehouse.query("SELECT movieId, vector FROM {t} WHERE model = ? AND run_date = ?", [model, run_date],
                               t="item_embeddings")
        return cls.from_rows("item_embeddings", run_date, movies, rows["movieId"], rows["vector"])

    def similar(self, pos: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The k items of highest cosine similarity to the item at movie position `pos` (itself left out);
        None when the item has no vector."""
        row = int(self.row_of[pos])
        if row < 0:
            return None
        cosine = self.unit @ self.unit[row]
        cosine[row] = -np.inf
        k = min(k, len(cosine) - 1)
        if k <= 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        top = np.argpartition(-cosine, k - 1)[:k]
        top = top[np.lexsort((self.item_pos[top], -cosine[top]))]
        return self.item_pos[top], cosine[top]
