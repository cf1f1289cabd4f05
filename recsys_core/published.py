"""The last published snapshot: what every reader of the warehouse (the server, the report, the notebooks) reads.

`recsys publish` (the nightly's last step, recsys_spark/publish.py) appends one row to the Delta table `runs` per
published night: the Delta version of every table the run produced, and per model whether its list passed the
regression gate and which list (run date, `recommendations` version) is served for it (docs/SCHEMAS.md, `runs`).
A reader that reads the tables at those versions (Delta time travel) never sees a half-written night. A warehouse
without `runs` (older, or before its first publish) has nothing published: readers read each table's latest version.

Plain data and delta-rs only (imported when needed): no Spark, torch or pyarrow at import time.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from recsys_core import storage

RUNS_TABLE = "runs"


@dataclass(frozen=True)
class PublishedModel:
    model: str
    published: bool          # whether tonight's list passed the gate
    reason: str              # the gate's decision, one line
    run_date: dt.date | None  # run date of the list served for it (None: it never had a published list)
    recommendations_version: int | None  # the `recommendations` version that list is read at
    ndcg_at_10: float | None  # tonight's list's NDCG@10 on the test users (None: no list tonight)

    @property
    def served(self) -> bool:
        return self.run_date is not None and self.recommendations_version is not None


@dataclass(frozen=True)
class PublishedRun:
    run_id: str
    run_date: dt.date
    published_at: dt.datetime
    tables: dict[str, int]   # table -> the Delta version readers read
    models: tuple[PublishedModel, ...]
    version: int             # the `runs` table's version holding this row

    def model(self, name: str) -> PublishedModel | None:
        return next((m for m in self.models if m.model == name), None)


def has_commit(table: str | Path) -> bool:
    """Whether the location is a Delta table with at least one commit (delta-rs opens it). A `_delta_log` without
    one (a first write that was killed, or still running) is not a table yet: reading it would fail."""
    import deltalake
    from deltalake.exceptions import TableNotFoundError

    location = str(table)
    if storage.is_local(location):  # cheap: a listing of the log, no table state loaded
        return deltalake.DeltaTable.is_deltatable(storage.native_path(location))
    try:  # not is_deltatable on a store: it holds the GIL while it waits (an in-process S3 server hangs)
        deltalake.DeltaTable(storage.native_path(location), storage_options=storage.storage_options(location))
    except TableNotFoundError:
        return False
    return True


def runs_version(warehouse: str | Path) -> int | None:
    """The `runs` table's latest version (None: nothing was ever published)."""
    path = storage.join(str(warehouse), RUNS_TABLE)
    if not has_commit(path):
        return None
    import deltalake

    return deltalake.DeltaTable(path, storage_options=storage.storage_options(path)).version()


def latest_published(warehouse: str | Path) -> PublishedRun | None:
    """The newest row of `runs` (the last commit's), or None when the warehouse has none."""
    path = storage.join(str(warehouse), RUNS_TABLE)
    if not has_commit(path):
        return None
    import deltalake

    table = deltalake.DeltaTable(path, storage_options=storage.storage_options(path))
    rows = table.to_pyarrow_table().to_pylist()
    if not rows:
        return None
    row = max(rows, key=lambda r: (r["published_at"], r["run_id"]))
    models = tuple(PublishedModel(m["model"], bool(m["published"]), m["reason"] or "", m["run_date"],
                                  m["recommendations_version"], m["ndcg_at_10"]) for m in row["models"] or [])
    tables = dict(row["tables"] or [])
    return PublishedRun(row["run_id"], row["run_date"], _utc(row["published_at"]), tables, models, table.version())


def published_version(warehouse: str | Path, table: str) -> int | None:
    """The version of `table` the last published run names; None when nothing is published or the run did not
    produce that table (then read its latest version)."""
    run = latest_published(warehouse)
    return None if run is None else run.tables.get(table)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
