"""Item-based collaborative filtering: item–item cosine over users' train interactions, in Spark.

Each train interaction is a 1 in a binary user × item matrix X (a user's most recent `max_user_items` train items
only, so that a few very active users do not dominate the co-counts). Then

    co(i, j)  = users who have both i and j                      (the entries of X^T X)
    sim(i, j) = co(i, j) / (sqrt(n_i * n_j) + shrinkage)         (n_i = users who have i; shrinkage 0: cosine)

X^T X is computed as a sparse product per block of items, one Spark task a block, with X broadcast (scipy.sparse).
A SQL self-join on user would emit every co-occurring pair as a row: 2.6 billion at ML-25M size with the default
cap (sum over users of C(min(n_u, 500), 2)), hours of shuffle on 2 cores; the block product touches the same pairs
in compiled code and keeps one block's rows in memory at a time.

Each item's `neighbors` most similar items (ties by neighbour index) are kept in the Delta table `item_neighbors`.
A user's list scores the neighbours of their `history` most recent items (train + validation, by seq), the item
b places back from the newest weighted `recency_decay ** b`:

    score(u, j) = sum over recent items i of weight(i) * sim(i, j)

normalised by the user's best unseen score into tier 1 (1, 2]; popularity pads below (tier 0), seen items excluded.
The sums are the sparse product H @ S (H: users' weighted recent items, S: item_neighbors), a block of users at a
time on the driver (itemcf_candidates), rounded to 12 decimal places so that equal sums stay ties. Beside the
table, models/itemcf/config.json keeps the section that scored the lists: the server's real-time ItemCF
(recsys_serve.count_models) scores a posted history with the same `history` and `recency_decay`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_core import storage
from recsys_spark.baselines.common import rank_over_popularity, train_rows, users_of
from recsys_core.config import POSITIVE, Config, Rule, at_least, checked, number_in
from recsys_core.ties import Ties
from recsys_spark.recommendations import HISTORY_SPLITS, seen_pairs

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables

ITEM_BLOCK = 256  # items per task: a block's co-count rows stay below ~200 MB at ML-25M size
USER_BLOCK = 4096  # users scored at once on the driver: a block's sparse scores are about history * neighbors each
NEIGHBOR_COLUMNS = "item_idx int, neighbor_idx int, similarity double, co_count long, rank int"
CANDIDATE_COLUMNS = "user_idx int, item_idx int, score double"


@dataclass(frozen=True)
class ItemCFConfig(Config):
    section = "baselines.itemcf"

    neighbors: int = checked(50, POSITIVE)        # K: most similar items kept per item in item_neighbors
    shrinkage: float = checked(0.0, at_least(0))  # added to the cosine's denominator: damps pairs seen by few users
    # a user's most recent train items that count (null: all)
    max_user_items: int | None = checked(500, Rule(lambda v: v >= 2, "an integer >= 2"))
    history: int = checked(20, POSITIVE)          # the user's most recent items whose neighbours are scored
    # weight of the item b back from the newest: recency_decay ** b
    recency_decay: float = checked(0.8, number_in(0, 1, low_open=True))


def _newest_first(rows: DataFrame) -> DataFrame:
    """rows with `back`: 0 for the user's newest row (by seq), 1 for the one before, ..."""
    return rows.withColumn("back", F.row_number().over(Window.partitionBy("user_idx").orderBy(F.col("seq").desc()))
                           - 1)


def user_items(interactions: DataFrame, max_user_items: int | None) -> DataFrame:
    """user_idx, item_idx: the binary train matrix, each user cut to their most recent `max_user_items` items."""
    rows = train_rows(interactions).select("user_idx", "item_idx", "seq")
    if max_user_items is not None:
        rows = _newest_first(rows).where(F.col("back") < max_user_items)
    return rows.select("user_idx", "item_idx").distinct()


