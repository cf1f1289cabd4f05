"""`recsys pipeline --warehouse file:///…`: a small nightly (ETL, the popularity baseline, evaluation) completes on a
warehouse given as a file:// URI, writes its tables there, and leaves no stray `file:` folder in the working directory
and no `_staging-*` folder in the warehouse (issue 20: `Path("file:///x")` is the relative folder `file:/x`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_spark.delta import read_arrow, table_exists

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_a_pipeline_on_a_file_uri_warehouse_completes(tmp_path):
    from recsys_data.generate import generate

    generate(tmp_path / "data", n_users=40, n_items=120, n_ratings=1500, seed=7)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    warehouse = tmp_path / "wh"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(tmp_path / "data"),
         "--warehouse", f"file://{warehouse}", "--reports", str(tmp_path / "reports"), "--run-date", "2026-11-23",
         "pipeline.spark_models=[popularity]", "pipeline.torch_models=[]", "pipeline.k=10"],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing made relative to the working directory
    for table in ("interactions", "items", "users", "recommendations", "metrics"):
        assert table_exists(f"file://{warehouse}/{table}"), table
    lists = read_arrow(f"file://{warehouse}/recommendations").to_pydict()
    assert set(lists["model"]) == {"popularity"} and max(lists["rank"]) == 10
    assert not [p for p in warehouse.rglob("_staging-*")], "staging leftovers in the warehouse"
    assert (warehouse / "_pipeline" / "state.json").is_file()  # the run's state beside the tables
