"""ItemCF (recsys_spark.baselines.itemcf) against a brute-force numpy computation on random small data."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from recsys_spark.baselines.itemcf import (ITEM_BLOCK, ItemCFConfig, item_neighbors, itemcf_candidates,
                                           recommend_itemcf)
from recsys_core.ties import Ties
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import as_of_validation
from item_histories import interactions_frame, random_histories

N_USERS, N_ITEMS = 40, 30
CONFIG = ItemCFConfig(neighbors=5, shrinkage=2.0, max_user_items=7, history=4, recency_decay=0.7)


@pytest.fixture(scope="module")
def histories() -> dict[int, list[int]]:
    return random_histories(11, N_USERS, N_ITEMS, first_item=1)


@pytest.fixture(scope="module")
def interactions(spark, histories):
    return interactions_frame(spark, histories)


def brute_force_similarity(histories: dict[int, list[int]], config: ItemCFConfig) -> np.ndarray:
    """[N_ITEMS + 1]^2 shrunk cosine of the binary (capped) train matrix; 0 on the diagonal."""
    X = np.zeros((N_USERS + 1, N_ITEMS + 1))
    for user, items in histories.items():
        train = items[:-2][-config.max_user_items:]
        X[user, train] = 1.0
    co = X.T @ X
    n = np.diag(co).copy()
    sim = co / (np.sqrt(np.outer(n, n)) + config.shrinkage)
    np.fill_diagonal(sim, 0.0)
    return sim


def brute_force_top_k(sim: np.ndarray, k: int) -> dict[int, list[tuple[int, float]]]:
    """item -> its k most similar items with similarity > 0, best first, ties by neighbour index."""
    out = {}
    for i in range(1, N_ITEMS + 1):
        candidates = [(j, sim[i, j]) for j in range(1, N_ITEMS + 1) if sim[i, j] > 0]
        out[i] = sorted(candidates, key=lambda c: (-c[1], c[0]))[:k]
    return {i: top for i, top in out.items() if top}


@pytest.mark.parametrize("block", [ITEM_BLOCK, 7])  # one task for all items; five tasks, the last one short
def test_neighbors_are_the_brute_force_shrunk_cosine(histories, interactions, block):
    expected = brute_force_top_k(brute_force_similarity(histories, CONFIG), CONFIG.neighbors)
    got: dict[int, list[tuple[int, float]]] = {}
    for row in item_neighbors(interactions, CONFIG, block).orderBy("item_idx", "rank").collect():
        got.setdefault(row.item_idx, []).append((row.neighbor_idx, row.similarity))
        assert row.rank == len(got[row.item_idx])
    assert sorted(got) == sorted(expected)
    for item, top in expected.items():
        assert [j for j, _ in got[item]] == [j for j, _ in top], item
        np.testing.assert_allclose([s for _, s in got[item]], [s for _, s in top], rtol=1e-12)


def brute_force_scores(histories, sim_top: np.ndarray, user: int, before_test: bool) -> np.ndarray:
    """The recency-weighted sum of the kept neighbours' similarities over the user's recent history."""
    history = histories[user][:-1] if before_test else histories[user][:-2]
    recent = history[::-1][:CONFIG.history]  # newest first
    return sum(CONFIG.recency_decay ** back * sim_top[item] for back, item in enumerate(recent))


def kept_similarities(histories) -> np.ndarray:
    """The similarity matrix with only each item's top `neighbors` kept (what item_neighbors stores)."""
    sim = brute_force_similarity(histories, CONFIG)
    kept = np.zeros_like(sim)
    for i, top in brute_force_top_k(sim, CONFIG.neighbors).items():
        for j, s in top:
            kept[i, j] = s
    return kept


@pytest.mark.parametrize("split", ["test", "validation"])
def test_user_scores_and_lists_match_brute_force(spark, histories, interactions, split):
    view = interactions if split == "test" else as_of_validation(interactions)
    neighbors = item_neighbors(interactions, CONFIG).cache()
    kept = kept_similarities(histories)
    scores = {(r.user_idx, r.item_idx): r.score
              for r in itemcf_candidates(view, neighbors, CONFIG, N_ITEMS).collect()}
    popularity = spark.createDataFrame([(i, 1.0 / i, i) for i in range(1, N_ITEMS + 1)],
                                       "item_idx int, score double, pop_rank int")
    k = N_ITEMS
    lists: dict[int, list[int]] = {}
    for row in recommend_itemcf(view, neighbors, popularity, k, CONFIG, Ties()).orderBy("user_idx", "rank").collect():
        lists.setdefault(row.user_idx, []).append(row.item_idx)
    for user in histories:
        expected = brute_force_scores(histories, kept, user, before_test=split == "test")
        seen = set(histories[user][:-1] if split == "test" else histories[user][:-2])
        got = np.zeros(N_ITEMS + 1)
        for (u, item), value in scores.items():
            if u == user:
                got[item] = value
        unseen = np.array([i not in seen for i in range(N_ITEMS + 1)])
        np.testing.assert_allclose(got, np.where(unseen, expected, 0.0), rtol=0, atol=1e-12)  # rounded to 12 places
        positive = [i for i in range(1, N_ITEMS + 1) if expected[i] > 0 and i not in seen]
        ranked = lists[user]
        assert len(ranked) == N_ITEMS - len(seen) and not seen & set(ranked)
        head = ranked[:len(positive)]
        assert set(head) == set(positive), user  # every neighbour outranks the popularity padding
        assert all(expected[a] >= expected[b] - 1e-12 for a, b in zip(head, head[1:])), user
    neighbors.unpersist()


