"""The nightly pipeline end to end on small generated data, as `recsys pipeline` runs it."""
from __future__ import annotations

import json
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
          "als_user_factors", "als_item_factors"]
# LightGCN is in the nightly's torch models but not here: its two steps cost what NCF's do (~60 s a run on 2 cores,
# nearly all process start-up), and this file runs the pipeline twice; the same TORCH-family steps are exercised by
# the others, and LightGCN's training and lists by tests/test_train.py.
FAST = ["train.max_steps=6", "train.eval_every=3", "train.patience=1", "pipeline.k=20", "sequences.max_len=50",
        "als.max_iter=5", "pipeline.torch_models=[ncf,sasrec,ss4rec]",
        "als.rank=16", "als.temporal=false", "ss4rec.n_layers=1", "sasrec.n_layers=1", "train.warmup=0.2"]

pytestmark = pytest.mark.slow


def run_pipeline(data: Path, warehouse: Path, reports: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(data), "--warehouse", str(warehouse),
           "--reports", str(reports), "--run-date", "2026-11-23", *extra, *FAST]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
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


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from recsys_data.generate import generate

    root = tmp_path_factory.mktemp("pipeline")
    generate(root / "data", n_users=120, n_items=400, n_ratings=6000, seed=3)
    out = run_pipeline(root / "data", root / "wh", root / "reports")
    return root, out


def test_every_table_model_and_user(first_run):
    root, out = first_run
    wh = root / "wh"
    assert step_statuses(out) == {name: "ran" for name in planned_steps(wh)} and len(planned_steps(wh)) == 16
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
    assert "report:" in out and (root / "reports" / "2026-11-23" / "report.md").exists()
    assert "published run 2026-11-23@" in out  # the gate's decisions: every model published on the first night


def test_mlflow_has_parent_and_step_runs(first_run):
    import mlflow

    root, _ = first_run
    mlflow.set_tracking_uri(f"sqlite:///{root / 'wh' / '_mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.recsys.step"] == "pipeline"]
    assert len(parents) >= 1
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[-1]["run_id"]]
    steps = set(children["tags.recsys.step"])
    assert {"etl", "als", "baselines", "export-sequences", "train-sasrec", "topn-ss4rec", "evaluate"} <= steps
    registered = mlflow.MlflowClient().search_registered_models()
    assert [m.name for m in registered] and all(m.name.startswith("recsys-") for m in registered)


def test_same_date_again_skips_and_forced_rerun_keeps_counts(first_run):
    root, _ = first_run
    before = counts(root / "wh")
    out = run_pipeline(root / "data", root / "wh", root / "reports")
    steps = planned_steps(root / "wh")
    assert step_statuses(out) == {name: "skipped" for name in steps}
    assert counts(root / "wh") == before
    out = run_pipeline(root / "data", root / "wh", root / "reports", "--force")
    assert step_statuses(out) == {name: "ran" for name in steps}
    assert counts(root / "wh") == before
