"""The drift step on small generated data, two loads into one warehouse through the real ETL: the generated files,
then the same files plus a planted burst (60 new users giving half a star to the same ten rarely rated movies: item
popularity, ratings and the popularity list shift, and the step warns). A `runs` table naming a published run that
read the same load and published the same list: nothing moved, no warning. `recsys drift` prints the warnings."""
from __future__ import annotations

import collections
import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

DAYS = [dt.date(2030, 3, 1), dt.date(2030, 3, 2)]
BURST_USERS, BURST_MOVIES = 60, 10


def plant_burst(src: Path, dst: Path) -> None:
    """A copy of the data files with BURST_USERS new users rating the BURST_MOVIES least rated movies 0.5 after
    everything else."""
    shutil.copytree(src, dst)
    (dst / "SHA256SUMS").unlink()
    ratings = (dst / "ratings.csv").read_text().splitlines()
    newest = max(int(line.split(",")[3]) for line in ratings[1:])
    counts = collections.Counter(line.split(",")[1] for line in ratings[1:])
    movies = [line.split(",")[0] for line in (src / "movies.csv").read_text().splitlines()[1:]]
    rare = sorted(movies, key=lambda m: (counts[m], int(m)))[:BURST_MOVIES]
    burst = [f"{9000 + u},{m},0.5,{newest + 60 * (u * BURST_MOVIES + i + 1)}" for u in range(BURST_USERS)
             for i, m in enumerate(rare)]
    (dst / "ratings.csv").write_text("\r\n".join(ratings + burst) + "\r\n")


@pytest.fixture(scope="module")
def loads(spark, tmp_path_factory):
    """{run_date: drift rows} of the two loads, and the warehouse."""
    from recsys_data.generate import generate
    from recsys_spark.baselines import topn
    from recsys_spark.drift import DriftConfig, measure, write_drift
    from recsys_spark.etl import EtlConfig, run_etl

    root = tmp_path_factory.mktemp("drift")
    generate(root / "data", n_users=60, n_items=200, n_ratings=3000, seed=5)
    plant_burst(root / "data", root / "burst")
    warehouse = root / "warehouse"
    measured = {}
    for day, data in zip(DAYS, [root / "data", root / "burst"]):
        run_etl(spark, data, warehouse, EtlConfig())
        topn(spark, warehouse, "popularity", 10, day, f"popularity-{day}")
        measured[day] = measure(spark, warehouse, day, DriftConfig(bootstrap_resamples=100))
        write_drift(measured[day], warehouse, day)
    return {"warehouse": warehouse, "rows": measured}


def runs_table(warehouse: Path, run_id: str, run_date: dt.date, interactions: int, recommendations: int,
               list_date: dt.date) -> None:
    """A `runs` table (the publish step's; its agreed schema) with one published run of popularity."""
    from recsys_spark.delta import write_arrow
    from recsys_spark.schemas import RUNS as schema

    runs = [{"run_id": run_id, "run_date": run_date, "published_at": dt.datetime(2030, 3, 1, 6, tzinfo=dt.timezone.utc),
             "tables": [("interactions", interactions), ("recommendations", recommendations)],
             "models": [{"model": "popularity", "published": True, "reason": None, "run_date": list_date,
                         "recommendations_version": recommendations, "ndcg_at_10": None}]}]
    write_arrow(pa.Table.from_pylist(runs, schema=schema), str(warehouse / "runs"))


def by_metric(rows, model=None):
    return {r["metric"]: r for r in rows if r["model"] == model}


def test_a_first_load_is_compared_with_its_own_past(loads):
    rows = loads["rows"][DAYS[0]]
    assert by_metric(rows)["interactions"]["compared_to"] == "interactions up to 30 days before the newest"
    assert by_metric(rows)["interactions"]["value"] == 3000
    assert set(by_metric(rows, "popularity")) == {"coverage"}  # no list before


