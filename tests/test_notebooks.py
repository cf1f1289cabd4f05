"""notebooks/*.ipynb run top to bottom with nbclient (a real kernel) on the ml-latest-small serving warehouse, each
within a minute, and the warehouse notebook on a copy of it on S3 (moto's server on loopback); the committed files
carry no outputs."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LIMIT_S = 60


def execute(name: str) -> list:
    """The notebook run in a kernel that inherits this process's environment; its code cells' outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code"), f"{name} is committed with outputs"
    started = time.monotonic()
    NotebookClient(notebook, timeout=LIMIT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"{name} took {elapsed:.0f} s"

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 2, f"{name} drew {len(images)} plots"
    return outputs


@pytest.mark.parametrize("name", ["01_warehouse.ipynb", "02_models.ipynb"])
def test_the_notebook_runs_on_a_warehouse(served_warehouse, monkeypatch, name):
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(served_warehouse["warehouse"]))
    execute(name)


def test_the_warehouse_notebook_reads_a_warehouse_on_s3(served_warehouse, s3_env, monkeypatch):
    from moto_s3 import S3_ENV_CLEARED, upload

    uri = upload(s3_env, served_warehouse["warehouse"], "notebook-warehouse")
    for key in S3_ENV_CLEARED:
        monkeypatch.delenv(key, raising=False)
    for key, value in {**s3_env, "RECSYS_WAREHOUSE": uri}.items():
        monkeypatch.setenv(key, value)
    outputs = execute("01_warehouse.ipynb")
    assert any(out.output_type == "stream" and out.text.strip() == uri for out in outputs)
    # the first frame: every table with its version and rows, read over S3
    tables = next(out["data"]["text/plain"] for out in outputs if "text/plain" in out.get("data", {}))
    assert "version" in tables and "rows" in tables
    for name in ("interactions", "items", "users", "recommendations", "metrics"):
        assert name in tables
