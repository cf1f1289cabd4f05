"""notebooks/*.ipynb run top to bottom with nbclient (a real kernel) on the ml-latest-small serving warehouse, each
within a minute; the committed files carry no outputs."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LIMIT_S = 60


@pytest.mark.parametrize("name", ["01_warehouse.ipynb", "02_models.ipynb"])
def test_the_notebook_runs_on_a_warehouse(served_warehouse, monkeypatch, name):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code"), f"{name} is committed with outputs"

    monkeypatch.setenv("RECSYS_WAREHOUSE", str(served_warehouse["warehouse"]))
    started = time.monotonic()
    NotebookClient(notebook, timeout=LIMIT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"{name} took {elapsed:.0f} s"

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 2, f"{name} drew {len(images)} plots"
