"""The evaluator against a brute-force pure-Python computation of every metric on a hand-made example."""
from __future__ import annotations

import datetime as dt
import math

import pytest

from recsys_spark.delta import read_arrow, table_path, table_version, write_table
from recsys_spark.errors import RecsysError
from recsys_spark.evaluate import (EvaluateConfig, evaluate, metric_row, read_metrics,
                                   write_metrics)

DAY = dt.date(2026, 11, 23)
OLD_DAY = dt.date(2026, 11, 1)
KS = [5, 10, 20]
CATALOGUE = list(range(1, 101))  # movieIds 1..100 have an item_idx; movie 500 is in items but unrated

# userId -> test movieId, and each user's list (rank 1 first) for model "a" on DAY.
TEST_ITEM = {1: 10, 2: 20, 3: 30, 4: 40, 5: 50, 6: 60}
LISTS_A = {
    1: [10, 11, 12, 13, 14, 15],                      # hit at rank 1
    2: [21, 22, 20, 23],                              # hit at rank 3
    3: [31, 32, 33, 34, 35, 36, 30, 37],              # hit at rank 7: counts at K=10, 20 only
    4: list(range(70, 95)),                           # 25 items, no hit
    # user 5: no recommendations at all
    6: list(range(1, 10)) + [11, 12, 13, 14, 15, 60, 16],  # hit at rank 15
}
LISTS_B = {1: [11, 10], 2: [20], 6: [60]}