def test_a_planted_burst_warns(loads):
    from recsys_spark.drift import load_drift, warnings

    rows = loads["rows"][DAYS[1]]
    inputs = by_metric(rows)
    assert inputs["interactions"]["compared_to"] == "interactions v0 (the previous load)"
    assert (inputs["interactions"]["value"], inputs["interactions"]["previous"]) == (3600, 3000)
    assert inputs["new_user_share"]["value"] == pytest.approx(0.5) and inputs["new_user_share"]["warning"] is None
    assert inputs["psi_item_popularity"]["value"] > 0.3  # 0.44 by hand from the counts
    assert inputs["psi_item_popularity"]["warning"].startswith("psi_item_popularity ")
    assert inputs["psi_rating"]["value"] > 0.2 and inputs["psi_rating"]["warning"]
    assert inputs["new_item_share"]["warning"] is None
    outputs = by_metric(rows, "popularity")
    assert outputs["list_overlap"]["compared_to"] == f"run_date {DAYS[0]}"
    assert outputs["list_overlap"]["value"] < 1.0  # the burst movies entered the popularity lists
    assert outputs["ndcg_change"]["ci_low"] <= outputs["ndcg_change"]["value"] <= outputs["ndcg_change"]["ci_high"]
    stored = load_drift(loads["warehouse"], DAYS[1])
    assert sorted((r["metric"], r["model"] or "", r["value"]) for r in stored) == \
        sorted((r["metric"], r["model"] or "", r["value"]) for r in rows)
    lines = warnings(stored)
    assert lines and all(line.startswith(f"WARNING drift {DAYS[1]}: ") for line in lines)
    assert any("psi_item_popularity" in line for line in lines)
    assert load_drift(loads["warehouse"]) == stored  # the newest run date by default


def test_against_a_published_run_of_the_same_load_and_list_nothing_moved(spark, loads, tmp_path):
    """The `runs` table names what tonight is compared with: here the interactions version and the list it reads
    itself, so every measure says nothing moved and nothing warns — and it is that version, not the previous one."""
    from recsys_spark.delta import table_version
    from recsys_spark.drift import DriftConfig, measure

    warehouse = tmp_path / "warehouse"
    shutil.copytree(loads["warehouse"], warehouse)
    runs_table(warehouse, "same", DAYS[0], 1, table_version(str(warehouse / "recommendations")), DAYS[1])
    rows = measure(spark, warehouse, DAYS[1], DriftConfig(bootstrap_resamples=100))
    inputs = by_metric(rows)
    assert inputs["interactions"]["compared_to"] == f"interactions v1 (run same, {DAYS[0]})"
    for metric in ("psi_item_popularity", "psi_rating", "new_user_share", "new_item_share"):
        assert inputs[metric]["value"] == pytest.approx(0.0, abs=1e-12), metric
    assert inputs["interactions_per_user"]["value"] == inputs["interactions_per_user"]["previous"] == 30
    outputs = by_metric(rows, "popularity")
    assert outputs["list_overlap"]["value"] == 1.0
    assert outputs["coverage"]["value"] == outputs["coverage"]["previous"]
    assert outputs["ndcg_change"]["value"] == outputs["ndcg_change"]["ci_low"] == outputs["ndcg_change"]["ci_high"] \
        == 0.0
    assert [r["warning"] for r in rows if r["warning"]] == []

    runs_table(warehouse, "first", DAYS[0], 0, 0, DAYS[0])  # the first night's load and list: the burst again
    rows = measure(spark, warehouse, DAYS[1], DriftConfig(bootstrap_resamples=0))
    assert by_metric(rows)["interactions"]["compared_to"] == f"interactions v0 (run first, {DAYS[0]})"
    assert by_metric(rows)["psi_item_popularity"]["warning"]
    outputs = by_metric(rows, "popularity")
    assert outputs["list_overlap"]["compared_to"] == f"run first ({DAYS[0]}), recommendations v0"
    assert "ndcg_change" not in outputs  # bootstrap_resamples=0


def test_recsys_drift_prints_the_warnings_and_bad_config_is_one_line(loads, tmp_path, capsys):
    from jobs.drift import main

    warehouse = tmp_path / "warehouse"
    shutil.copytree(loads["warehouse"], warehouse)
    base = ["--warehouse", str(warehouse), "--run-date", str(DAYS[1]), "mlflow.enabled=false"]
    assert main([*base, "drift.bootstrap_resamples=0"]) == 0
    out = capsys.readouterr().out
    assert f"WARNING drift {DAYS[1]}: psi_item_popularity" in out and "drift rows -> " in out
    assert main([*base, "drift.max_psi=0"]) == 2
    assert capsys.readouterr().err.strip() == "error: drift.max_psi must be a number > 0, got 0"