def block_neighbors(X, XT, lo: int, hi: int, neighbors: int, shrinkage: float) -> pd.DataFrame:
    """The top-`neighbors` rows of items lo..hi-1: X is the binary user × item CSR matrix, XT its transpose (CSR).
    Best first by similarity, ties by neighbour index; only neighbours with a co-count."""
    co = (XT[lo:hi] @ X).tocsr()
    n = np.diff(XT.indptr).astype(np.int64)
    per_row = np.diff(co.indptr)
    rows = np.repeat(np.arange(lo, hi), per_row)
    off_diagonal = co.indices != rows
    # The same float64 operations as `co / (sqrt(n_i * n_j) + s)` in SQL, so ties fall identically.
    similarity = co.data / (np.sqrt(n[rows] * n[co.indices]) + shrinkage)
    out_item, out_neighbor, out_sim, out_co, out_rank = [], [], [], [], []
    for r in range(hi - lo):
        start, end = co.indptr[r], co.indptr[r + 1]
        keep = off_diagonal[start:end]
        cols, sims, counts = co.indices[start:end][keep], similarity[start:end][keep], co.data[start:end][keep]
        if len(cols) > neighbors:  # everything tied with the K-th value stays a candidate for the tie-break
            kth = np.partition(sims, len(sims) - neighbors)[len(sims) - neighbors]
            candidates = sims >= kth
            cols, sims, counts = cols[candidates], sims[candidates], counts[candidates]
        order = np.lexsort((cols, -sims))[:neighbors]
        out_item.append(np.full(len(order), lo + r, np.int32))
        out_neighbor.append(cols[order].astype(np.int32))
        out_sim.append(sims[order])
        out_co.append(counts[order].astype(np.int64))
        out_rank.append(np.arange(1, len(order) + 1, dtype=np.int32))
    return pd.DataFrame({"item_idx": np.concatenate(out_item), "neighbor_idx": np.concatenate(out_neighbor),
                         "similarity": np.concatenate(out_sim), "co_count": np.concatenate(out_co),
                         "rank": np.concatenate(out_rank)})


def binary_matrix(users: np.ndarray, items: np.ndarray, n_items: int):
    """The binary user × item CSR matrix of (user, item) pairs (int32 ones; pairs must be distinct)."""
    from scipy import sparse

    return sparse.csr_matrix((np.ones(len(users), np.int32), (users, items)), shape=(int(users.max()) + 1, n_items))