def brute_force(lists: dict[int, list[int]], k: int) -> dict[str, float]:
    """Textbook definitions, for any number of relevant items, averaged over all test users."""
    totals = {m: 0.0 for m in ("hr", "ndcg", "mrr", "recall", "precision", "map")}
    for user, test_item in TEST_ITEM.items():
        relevant = {test_item}
        top = lists.get(user, [])[:k]
        rel = [1 if item in relevant else 0 for item in top]
        hits = sum(rel)
        totals["hr"] += 1.0 if hits else 0.0
        totals["recall"] += hits / len(relevant)
        totals["precision"] += hits / k
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        totals["ndcg"] += dcg / idcg
        totals["mrr"] += next((1 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
        precision_at = [sum(rel[:i + 1]) / (i + 1) for i in range(len(rel))]
        totals["map"] += sum(p * r for p, r in zip(precision_at, rel)) / min(len(relevant), k)
    out = {m: v / len(TEST_ITEM) for m, v in totals.items()}
    recommended = {item for items in lists.values() for item in items[:k]}
    out["coverage"] = len(recommended) / len(CATALOGUE)
    return out


def _rec_rows(model, run_date, run_id, lists):
    return [(model, run_id, run_date, user, rank, item, 1.0 / rank)
            for user, items in lists.items() for rank, item in enumerate(items, start=1)]


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    wh = tmp_path_factory.mktemp("eval_wh")
    interactions = []
    for user, test_item in TEST_ITEM.items():
        interactions += [(user, 99, 4.0, 100, user, 99, 1, "train", "train"),
                         (user, test_item, 3.5, 200, user, test_item, 2, "test", "test")]
    write_table(spark.createDataFrame(interactions, "userId long, movieId long, rating double, timestamp long, "
                                                    "user_idx int, item_idx int, seq int, split string, "
                                                    "temporal_split string"), table_path(wh, "interactions"))
    items = [(m, m) for m in CATALOGUE] + [(500, None)]
    write_table(spark.createDataFrame(items, "movieId long, item_idx int"), table_path(wh, "items"))
    recs = (_rec_rows("a", DAY, "run-a", LISTS_A) + _rec_rows("b", DAY, "run-b", LISTS_B)
            + _rec_rows("a", OLD_DAY, "run-a-old", {u: [1, 2, 3] for u in TEST_ITEM}))
    write_table(spark.createDataFrame(recs, "model string, run_id string, run_date date, userId long, rank int, "
                                            "movieId long, score double"),
                table_path(wh, "recommendations"), partition_by=["model", "run_date"])
    return wh


def test_every_metric_matches_brute_force(spark, warehouse):
    result = evaluate(spark, warehouse, config=EvaluateConfig(ks=KS))
    assert {(r["model"], r["run_date"], r["run_id"]) for r in result.rows} == {("a", DAY, "run-a"),
                                                                              ("b", DAY, "run-b")}
    for model, lists in (("a", LISTS_A), ("b", LISTS_B)):
        for k in KS:
            expected = brute_force(lists, k)
            for metric, value in expected.items():
                assert result.value(model, metric, k) == pytest.approx(value, abs=1e-12), (model, metric, k)
    # Spot checks by hand: model a at K=10 hits users 1 (r=1), 2 (r=3), 3 (r=7) of 6 test users.
    assert result.value("a", "hr", 10) == pytest.approx(3 / 6)
    assert result.value("a", "ndcg", 10) == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 6)
    assert result.value("a", "precision", 5) == pytest.approx(2 / 5 / 6)
    assert result.value("a", "hr", 20) == pytest.approx(4 / 6)


def test_run_date_and_model_selection(spark, warehouse):
    old = evaluate(spark, warehouse, model="a", run_date=OLD_DAY, config=EvaluateConfig(ks=[5]))
    assert {r["run_id"] for r in old.rows} == {"run-a-old"}
    assert old.value("a", "hr", 5) == 0.0
    assert old.value("a", "coverage", 5) == pytest.approx(3 / 100)
    with pytest.raises(RecsysError, match="no recommendations for model 'zzz'"):
        evaluate(spark, warehouse, model="zzz")


def test_metrics_partition_replaced_not_duplicated_and_rating_rows_kept(spark, tmp_path):
    rating = [metric_row("als", "fit-1", DAY, "test", "rmse", None, 0.9),
              metric_row("als", "fit-1", DAY, "test", "mae", None, 0.7)]
    path = write_metrics(rating, tmp_path)
    ranking = [metric_row("als", "recs-1", DAY, "test", "hr", 10, 0.1)]
    write_metrics(ranking, tmp_path)
    write_metrics([metric_row("als", "recs-2", DAY, "test", "hr", 10, 0.2)], tmp_path)  # a re-run
    write_metrics([metric_row("pop", "p", DAY, "test", "hr", 10, 0.05)], tmp_path)
    rows = read_metrics(tmp_path).to_pylist()
    als = sorted((r["metric"], r["run_id"], r["value"]) for r in rows if r["model"] == "als")
    assert als == [("hr", "recs-2", 0.2), ("mae", "fit-1", 0.7), ("rmse", "fit-1", 0.9)]
    assert len(rows) == 4
    # Every write was one commit; the first version is still readable.
    assert table_version(path) == 3
    assert read_arrow(path, version=0).num_rows == 2


def test_comparison_table_renders(spark, warehouse):
    from rich.console import Console

    from jobs.common import comparison_view
    from recsys_spark.report import comparison_table, load_metrics

    evaluate(spark, warehouse, run_date=DAY, config=EvaluateConfig(ks=[10]))
    table = comparison_table(load_metrics(warehouse, DAY), k=10)
    assert list(table.columns) == ["hr@10", "ndcg@10", "mrr@10", "recall@10", "map@10", "coverage@10"]
    assert table.loc["a", "hr@10"] == pytest.approx(3 / 6)
    console = Console(width=200, record=True)
    console.print(comparison_view(table, "comparison"))
    assert "0.5000" in console.export_text()  # model a: hr@10 = 3/6


def test_bad_ks_rejected():
    with pytest.raises(RecsysError, match="positive integers"):
        EvaluateConfig(ks=[0, 10])


def test_job_prints_table_and_rejects_unknown_model(spark, warehouse, capsys):
    from jobs.evaluate import main

    assert main(["--warehouse", str(warehouse), "--model", "b", "--run-date", DAY.isoformat(),
                 "evaluate.ks=[10]"]) == 0
    out = capsys.readouterr().out
    assert "Top-N evaluation" in out and "metric rows" in out
    assert main(["--warehouse", str(warehouse), "--model", "nope"]) == 2
    assert "no recommendations for model 'nope'" in capsys.readouterr().err
    assert main(["--warehouse", str(warehouse), "--run-date", "23/11/2026"]) == 2


def test_intervals_and_paired_differences_on_the_evaluated_users(spark, warehouse):
    config = EvaluateConfig(ks=[10], bootstrap_resamples=400, reference_model="b", seed=3)
    result = evaluate(spark, warehouse, config=config)
    rows = {(r["model"], r["metric"], r["k"]): r for r in result.rows}
    hr = rows["a", "hr", 10]
    assert hr["ci_low"] <= hr["value"] <= hr["ci_high"] and hr["ci_low"] < hr["ci_high"]
    assert rows["a", "recall", 10]["ci_low"] == hr["ci_low"]
    assert rows["a", "precision", 10]["ci_high"] == pytest.approx(hr["ci_high"] / 10)
    assert rows["a", "map", 10]["ci_low"] == rows["a", "mrr", 10]["ci_low"]
    assert rows["a", "coverage", 10]["ci_low"] is None
    # a and b both hit 3 of the 6 users at K=10 (a: users 1, 2, 3; b: 1, 2, 6): the paired HR difference is 0,
    # but its interval is not, because they hit different users
    diff = rows["a", "hr_minus_b", 10]
    assert diff["value"] == pytest.approx(0.0) and diff["ci_low"] < 0 < diff["ci_high"]
    ndcg_diff = rows["a", "ndcg_minus_b", 10]
    assert ndcg_diff["value"] == pytest.approx(rows["a", "ndcg", 10]["value"] - rows["b", "ndcg", 10]["value"])
    assert ("b", "hr_minus_b", 10) not in rows
    again = evaluate(spark, warehouse, config=config)  # seeded: the same intervals
    assert {(r["model"], r["metric"], r["ci_low"]) for r in again.rows} == {
        (r["model"], r["metric"], r["ci_low"]) for r in result.rows}
    stored = [r for r in read_metrics(warehouse).to_pylist() if r["metric"] == "hr_minus_b"]
    assert stored and stored[0]["ci_high"] == diff["ci_high"]


def test_reference_model_outside_the_selection_still_gives_differences(spark, warehouse):
    config = EvaluateConfig(ks=[10], bootstrap_resamples=200, reference_model="b")
    result = evaluate(spark, warehouse, model="a", run_date=DAY, config=config)
    assert {r["model"] for r in result.rows} == {"a"}
    assert any(r["metric"] == "ndcg_minus_b" for r in result.rows)


def test_a_metrics_table_from_before_the_intervals_is_migrated(tmp_path):
    import pyarrow as pa

    from recsys_spark.delta import write_arrow

    old = pa.table({"model": ["als"], "run_id": ["r"], "run_date": pa.array([DAY], pa.date32()),
                    "split": ["test"], "metric": ["rmse"], "k": pa.array([None], pa.int32()), "value": [0.9]})
    write_arrow(old, table_path(tmp_path, "metrics"))
    write_metrics([metric_row("pop", "p", DAY, "test", "hr", 10, 0.05, 0.04, 0.06)], tmp_path)
    rows = {r["model"]: r for r in read_metrics(tmp_path).to_pylist()}
    assert rows["als"]["value"] == 0.9 and rows["als"]["ci_low"] is None
    assert rows["pop"]["ci_low"] == 0.04


def test_intervals_table_marks_differences_inside_the_noise(spark, warehouse):
    from recsys_spark.report import intervals_table, load_metrics, to_markdown

    evaluate(spark, warehouse, run_date=DAY, config=EvaluateConfig(ks=[10], bootstrap_resamples=200,
                                                                   reference_model="b"))
    table = intervals_table(load_metrics(warehouse, DAY), k=10)
    assert list(table.columns) == ["hr@10 (95% CI)", "ndcg@10 (95% CI)", "ndcg@10 - b"]
    assert table.loc["a", "hr@10 (95% CI)"].startswith("0.5000 [")
    assert table.loc["a", "ndcg@10 - b"].endswith("(noise)") and table.loc["b", "ndcg@10 - b"] == ""
    assert "(noise)" in to_markdown(table)


def test_a_non_finite_score_is_never_a_hit(spark, warehouse, tmp_path):
    """Model c finds every test item at rank 1, but user 1's row scores NaN and user 2's +inf: only users 3-6 are
    hits (and the two rows are not coverage). Model d's every score is NaN: all zeros, still reported."""
    import shutil

    for name in ("interactions", "items"):
        shutil.copytree(warehouse / name, tmp_path / name)
    scores = {1: float("nan"), 2: float("inf")}
    recs = [("c", "run-c", DAY, user, 1, item, scores.get(user, 0.5)) for user, item in TEST_ITEM.items()]
    recs += [("d", "run-d", DAY, user, 1, item, float("nan")) for user, item in TEST_ITEM.items()]
    write_table(spark.createDataFrame(recs, "model string, run_id string, run_date date, userId long, rank int, "
                                            "movieId long, score double"),
                table_path(tmp_path, "recommendations"), partition_by=["model", "run_date"])
    result = evaluate(spark, tmp_path, config=EvaluateConfig(ks=[10], bootstrap_resamples=200, reference_model="d"))
    assert result.value("c", "hr", 10) == pytest.approx(4 / 6)
    assert result.value("c", "ndcg", 10) == pytest.approx(4 / 6)
    assert result.value("c", "coverage", 10) == pytest.approx(4 / 100)
    assert result.value("d", "hr", 10) == 0.0 and result.value("d", "ndcg", 10) == 0.0
    rows = {(r["model"], r["metric"], r["k"]): r for r in result.rows}
    # the per-user ranks behind the intervals see the same misses
    assert rows["c", "hr_minus_d", 10]["value"] == pytest.approx(4 / 6)
    assert rows["c", "ndcg_minus_d", 10]["value"] == pytest.approx(4 / 6)


def _write_list(spark, warehouse, model, run_date, run_id, lists):
    write_table(spark.createDataFrame(_rec_rows(model, run_date, run_id, lists),
                                      "model string, run_id string, run_date date, userId long, rank int, "
                                      "movieId long, score double"),
                table_path(warehouse, "recommendations"), partition_by=["model", "run_date"],
                replace={"model": model, "run_date": run_date} if (warehouse / "recommendations").exists() else None)


def test_latest_is_the_list_written_last_not_the_largest_run_id(spark, warehouse, tmp_path):
    """`a` is written for DAY (run id ff..), then re-made later for OLD_DAY (run id 00..): the latest by time is the
    second, though its run id (a uuid4) and its run date are the smaller ones."""
    import shutil

    for name in ("interactions", "items"):
        shutil.copytree(warehouse / name, tmp_path / name)
    _write_list(spark, tmp_path, "a", DAY, "f" * 32, {u: [1, 2, 3] for u in TEST_ITEM})
    _write_list(spark, tmp_path, "a", OLD_DAY, "0" * 32, LISTS_A)
    result = evaluate(spark, tmp_path, config=EvaluateConfig(ks=[5], bootstrap_resamples=0))
    assert {(r["run_id"], r["run_date"]) for r in result.rows} == {("0" * 32, OLD_DAY)}
    assert result.value("a", "hr", 5) == pytest.approx(brute_force(LISTS_A, 5)["hr"])
    _write_list(spark, tmp_path, "a", DAY, "f" * 32, {u: [1, 2, 3] for u in TEST_ITEM})  # re-made again: DAY wins
    again = evaluate(spark, tmp_path, config=EvaluateConfig(ks=[5], bootstrap_resamples=0))
    assert {r["run_id"] for r in again.rows} == {"f" * 32}


def test_every_metrics_row_records_its_tie_policy_input_and_interactions_version(spark, tmp_path):
    """On a real ETL (a non-default tie policy and seed, so a default cannot pass for it), every row the evaluator,
    ALS and the evaluate job write names etl_report.json's tie policy and input and the interactions version it
    scored; a list made before a later interactions commit is refused, one re-made after it records that commit."""
    import json

    import mlflow
    from pyspark.sql import functions as F

    from jobs.evaluate import main
    from recsys_data.generate import generate
    from recsys_spark.als import AlsConfig, run_als
    from recsys_spark.delta import read_table
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.evaluate import PROVENANCE

    generate(tmp_path / "data", n_users=30, n_items=80, n_ratings=900, seed=3)
    wh = tmp_path / "warehouse"
    run_etl(spark, tmp_path / "data", wh, EtlConfig(tie_break="movieId", seed=7))
    report = json.loads((wh / "etl_report.json").read_text())
    path = table_path(wh, "interactions")
    test = read_table(spark, path).where(F.col("split") == "test").select("userId", "movieId").collect()
    recs = [("oracle", "run-o", DAY, r.userId, 1, r.movieId, 1.0) for r in test]
    write_table(spark.createDataFrame(recs, "model string, run_id string, run_date date, userId long, rank int, "
                                            "movieId long, score double"),
                table_path(wh, "recommendations"), partition_by=["model", "run_date"])

    def expected(version):
        return {"tie_break": report["tie_break"], "tie_seed": report["seed"], "input_path": report["data"],
                "input_format": report.get("format", "movielens"), "interactions_version": version}

    assert (report["tie_break"], report["seed"]) == ("movieId", 7)
    first = table_version(path)
    result = evaluate(spark, wh, config=EvaluateConfig(ks=[10], bootstrap_resamples=0))
    assert result.value("oracle", "hr", 10) == 1.0
    assert result.provenance == expected(first)
    stored = read_metrics(wh).to_pylist()
    assert stored and all({key: row[key] for key in PROVENANCE} == expected(first) for row in stored)

    # another commit of interactions (a re-ETL): the oracle list, made from the version before, is refused by one
    # line naming it and both versions, nothing written; re-made, it is scored on and records the new version
    write_table(read_table(spark, path), path)
    assert table_version(path) == first + 1
    metrics_version = table_version(table_path(wh, "metrics"))
    with pytest.raises(RecsysError, match=rf"current {first + 1}: oracle \({DAY}\) at version {first};"):
        evaluate(spark, wh, config=EvaluateConfig(ks=[10], bootstrap_resamples=0))
    assert table_version(table_path(wh, "metrics")) == metrics_version
    write_table(spark.createDataFrame(recs, "model string, run_id string, run_date date, userId long, rank int, "
                                            "movieId long, score double"),
                table_path(wh, "recommendations"), partition_by=["model", "run_date"])
    als = run_als(spark, wh, AlsConfig(rank=2, max_iter=1), DAY, "fit-1")
    assert als.metric_rows and all({key: r[key] for key in PROVENANCE} == expected(first + 1)
                                   for r in als.metric_rows)
    assert main(["--warehouse", str(wh), "evaluate.ks=[10]", "evaluate.bootstrap_resamples=0",
                 "mlflow.experiment=test-evaluate-provenance"]) == 0
    rows = read_metrics(wh).to_pylist()
    assert {(r["model"], r["metric"]) for r in rows} >= {("oracle", "hr"), ("als", "rmse")}
    assert all({key: r[key] for key in PROVENANCE} == expected(first + 1) for r in rows)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{wh / '_mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test-evaluate-provenance")
    [run] = client.search_runs([experiment.experiment_id])
    assert {key: run.data.params[key] for key in PROVENANCE} == {k: str(v) for k, v in expected(first + 1).items()}


def test_a_metrics_table_from_before_the_provenance_columns_is_still_appended_to(tmp_path):
    import pyarrow as pa

    from recsys_spark.delta import write_arrow
    from recsys_spark.evaluate import PROVENANCE

    old = pa.table({"model": ["als"], "run_id": ["r"], "run_date": pa.array([DAY], pa.date32()),
                    "split": ["test"], "metric": ["rmse"], "k": pa.array([None], pa.int32()), "value": [0.9],
                    "ci_low": pa.array([None], pa.float64()), "ci_high": pa.array([None], pa.float64())})
    write_arrow(old, table_path(tmp_path, "metrics"))
    assert read_metrics(tmp_path).to_pylist()[0]["tie_break"] is None  # read before any migration
    given = {"tie_break": "hash", "tie_seed": 42, "input_path": "/data", "input_format": "events",
             "interactions_version": 3}
    write_metrics([metric_row("pop", "p", DAY, "test", "hr", 10, 0.05, provenance=given)], tmp_path)
    rows = {r["model"]: r for r in read_metrics(tmp_path).to_pylist()}
    assert rows["als"]["value"] == 0.9 and all(rows["als"][key] is None for key in PROVENANCE)
    assert {key: rows["pop"][key] for key in PROVENANCE} == given
