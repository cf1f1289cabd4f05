"""The nightly pipeline end to end on small generated data, as `recsys pipeline` runs it."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_spark.delta import read_arrow, table_exists

REPO = Path(__file__).resolve().parent.parent
MODELS = ["als", "als_implicit", "popularity", "genre", "markov", "ar2", "hybrid", "itemcf", "ease", "ncf", "sasrec",
          "ss4rec", "ensemble"]
TABLES = ["interactions", "items", "users", "tags", "rejects", "etl_report", "recommendations",
          "recommendations_validation", "metrics", "transitions_ar1", "transitions_ar2", "item_neighbors",
          "als_user_factors", "als_item_factors", "drift"]

pytestmark = pytest.mark.slow


def run_pipeline(nightly: dict, warehouse: Path, *extra: str) -> str:
    """`recsys pipeline` as a user runs it: its own process."""
    cmd = [sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(nightly["data"]), "--warehouse",
           str(warehouse), "--reports", str(warehouse.parent / "reports"), "--run-date", nightly["run_date"], *extra,
           *nightly["overrides"]]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def counts(warehouse: Path) -> dict[str, int]:
    return {name: read_arrow(warehouse / name).num_rows for name in TABLES}


def step_statuses(out: str) -> dict[str, str]:
    """step -> ran | skipped | failed, from the pipeline's line per step (`   skipped etl        0.0s`)."""
    rows = [line.split() for line in out.splitlines()]
    return {r[1]: r[0] for r in rows if len(r) == 3 and r[0] in {"ran", "skipped", "failed"} and r[2].endswith("s")}


def planned_steps(warehouse: Path) -> list[str]:
    return list(json.loads((warehouse / "_pipeline" / "state.json").read_text()))


def test_a_file_uri_warehouse_leaves_nothing_outside_it(finished_nightly):
    assert list(finished_nightly["cwd"].iterdir()) == []  # nothing made relative to the working directory
    assert not list(finished_nightly["warehouse"].rglob("_staging-*")), "staging leftovers in the warehouse"
    assert (finished_nightly["warehouse"] / "_pipeline" / "state.json").is_file()


def test_every_table_model_and_user(finished_nightly):
    wh, out, reports = finished_nightly["warehouse"], finished_nightly["stdout"], finished_nightly["reports"]
    assert step_statuses(out) == {name: "ran" for name in planned_steps(wh)} and len(planned_steps(wh)) == 18  # with drift, retention and publish
    for name in TABLES:
        assert table_exists(wh / name), name
    users = read_arrow(wh / "users").num_rows
    recs = read_arrow(wh / "recommendations").to_pandas()
    per_model = recs.groupby("model")["userId"].nunique().to_dict()
    assert per_model == {m: users for m in MODELS}
    assert (recs.groupby(["model", "userId"]).size() == 20).all()
    validation_lists = read_arrow(wh / "recommendations_validation").to_pandas()
    assert validation_lists.groupby("model")["userId"].nunique().to_dict() == per_model
    metrics = read_arrow(wh / "metrics").to_pandas()
    assert set(metrics["model"]) == set(MODELS)
    assert "report:" in out and (reports / "2026-11-23" / "report.md").exists()
    # the first load has no earlier version: the drift step compares its last 30 days with the rest, every model's
    # coverage is measured, and the report has its section
    drift = read_arrow(wh / "drift").to_pandas()
    assert set(drift[drift.kind == "output"]["model"]) == set(MODELS)
    assert "## Drift" in (reports / "2026-11-23" / "report.md").read_text()
    assert "published run 2026-11-23@" in out  # the gate's decisions: every model published on the first night


def test_mlflow_has_parent_and_step_runs(finished_nightly):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{finished_nightly['warehouse'] / '_mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.recsys.step"] == "pipeline"]
    assert len(parents) >= 1
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[-1]["run_id"]]
    steps = set(children["tags.recsys.step"])
    assert {"etl", "als", "baselines", "export-sequences", "train-sasrec", "topn-ss4rec", "evaluate"} <= steps
    registered = mlflow.MlflowClient().search_registered_models()
    assert [m.name for m in registered] and all(m.name.startswith("recsys-") for m in registered)


def test_nightly_benchmark_records_every_step_and_keeps_an_earlier_runs_figures(nightly_copy, tmp_path):
    """benchmarks/nightly.py over the finished warehouse: every step of the plan gets an entry (here all skipped), and
    a step an earlier benchmark run on this warehouse completed keeps that run's figures."""
    wh = nightly_copy["warehouse"]
    out = tmp_path / "nightly.json"
    earlier = {"step": "etl", "status": "ran", "seconds": 12.5, "peak_rss_gb": 1.5, "rows": 6000}
    out.write_text(json.dumps({"warehouse": str(wh.resolve()), "steps": [earlier]}))
    proc = subprocess.run([sys.executable, "benchmarks/nightly.py", "--data", str(nightly_copy["data"]),
                           "--warehouse", str(wh), "--run-date", "2026-11-23", "--out", str(out),
                           "--no-demo-overrides", *nightly_copy["overrides"]], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert sorted(s["step"] for s in figures["steps"]) == sorted(planned_steps(wh))  # state.json: by name
    assert figures["steps"][0] == {**earlier, "earlier_run": True}
    assert {s["status"] for s in figures["steps"][1:]} == {"skipped"}
    assert figures["complete"] and figures["ratings"] == 6000 and figures["users"] and figures["items"]
    assert figures["total_seconds"] >= 12.5


def test_same_date_again_skips_and_forced_rerun_keeps_counts(nightly_copy, spark):
    """On a copy of the shared nightly: the same date again through the CLI skips every step; the forced run rewrites
    every table. It runs the same plan in this process (each Spark step on the tests' session), which checks what
    the forced run is for, that every step replaces what it wrote, without starting a JVM per step again."""
    from jobs.config import load_config, run_layer
    from jobs.executor import RunSpec, run_pipeline as run_plan
    from jobs.steps import run_in_process

    wh, fast = nightly_copy["warehouse"], nightly_copy["overrides"]
    before = counts(wh)
    out = run_pipeline(nightly_copy, wh)
    steps = planned_steps(wh)
    assert step_statuses(out) == {name: "skipped" for name in steps}
    assert counts(wh) == before

    spec = RunSpec(nightly_copy["data"], wh, dt.date(2026, 11, 23), run_layer(None, fast),
                   lambda sections: load_config(sections, overrides=fast), overrides=fast)
    results = run_plan(spec, lambda step, log, env: run_in_process(step, env), force=True)
    assert {r.name: r.status for r in results} == {name: "ran" for name in steps}
    assert counts(wh) == before