def item_block_product(spark, X, block: int, compute, schema: str) -> DataFrame:
    """Rows of `compute(X, XT, lo, hi)` (a pandas DataFrame, `schema`) for every block lo..hi-1 of X's columns, one
    Spark task a block, X and XT = X^T (CSR) broadcast: `XT[lo:hi] @ X` is the block's rows of X^T X."""
    n_items = X.shape[1]
    matrices = spark.sparkContext.broadcast((X, X.T.tocsr()))

    def blocks_of_rows(batches):
        X, XT = matrices.value
        for batch in batches:
            for lo in batch["id"]:
                yield compute(X, XT, int(lo), min(int(lo) + block, n_items))

    return (spark.range(0, n_items, block, numPartitions=-(-n_items // block))
            .mapInPandas(blocks_of_rows, schema))


def write_scoring_config(warehouse, config: ItemCFConfig) -> None:
    """models/itemcf/config.json: the section whose item_neighbors and lists these are (module docstring)."""
    storage.write_bytes(storage.join(str(warehouse), "models", "itemcf", "config.json"),
                        json.dumps(dataclasses.asdict(config), indent=2).encode())


def item_neighbors(interactions: DataFrame, config: ItemCFConfig, block: int = ITEM_BLOCK) -> DataFrame:
    """item_idx, neighbor_idx, similarity, co_count, rank (1 = most similar): each item's top `neighbors`,
    `block` items per task."""
    spark = interactions.sparkSession
    pairs = user_items(interactions, config.max_user_items).toArrow()
    if pairs.num_rows == 0:
        return spark.createDataFrame([], NEIGHBOR_COLUMNS)
    users = pairs.column("user_idx").to_numpy().astype(np.int64)
    items = pairs.column("item_idx").to_numpy().astype(np.int64)
    del pairs
    X = binary_matrix(users, items, int(items.max()) + 1)
    del users, items
    neighbors, shrinkage = config.neighbors, float(config.shrinkage)
    return item_block_product(spark, X, block,
                              lambda X, XT, lo, hi: block_neighbors(X, XT, lo, hi, neighbors, shrinkage),
                              NEIGHBOR_COLUMNS)


def recent_history(interactions: DataFrame, config: ItemCFConfig) -> DataFrame:
    """user_idx, item_idx, weight: the user's `history` newest train+validation items, recency-weighted."""
    rows = interactions.where(F.col("split").isin(*HISTORY_SPLITS)).select("user_idx", "item_idx", "seq")
    recent = _newest_first(rows).where(F.col("back") < config.history)
    return recent.select("user_idx", "item_idx", F.pow(F.lit(config.recency_decay), F.col("back")).alias("weight"))


def itemcf_candidates(interactions: DataFrame, neighbors: DataFrame, config: ItemCFConfig, k: int,
                      block: int = USER_BLOCK) -> DataFrame:
    """user_idx, item_idx, score: each user's k best unseen recency-weighted sums of similarities (everything tied
    with the k-th stays), scored on the driver a block of users at a time as the sparse product H @ S of the users'
    weighted recent items and the item_neighbors matrix. A SQL join of the recent items to their neighbours would
    emit every (user, neighbour) pair as a row (history * neighbors a user: 162M at ML-25M size) to be summed and
    ranked in shuffles; the product touches the same pairs in compiled code, and only k a user go back to Spark."""
    spark = interactions.sparkSession
    recent = recent_history(interactions, config).toArrow()
    if recent.num_rows == 0:
        return spark.createDataFrame([], CANDIDATE_COLUMNS)
    sims = neighbors.select("item_idx", "neighbor_idx", "similarity").toArrow()
    seen = seen_pairs(interactions).distinct().toArrow()
    seen_users = seen.column("user_idx").to_numpy().astype(np.int64)
    seen_items = seen.column("item_idx").to_numpy().astype(np.int64)
    user_ids, user_row = np.unique(recent.column("user_idx").to_numpy().astype(np.int64), return_inverse=True)
    recent_items = recent.column("item_idx").to_numpy().astype(np.int64)
    sim_items = sims.column("item_idx").to_numpy().astype(np.int64)
    sim_neighbors = sims.column("neighbor_idx").to_numpy().astype(np.int64)
    n_items = int(max(recent_items.max(), seen_items.max(), sim_items.max(initial=0), sim_neighbors.max(initial=0))) + 1
    from scipy import sparse

    H = sparse.csr_matrix((recent.column("weight").to_numpy(), (user_row, recent_items)),
                          shape=(len(user_ids), n_items))
    S = sparse.csr_matrix((sims.column("similarity").to_numpy(), (sim_items, sim_neighbors)), shape=(n_items, n_items))
    # The recent items are the newest seen ones: every user with a seen item has a row of H.
    seen_matrix = sparse.csr_matrix((np.ones(len(seen_users), bool), (np.searchsorted(user_ids, seen_users),
                                                                       seen_items)), shape=H.shape)
    del recent, sims, seen, seen_users, seen_items
    parts = []
    for lo in range(0, H.shape[0], block):
        scores = (H[lo:lo + block] @ S).tocsr()
        scores = scores - scores.multiply(seen_matrix[lo:lo + block])
        # Sums of the same similarities in another order differ in the last bit: rounded, such ties stay ties and
        # fall to the tie key as everywhere else.
        scores.data = np.round(scores.data, 12)
        scores.eliminate_zeros()
        parts.append(row_top_k(scores, user_ids[lo:lo + block], k))
    return spark.createDataFrame(pd.concat(parts, ignore_index=True), CANDIDATE_COLUMNS)


def row_top_k(scores, user_ids: np.ndarray, k: int) -> pd.DataFrame:
    """user_idx, item_idx, score of each CSR row's k best positive entries (everything tied with the k-th stays)."""
    out_user, out_item, out_score = [], [], []
    for r in range(scores.shape[0]):
        start, end = scores.indptr[r], scores.indptr[r + 1]
        cols, values = scores.indices[start:end], scores.data[start:end]
        positive = values > 0
        cols, values = cols[positive], values[positive]
        if len(cols) > k:
            kth = np.partition(values, len(values) - k)[len(values) - k]
            cols, values = cols[values >= kth], values[values >= kth]
        out_user.append(np.full(len(cols), user_ids[r], np.int32))
        out_item.append(cols.astype(np.int32))
        out_score.append(values.astype(np.float64))
    return pd.DataFrame({"user_idx": np.concatenate(out_user or [np.array([], np.int32)]),
                         "item_idx": np.concatenate(out_item or [np.array([], np.int32)]),
                         "score": np.concatenate(out_score or [np.array([], np.float64)])})


def recommend_itemcf(interactions: DataFrame, neighbors: DataFrame, popularity: DataFrame, k: int,
                     config: ItemCFConfig, ties: Ties, users: DataFrame | None = None) -> DataFrame:
    """users: user_idx, seen of this view (common.seen_as_of; default: collected from `interactions`)."""
    users = users_of(interactions) if users is None else users
    return rank_over_popularity(users, itemcf_candidates(interactions, neighbors, config, k), popularity, k, ties)


def itemcf(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry."""
    return recommend_itemcf(tables.interactions, tables.neighbors(), tables.popularity, k, config.itemcf,
                            tables.ties, tables.users_as_of())
