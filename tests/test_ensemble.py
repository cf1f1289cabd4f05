"""The learned ensemble (recsys_spark.ensemble): its NDCG@10 search agrees with a per-user sort and with the one
evaluator, it picks the member that is right on validation, and choosing never reads a test item."""
from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from pyspark.sql import functions as F

from recsys_spark.delta import read_arrow, table_path, write_arrow
from recsys_spark.ensemble import EnsembleConfig, choose_weights, ndcg_at, run_ensemble, simplex_grid
from recsys_spark.errors import RecsysError
from recsys_spark.evaluate import EvaluateConfig, evaluate
from recsys_spark.recommendations import read_recommendations
from recsys_spark.schemas import INTERACTIONS

DAY = dt.date(2030, 2, 1)
MEMBERS = ["markov", "popularity"]
CONFIG = EnsembleConfig(models=MEMBERS, depth=20, rrf_k=5.0, weight_steps=4, max_users=None)


def sorted_ndcg(weights, user, movie, rr, is_target, n_users, k=10) -> float:
    """Per user: sort the candidates by (-score, movieId), drop score 0, find the target."""
    total = 0.0
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        score = rr[rows] @ weights
        order = sorted((r for r, s in zip(rows, score) if s > 0), key=lambda r: (-(rr[r] @ weights), movie[r]))
        for rank, r in enumerate(order[:k], 1):
            if is_target[r]:
                total += 1.0 / np.log2(rank + 1)
    return total / n_users


def test_grid_ndcg_equals_a_per_user_sort():
    rng = np.random.default_rng(3)
    user = np.repeat(np.arange(30), 25)
    movie = np.tile(np.arange(25), 30) * 7 + 1
    rr = np.where(rng.random((len(user), 3)) < 0.5, 0.0, 1.0 / (2.0 + rng.integers(1, 20, (len(user), 3))))
    is_target = np.zeros(len(user), bool)
    is_target[np.arange(30) * 25 + rng.integers(0, 25, 30)] = True
    grid = simplex_grid(3, 4)
    assert len(grid) == 15 and np.allclose(grid.sum(axis=1), 1.0)
    got = ndcg_at(grid, user, movie, rr, is_target, n_users=40)  # 10 users have no candidates at all
    expected = [sorted_ndcg(w, user, movie, rr, is_target, 40) for w in grid]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_the_weight_goes_to_the_member_right_on_validation():
    """Member 0 ranks every user's target 1st, member 1 never lists it: all weight on member 0 is the unique best."""
    user = np.repeat(np.arange(5), 2)
    movie = np.tile([10, 20], 5)
    is_target = movie == 10
    rr = np.stack([np.where(is_target, 1 / 6, 1 / 7), np.where(is_target, 0.0, 1 / 6)], axis=1)
    grid = simplex_grid(2, 4)
    scores = ndcg_at(grid, user, movie, rr, is_target, 5)
    assert grid[np.argmax(scores)].tolist() == [1.0, 0.0] and scores.max() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def members_warehouse(spark, small_warehouse, tmp_path_factory):
    """A copy of small_warehouse's ETL tables with two members' lists (both tables) written by `recsys topn`."""
    from recsys_spark.baselines import topn

    warehouse = tmp_path_factory.mktemp("ensemble") / "warehouse"
    for table in ("interactions", "items", "users"):
        shutil.copytree(table_path(small_warehouse, table), table_path(warehouse, table))
    for model in MEMBERS:
        topn(spark, warehouse, model, 20, DAY, f"{model}-run")
    return warehouse


def test_choosing_never_reads_a_test_item(spark, members_warehouse, tmp_path):
    """The same weights and score from a warehouse with no test-time lists at all and every test row's item
    replaced by another: what the choice reads holds no test item."""
    chosen = choose_weights(spark, members_warehouse, CONFIG, DAY)
    blind = tmp_path / "blind"
    for table in ("items", "users", "recommendations_validation"):
        shutil.copytree(table_path(members_warehouse, table), table_path(blind, table))
    interactions = read_arrow(table_path(members_warehouse, "interactions"))
    is_test = pc.equal(interactions["split"], "test")
    poisoned = interactions.set_column(interactions.schema.get_field_index("movieId"), "movieId",
                                       pc.if_else(is_test, -1, interactions["movieId"]).cast("int64"))
    write_arrow(poisoned.cast(INTERACTIONS), table_path(blind, "interactions"))
    assert choose_weights(spark, blind, CONFIG, DAY) == chosen
    assert chosen.users == interactions.filter(pc.equal(interactions["split"], "validation")).num_rows


def test_ensemble_writes_both_lists_and_the_evaluator_agrees_with_its_choice(spark, members_warehouse):
    choice = run_ensemble(spark, members_warehouse, CONFIG, 10, DAY, "ensemble-run")
    assert sum(choice.weights.values()) == pytest.approx(1.0)
    assert choice.run_dates == {m: DAY for m in MEMBERS}
    config = EvaluateConfig.from_dict({"ks": [10], "bootstrap_resamples": 0})
    on_validation = evaluate(spark, members_warehouse, "ensemble", DAY, config, split="validation")
    assert on_validation.value("ensemble", "ndcg", 10, "validation") == pytest.approx(choice.ndcg, abs=1e-12)
    best_member = max(evaluate(spark, members_warehouse, m, DAY, config, split="validation")
                      .value(m, "ndcg", 10, "validation") for m in MEMBERS)
    assert choice.ndcg >= best_member - 1e-12  # the grid holds each member alone
    for table in ("recommendations", "recommendations_validation"):
        recs = read_recommendations(spark, members_warehouse, "ensemble", table)
        users = recs.groupBy("userId").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("movieId").alias("d"))
        assert users.where((F.col("n") > 10) | (F.col("n") != F.col("d"))).isEmpty(), table
        assert recs.select("run_id").distinct().collect()[0].run_id == "ensemble-run"


def test_bad_config_is_one_clear_error(spark, members_warehouse):
    with pytest.raises(RecsysError, match="ensemble.models must name at least two"):
        EnsembleConfig(models=["ar2"])
    with pytest.raises(RecsysError, match="ensemble.depth"):
        EnsembleConfig(depth=5)
    with pytest.raises(RecsysError, match=r"ensemble.models: no lists of \['itemcf'\]"):
        choose_weights(spark, members_warehouse, EnsembleConfig(models=["markov", "itemcf"]), DAY)