def test_the_cap_keeps_only_each_users_newest_items(histories, interactions):
    """With a cap of 2, co-counts come only from each user's two newest train items."""
    config = ItemCFConfig(neighbors=N_ITEMS, max_user_items=2)
    pairs = {}
    for items in histories.values():
        train = items[:-2]
        if len(train) >= 2:
            a, b = sorted(train[-2:])
            pairs[a, b] = pairs.get((a, b), 0) + 1
    got = {(r.item_idx, r.neighbor_idx): r.co_count
           for r in item_neighbors(interactions, config).where(F.col("item_idx") < F.col("neighbor_idx")).collect()}
    assert got == pairs


def test_bad_config_is_one_clear_error():
    with pytest.raises(RecsysError, match="baselines.itemcf.recency_decay"):
        ItemCFConfig(recency_decay=0.0)
    with pytest.raises(RecsysError, match="baselines.itemcf.max_user_items"):
        ItemCFConfig(max_user_items=1)


def test_ties_at_the_kth_neighbour_break_by_index(spark):
    """Items 1..6 each shared by the same two users with item 0: six equal similarities for K = 3 places."""
    rows = [(u, item, seq, "train") for u in (1, 2) for seq, item in enumerate([0, 6, 4, 2, 5, 1, 3], 1)]
    interactions = spark.createDataFrame(rows, "user_idx int, item_idx int, seq int, split string")
    top = item_neighbors(interactions, ItemCFConfig(neighbors=3), block=2).where("item_idx = 0").orderBy("rank")
    assert [(r.neighbor_idx, r.co_count, r.rank) for r in top.collect()] == [(1, 2, 1), (2, 2, 2), (3, 2, 3)]


@pytest.mark.slow
def test_ml_small_itemcf_end_to_end(spark, ml_small_warehouse, tmp_path):
    """On ml-latest-small: item_neighbors is symmetric and capped at K, every user gets k unseen items in both
    lists (the validation-time list excludes train items only), and the one evaluator ranks ItemCF above
    popularity (the literature's ordering on leave-last-out MovieLens)."""
    import datetime as dt
    import shutil

    from recsys_spark.baselines import BaselinesConfig, topn
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.evaluate import EvaluateConfig, evaluate
    from recsys_spark.recommendations import read_recommendations

    warehouse = tmp_path / "warehouse"
    for table in ("interactions", "items", "users"):  # the shared warehouse is read-only
        shutil.copytree(table_path(ml_small_warehouse, table), table_path(warehouse, table))
    k, day = 10, dt.date(2030, 1, 1)
    config = BaselinesConfig.from_dict({"itemcf": {"neighbors": 20, "shrinkage": 5.0}})
    assert topn(spark, warehouse, "itemcf", k, day, "itemcf-e2e", config=config) == 610 * k
    topn(spark, warehouse, "popularity", k, day, "popularity-e2e", config=config)

    neighbors = read_table(spark, table_path(warehouse, "item_neighbors"))
    assert neighbors.groupBy("item_idx").count().agg(F.max("count")).first()[0] == 20
    mirrored = neighbors.alias("a").join(
        neighbors.alias("b"), (F.col("a.item_idx") == F.col("b.neighbor_idx"))
        & (F.col("a.neighbor_idx") == F.col("b.item_idx")))
    assert mirrored.where(F.abs(F.col("a.similarity") - F.col("b.similarity")) > 1e-12).count() == 0

    interactions = read_table(spark, table_path(warehouse, "interactions"))
    for table, seen_splits in (("recommendations", ("train", "validation")), ("recommendations_validation", ("train",))):
        recs = read_recommendations(spark, warehouse, "itemcf", table=table)
        assert recs.select("userId", "movieId").distinct().count() == 610 * k, table
        seen = interactions.where(F.col("split").isin(*seen_splits)).select("userId", "movieId")
        assert recs.join(seen, ["userId", "movieId"]).count() == 0, table

    result = evaluate(spark, warehouse, config=EvaluateConfig.from_dict({"ks": [10], "bootstrap_resamples": 0}))
    assert result.value("itemcf", "ndcg", 10) > result.value("popularity", "ndcg", 10)
