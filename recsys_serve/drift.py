"""What `GET /drift` answers: one run date's rows of the `drift` table (written by the nightly's drift step,
recsys_spark/drift.py), read on request through DuckDB; the table is a few dozen rows a night."""
from __future__ import annotations

import datetime as dt

import numpy as np

from recsys_serve.errors import NotFound
from recsys_serve.reader import Warehouse

COLUMNS = ("kind", "model", "metric", "k", "value", "previous", "ci_low", "ci_high", "compared_to", "threshold",
           "warning")


def drift_report(warehouse: Warehouse, run_date: dt.date | None) -> dict:
    if not warehouse.exists("drift"):
        raise NotFound("this warehouse has no drift table yet (the nightly's drift step writes it)")
    dates = sorted((_date(d) for d in warehouse.query("SELECT DISTINCT run_date FROM {d}", d="drift")["run_date"]),
                   reverse=True)
    day = run_date or (dates[0] if dates else None)
    if day not in dates:
        raise NotFound(f"no drift rows for run date {run_date}; there are: {', '.join(map(str, dates[:10]))}")
    cols = warehouse.query(f"SELECT {', '.join(COLUMNS)} FROM {{d}} WHERE run_date = ? "
                           "ORDER BY kind, model NULLS FIRST, metric", [day], d="drift")
    rows = [{name: _plain(cols[name][i]) for name in COLUMNS} for i in range(len(cols["metric"]))]
    return {"run_date": day, "run_dates": dates, "rows": rows,
            "warnings": [r["warning"] for r in rows if r["warning"]]}


def _plain(value):
    """A numpy scalar (or a masked one: null) as JSON takes it; NaN as null."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _date(value) -> dt.date:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
