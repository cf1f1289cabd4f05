"""EASE (recsys_spark.baselines.ease) against dense numpy on random small data."""
from __future__ import annotations

import numpy as np
import pytest

from recsys_spark.baselines import BaselinesConfig
from recsys_spark.baselines.ease import EASEConfig, ease_weights, fit_ease, gram_matrix, kept_items, recommend_ease
from recsys_core.ties import Ties
from recsys_spark.errors import ConfigError
from recsys_spark.recommendations import as_of_validation
from item_histories import interactions_frame, random_histories

N_USERS, N_ITEMS, MAX_ITEMS, L2 = 40, 30, 20, 3.0


@pytest.fixture(scope="module")
def histories() -> dict[int, list[int]]:
    return random_histories(5, N_USERS, N_ITEMS, first_item=0)


@pytest.fixture(scope="module")
def interactions(spark, histories):
    return interactions_frame(spark, histories)


def dense_train(histories) -> np.ndarray:
    X = np.zeros((N_USERS + 1, N_ITEMS))
    for user, items in histories.items():
        X[user, items[:-2]] = 1.0
    return X


def expected_kept(histories) -> np.ndarray:
    counts = dense_train(histories).sum(axis=0)
    return np.sort(sorted(range(N_ITEMS), key=lambda i: (-counts[i], i))[:MAX_ITEMS])


@pytest.mark.parametrize("block", [256, 7])  # one task; three tasks, the last one short
def test_gram_is_dense_xtx_over_the_most_rated_train_items(histories, interactions, block):
    kept = kept_items(interactions, MAX_ITEMS)
    np.testing.assert_array_equal(kept, expected_kept(histories))
    assert len(kept) == MAX_ITEMS < len({i for items in histories.values() for i in items[:-2]})
    X = dense_train(histories)[:, kept]
    np.testing.assert_array_equal(gram_matrix(interactions, kept, block), X.T @ X)


def test_weights_solve_each_items_ridge_regression_with_zero_diagonal(histories):
    """Steck's constraint diag(B) = 0 makes column j the ridge regression of item j on the other items:
    (G_-j,-j + l2 I) b_-j = G_-j,j, solved here column by column, independent of the closed form."""
    X = dense_train(histories)[:, expected_kept(histories)]
    G = X.T @ X
    B = ease_weights(G.copy(), L2)
    assert np.all(np.diag(B) == 0.0)
    for j in range(MAX_ITEMS):
        others = np.arange(MAX_ITEMS) != j
        column = np.linalg.solve(G[np.ix_(others, others)] + L2 * np.eye(MAX_ITEMS - 1), G[others, j])
        np.testing.assert_allclose(B[others, j], column, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("split", ["test", "validation"])
def test_lists_are_the_brute_force_ranking(spark, histories, interactions, split):
    view = interactions if split == "test" else as_of_validation(interactions)
    kept, B = fit_ease(interactions, EASEConfig(l2=L2, max_items=MAX_ITEMS))
    X = dense_train(histories)[:, kept]
    B_dense = np.linalg.inv(X.T @ X + L2 * np.eye(MAX_ITEMS))
    B_dense = B_dense / -np.diag(B_dense)
    np.fill_diagonal(B_dense, 0.0)
    pop_order = list(range(N_ITEMS))  # item i has popularity rank i + 1
    popularity = spark.createDataFrame([(i, 1.0 / (i + 1), i + 1) for i in pop_order],
                                       "item_idx int, score double, pop_rank int")
    k = 12
    lists: dict[int, list[int]] = {}
    ties = Ties("hash", 5)
    for row in recommend_ease(view, (kept, B), popularity, k, ties).orderBy("user_idx", "rank").collect():
        lists.setdefault(row.user_idx, []).append(row.item_idx)
    n_scored = n_full = 0
    for user, items in histories.items():
        seen = items[:-1] if split == "test" else items[:-2]
        history = np.isin(kept, seen).astype(float)
        scores = history @ B_dense
        ranked = sorted((j for j in range(MAX_ITEMS) if scores[j] > 0 and kept[j] not in seen),
                        key=lambda j: (-scores[j], ties.numpy(user, kept[j])))
        expected = [int(kept[j]) for j in ranked][:k]
        expected += [i for i in pop_order if i not in seen and i not in expected][:k - len(expected)]
        assert lists[user] == expected, user
        n_scored += bool(ranked)
        n_full += len(ranked) >= k
    assert n_scored > N_USERS // 2
    assert 0 < n_full < N_USERS  # users with k EASE candidates (no padding) and users padded with popularity


@pytest.mark.parametrize("ties", [Ties("movieId"), Ties("hash", 42), Ties("hash", 43)])
def test_tied_scores_break_by_the_tie_key(spark, ties):
    """A hand-made B gives items 3, 5, 1, 4 the same score for a user with item 0: all four are candidates for the
    last two places and the lowest tie keys win (under tie_break=movieId the lowest indices)."""
    kept = np.arange(6)
    B = np.zeros((6, 6))
    B[0, 2] = 2.0
    B[0, [3, 5, 1, 4]] = 1.0
    interactions = spark.createDataFrame([(1, 0, 1, "train"), (1, 2, 2, "test")],
                                         "user_idx int, item_idx int, seq int, split string")
    popularity = spark.createDataFrame([(i, 0.5, i + 1) for i in range(6)],
                                       "item_idx int, score double, pop_rank int")
    rows = recommend_ease(interactions, (kept, B), popularity, 3, ties).orderBy("rank").collect()
    tied = sorted([3, 5, 1, 4], key=lambda i: ties.numpy(1, i))
    assert [(r.item_idx, r.rank) for r in rows] == [(2, 1), (tied[0], 2), (tied[1], 3)]
    if ties.rule == "movieId":
        assert tied[:2] == [1, 3]


def test_bad_config_names_its_key():
    with pytest.raises(ConfigError, match="baselines.ease.l2"):
        BaselinesConfig.from_dict({"ease": {"l2": 0}})
    with pytest.raises(ConfigError, match="baselines.ease.l2"):
        EASEConfig(l2=-1.0)
    with pytest.raises(ConfigError, match="baselines.ease.max_items"):
        BaselinesConfig.from_dict({"ease": {"max_items": 0}})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) baselines.ease.lambda"):
        BaselinesConfig.from_dict({"ease": {"lambda": 100}})
