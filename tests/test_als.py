"""ALS: config checks, cold rows counted and left out of RMSE/MAE (checked against the factors by hand), the grid
search, the saved model and factor tables, the metrics rows; on ml-latest-small the random 80/20 RMSE."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from recsys_spark.als import (AlsConfig, fit, grid_points, load_model, random_split_errors, rating_errors, ratings,
                              run_als, tune, validation_score)
from recsys_spark.als_topn import score_top_k
from recsys_core.ties import Ties
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.errors import RecsysError
from recsys_spark.evaluate import read_metrics

DAY = dt.date(2026, 11, 23)
INTERACTIONS_SCHEMA = ("userId long, movieId long, rating double, timestamp long, user_idx int, item_idx int, "
                       "seq int, split string, temporal_split string")


def synthetic_interactions(n_users=40, n_items=30, per_user=12, seed=0):
    """Ratings from a rank-2 taste model, leave-last-out splits, temporal split at the 80% timestamp."""
    rng = np.random.default_rng(seed)
    user_taste, item_taste = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for seq, i in enumerate(items, start=1):
            rating = float(np.clip(np.round((3 + user_taste[u] @ item_taste[i]) * 2) / 2, 0.5, 5.0))
            split = "test" if seq == per_user else "validation" if seq == per_user - 1 else "train"
            ts = 1000 * seq + u
            rows.append((u + 100, int(i) + 500, rating, ts, u + 1, int(i) + 1, seq, split,
                         "train" if seq <= int(0.8 * per_user) else "test"))
    return rows


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    wh = tmp_path_factory.mktemp("als_wh")
    rows = synthetic_interactions()
    df = spark.createDataFrame(rows, INTERACTIONS_SCHEMA)
    write_table(df, table_path(wh, "interactions"))
    write_table(df.select("userId", "user_idx").distinct(), table_path(wh, "users"))
    items = df.select("movieId", "item_idx").distinct().union(spark.createDataFrame([(9999, None)], "movieId long, "
                                                                                                   "item_idx int"))
    write_table(items, table_path(wh, "items"))
    return wh


def test_config_is_checked():
    assert AlsConfig.from_dict({"rank": 8, "implicit_prefs": True}).rank == 8
    with pytest.raises(RecsysError, match=r"unknown config key\(s\) als.rnak"):
        AlsConfig.from_dict({"rnak": 8})
    with pytest.raises(RecsysError, match="als.rank must be a positive integer"):
        AlsConfig(rank=0)
    with pytest.raises(RecsysError, match=r"unknown config key\(s\) als.grid.learning_rate"):
        AlsConfig(grid={"learning_rate": [0.1]})
    assert grid_points(AlsConfig(grid={"reg_param": [0.1, 0.2], "rank": [4, 8]})) == [
        {"rank": 4, "reg_param": 0.1}, {"rank": 4, "reg_param": 0.2},
        {"rank": 8, "reg_param": 0.1}, {"rank": 8, "reg_param": 0.2}]


def test_cold_rows_are_counted_and_errors_match_the_factors(spark):
    train = spark.createDataFrame([(1, 1, 4.0), (1, 2, 3.0), (2, 1, 5.0), (2, 3, 2.0), (3, 2, 1.0), (3, 3, 4.5)],
                                  "user_idx int, item_idx int, rating float")
    model = fit(train, AlsConfig(rank=2, max_iter=5, seed=1, num_blocks=2))
    # user 9 and item 9 have no factors: those two rows are cold.
    test = spark.createDataFrame([(1, 3, 3.0), (2, 2, 4.0), (9, 1, 3.0), (3, 9, 2.0)],
                                 "user_idx int, item_idx int, rating double")
    errors = rating_errors(model, test)
    assert (errors.rows, errors.cold_rows, errors.scored_rows) == (4, 2, 2)
    users = {r.id: np.array(r.features) for r in model.userFactors.collect()}
    items = {r.id: np.array(r.features) for r in model.itemFactors.collect()}
    diffs = [users[u] @ items[i] - y for u, i, y in ((1, 3, 3.0), (2, 2, 4.0))]
    assert errors.rmse == pytest.approx(float(np.sqrt(np.mean(np.square(diffs)))), rel=1e-5)
    assert errors.mae == pytest.approx(float(np.mean(np.abs(diffs))), rel=1e-5)
    all_cold = rating_errors(model, test.where("user_idx = 9"))
    assert all_cold.rmse is None and all_cold.cold_rows == 1


def test_tune_fits_every_grid_point_and_keeps_the_best(spark, warehouse):
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    train = ratings(interactions.where("split = 'train'"))
    validation = interactions.where("split = 'validation'")
    config = AlsConfig(rank=2, max_iter=4, num_blocks=2, grid={"reg_param": [0.01, 5.0]})
    best, points = tune(train, validation, config, Ties())
    assert [p.params for p in points] == [{"reg_param": 0.01}, {"reg_param": 5.0}]
    assert best.reg_param == max(points, key=lambda p: p.score).params["reg_param"]
    assert best.reg_param == 0.01  # regParam 5 shrinks every factor to ~0: predictions ~0, RMSE ~3
    implicit = config.with_params(implicit_prefs=True, alpha=5.0)
    implicit_best, implicit_points = tune(train, validation, implicit, Ties())
    assert all(0.0 <= p.score <= 1.0 for p in implicit_points)  # HR@10 on the validation item
    # the score is HR@10 of the blocked top-10 (seen = train items) against each user's validation item
    model = fit(train, implicit_best)
    lists = score_top_k(model.userFactors.withColumnRenamed("id", "user_idx"),
                        model.itemFactors.withColumnRenamed("id", "item_idx"), train.select("user_idx", "item_idx"),
                        10, Ties()).collect()
    top = {}
    for row in lists:
        top.setdefault(row.user_idx, set()).add(row.item_idx)
    targets = {r.user_idx: r.item_idx for r in validation.select("user_idx", "item_idx").collect()}
    expected = sum(item in top.get(user, set()) for user, item in targets.items()) / len(targets)
    assert validation_score(model, implicit_best, train, validation, Ties()) == pytest.approx(expected)


def test_run_als_saves_model_factors_and_metrics(spark, warehouse):
    config = AlsConfig(rank=3, max_iter=4, checkpoint_interval=2, num_blocks=2, temporal=True, random_split=True)
    result = run_als(spark, warehouse, config, DAY, "run-1")
    assert set(result.errors) == {"test", "validation", "temporal_test", "random_80_20"}
    assert spark.sparkContext.getCheckpointDir() is not None

    model = load_model(warehouse, "als")
    assert model.rank == 3
    users = read_table(spark, table_path(warehouse, "als_user_factors"))
    items = read_table(spark, table_path(warehouse, "als_item_factors"))
    assert dict(users.dtypes) == {"user_idx": "int", "userId": "bigint", "features": "array<float>"}
    assert dict(items.dtypes) == {"item_idx": "int", "movieId": "bigint", "features": "array<float>"}
    assert users.count() == model.userFactors.count() and items.count() == model.itemFactors.count()
    assert users.where(F.col("userId") != F.col("user_idx") + 99).isEmpty()  # MovieLens ids mapped back

    metrics = read_metrics(warehouse).to_pylist()
    assert {(r["split"], r["metric"]) for r in metrics} == {(s, m) for s in result.errors for m in ("rmse", "mae")}
    assert all(r["model"] == "als" and r["run_date"] == DAY and r["k"] is None for r in metrics)
    run_als(spark, warehouse, config.with_params(temporal=False, random_split=False), DAY, "run-2")
    again = read_metrics(warehouse).to_pylist()
    assert len(again) == len(metrics)  # same rows replaced, the temporal/random ones of run-1 kept
    assert {r["run_id"] for r in again if r["split"] == "test"} == {"run-2"}

    implicit = run_als(spark, warehouse, config.with_params(implicit_prefs=True, name="als_implicit"), DAY, "run-3")
    assert implicit.errors == {} and implicit.metric_rows == []
    assert load_model(warehouse, "als_implicit").rank == 3
    with pytest.raises(RecsysError, match="no ALS model"):
        load_model(warehouse, "als_nothing")


def test_job_flags_and_bad_input(spark, warehouse, tmp_path, capsys):
    from jobs.fit_als import main

    assert main(["--warehouse", str(warehouse), "--run-date", DAY.isoformat(), "rank=2", "max_iter=2", "num_blocks=2",
                 "als.temporal=false"]) == 0
    out = capsys.readouterr().out
    assert "rank=2" in out and "test: RMSE" in out and "cold rows" in out
    import mlflow.spark

    from jobs.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri({}, warehouse))
    run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`recsys.step` = 'als'").iloc[0]
    logged = mlflow.spark.load_model(f"runs:/{run['run_id']}/model").stages[0]
    assert logged.rank == 2
    assert logged.userFactors.count() == load_model(warehouse, "als").userFactors.count()
    assert main(["--warehouse", str(warehouse), "rank=0"]) == 2
    assert "als.rank must be a positive integer" in capsys.readouterr().err
    assert main(["--warehouse", str(tmp_path / "empty")]) == 2
    assert "Delta table not found" in capsys.readouterr().err


def test_ml_small_random_split_rmse(spark, ml_small_warehouse):
    """The literature's protocol on ml-latest-small (random 80/20 of all ratings): ~0.87 expected."""
    interactions = read_table(spark, table_path(ml_small_warehouse, "interactions"))
    errors = random_split_errors(interactions, AlsConfig(rank=10, max_iter=10, reg_param=0.1, num_blocks=4))
    assert errors.rows > 19_000 and 0 < errors.cold_rows < 0.1 * errors.rows
    assert errors.rmse < 0.90, errors


def test_spark_loads_the_native_lapack_that_setup_installs(spark):
    """scripts/setup.sh installs OpenBLAS where the system has no liblapack.so.3: MLlib's ALS must then run its
    per-user solves in it, not in the Java fallback (a 2-iteration 25M fit: 305 s against 193 s, docs/BENCHMARKS.md)."""
    import ctypes.util

    if ctypes.util.find_library("lapack") is None or ctypes.util.find_library("blas") is None:
        pytest.skip("no liblapack.so.3 / libblas.so.3 on this machine (scripts/setup.sh installs them with apt)")
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib
    assert netlib.lapack.NativeLAPACK.getInstance().getClass().getSimpleName() == "JNILAPACK"
    assert netlib.blas.NativeBLAS.getInstance().getClass().getSimpleName() == "JNIBLAS"
