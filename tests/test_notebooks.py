"""notebooks/*.ipynb run top to bottom with nbclient (a real kernel) on the ml-latest-small serving warehouse, each
within a minute, and the warehouse notebook on a copy of it on S3 (moto's server on loopback); the committed files
carry no outputs. What their cells print is checked against the Delta tables read without the notebooks' reader
(recsys_spark.delta.read_arrow, pandas)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LIMIT_S = 60


def execute(name: str) -> list:
    """The notebook run in a kernel that inherits this process's environment; its code cells, with outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in cells), f"{name} is committed with outputs"
    started = time.monotonic()
    NotebookClient(notebook, timeout=LIMIT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"{name} took {elapsed:.0f} s"

    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 2, f"{name} drew {len(images)} plots"
    return cells


def shown(cells: list, code: str) -> str:
    """The text the cell whose source holds `code` printed or displayed (a frame's plain-text form; no plots)."""
    cell = next(cell for cell in cells if code in cell.source)
    return "".join(out.text if out.output_type == "stream" else out.data.get("text/plain", "")
                   for out in cell.outputs if "image/png" not in out.get("data", {}))


def rows(text: str, width: int) -> list[tuple[str, ...]]:
    """The first `width` whitespace-separated fields of each line of a printed frame, its header line dropped."""
    return [tuple(line.split()[:width]) for line in text.splitlines()[1:]]


def table(warehouse: Path, name: str) -> pd.DataFrame:
    from recsys_spark.delta import read_arrow

    return read_arrow(warehouse / name).to_pandas()


def check_tables(cells: list, warehouse: Path) -> None:
    """The first frame: every Delta table of the warehouse with its version and row count."""
    from recsys_spark.delta import read_arrow, table_version

    expected = {(p.name, str(table_version(p)), str(read_arrow(p).num_rows))
                for p in warehouse.iterdir() if (p / "_delta_log").is_dir()}
    printed = {fields[1:] for fields in rows(shown(cells, "wh.version(t)"), 4)}
    assert printed == expected and len(expected) >= 10


def test_the_warehouse_notebook_shows_the_tables_ratings_and_splits(served_warehouse, monkeypatch):
    warehouse = served_warehouse["warehouse"]
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(warehouse))
    cells = execute("01_warehouse.ipynb")
    check_tables(cells, warehouse)
    interactions = table(warehouse, "interactions")
    assert shown(cells, "mean rating").strip() == \
        f"mean rating {interactions.rating.mean():.3f} over {len(interactions):,} ratings"
    splits = (interactions.groupby(["split", "temporal_split"])
              .agg(ratings=("userId", "size"), users=("userId", "nunique")).reset_index())
    assert rows(shown(cells, "GROUP BY split, temporal_split"), 5) == [
        (str(i), r.split, r.temporal_split, str(r.ratings), str(r.users)) for i, r in enumerate(splits.itertuples())]
    report = table(warehouse, "etl_report").groupby(["file", "category"]).rows.sum().unstack(fill_value=0)
    accounts = rows(shown(cells, "input = accepted + rejected"), len(report.columns) + 2)[1:]  # and the index name
    assert accounts == [(file, *map(str, counts), "True") for file, counts in report.iterrows()]


def metric_cells(text: str) -> dict[str, dict[str, str]]:
    """The metrics frame as printed, {model: {metric: cell}}, through the blocks pandas wraps a wide frame into."""
    cell = re.compile(r"-?\d+\.\d{4}(?: \[-?\d+\.\d{4}, -?\d+\.\d{4}\])?|NaN")
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        first, *_ = line.split() or [""]
        if first == "metric":
            columns = [name for name in line.split()[1:] if name != "\\"]
        elif first not in ("", "model"):
            found.setdefault(first, {}).update(
                (column, value) for column, value in zip(columns, cell.findall(line)) if value != "NaN")
    return found


def test_the_models_notebook_shows_the_metrics_lists_and_hits(served_warehouse, monkeypatch):
    warehouse = served_warehouse["warehouse"]
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(warehouse))
    cells = execute("02_models.ipynb")

    metrics = table(warehouse, "metrics")
    latest = metrics.groupby("model").run_date.transform("max")
    at10 = metrics[(metrics.run_date == latest) & (metrics.k == 10) & (metrics.split == "test")]
    shown_metrics = at10.metric.isin(["hr", "ndcg", "mrr", "coverage"]) | at10.metric.str.contains("_minus_")
    expected = {}
    for r in at10[shown_metrics].itertuples():
        interval = "" if pd.isna(r.ci_low) else f" [{r.ci_low:.4f}, {r.ci_high:.4f}]"
        expected.setdefault(r.model, {})[r.metric] = f"{r.value:.4f}{interval}"
    printed = metric_cells(shown(cells, "table.loc[order"))
    assert printed == expected and {"hr", "ndcg", "mrr"} <= set(expected["als"])
    by_ndcg = at10[at10.metric == "ndcg"].sort_values("value", ascending=False).model.tolist()
    assert list(printed) == by_ndcg  # best first

    recs = table(warehouse, "recommendations")
    recs = recs[recs.run_date == recs.groupby("model").run_date.transform("max")]
    top10 = recs[recs["rank"] <= 10]
    users = top10.groupby("model").agg(run_date=("run_date", "first"), users=("userId", "nunique"))
    assert rows(shown(cells, "latest.assign(users="), 4) == [
        (str(i), model, str(r.run_date), str(r.users)) for i, (model, r) in enumerate(users.iterrows())]

    interactions = table(warehouse, "interactions")
    tests = interactions[interactions.split == "test"][["userId", "movieId"]]
    hits = top10.merge(tests, on=["userId", "movieId"]).groupby("model").size()  # a user's test item, found
    distinct = top10.groupby("model").movieId.nunique()
    printed = [(model, found, movies) for model, found, _, movies in rows(shown(cells, '"hits no other model has"'), 4)]
    assert printed == [(m, str(hits.get(m, 0)), str(distinct[m])) for m in distinct.index] and hits.sum() > 0


def test_the_warehouse_notebook_reads_a_warehouse_on_s3(served_warehouse, s3_env, monkeypatch):
    from moto_s3 import S3_ENV_CLEARED, upload

    uri = upload(s3_env, served_warehouse["warehouse"], "notebook-warehouse")
    for key in S3_ENV_CLEARED:
        monkeypatch.delenv(key, raising=False)
    for key, value in {**s3_env, "RECSYS_WAREHOUSE": uri}.items():
        monkeypatch.setenv(key, value)
    cells = execute("01_warehouse.ipynb")
    assert shown(cells, "print(WAREHOUSE)").strip() == uri
    check_tables(cells, served_warehouse["warehouse"])  # read over S3, as the local copy has them
