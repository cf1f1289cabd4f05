"""Reading the warehouse's Delta tables without Spark.

Rows come through DuckDB's delta extension, loaded from the `duckdb-extension-delta` wheel's file (never downloaded:
auto-install and auto-load are off); the table versions and the partitions' files, which say when something must be
reloaded, come from the Delta log through delta-rs. delta-rs' own readers are not used for rows: under pyarrow 14
they cannot filter a partitioned table. Table names come from this code or from listing the warehouse, never from a
request.

A Warehouse can be pinned to table versions (`at`): it then reads those versions (Delta time travel), as the server,
the notebooks and the report read the last published snapshot (`published`; recsys_core.published).
"""
from __future__ import annotations

import copy
import datetime as dt
import re
import threading
from pathlib import Path

import deltalake
import duckdb
import duckdb_extension_delta
import numpy as np

from recsys_core import storage
from recsys_core.published import latest_published
from recsys_serve.errors import ServeError

DELTA_EXTENSION = (Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{duckdb.__version__}"
                   / "delta.duckdb_extension")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
FACTORS_SUFFIX = "_item_factors"
COMMIT_FILE = re.compile(r"^\d{20}\.(?:json|checkpoint(?:\.\d+\.\d+)?\.parquet)$")


def has_commit(table: Path) -> bool:
    """Whether the folder is a Delta table with at least one commit. A `_delta_log` without one (a first write that
    was killed, or still running) is not a table yet: reading it would fail."""
    log = table / "_delta_log"
    try:
        return any(COMMIT_FILE.match(entry.name) for entry in log.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


class Warehouse:
    """One warehouse directory: versions, partitions and queries of its Delta tables."""

    def __init__(self, root: str | Path, threads: int = 2, memory_limit: str = "2GB"):
        if not storage.is_local(str(root)):  # DuckDB reads object storage only with its httpfs extension
            raise ServeError(f"the server reads a warehouse on the local filesystem (a path or file://), not {root}")
        self.root = Path(storage.local_path(str(root))).resolve()
        if not self.root.is_dir():
            raise ServeError(f"warehouse not found: {self.root}")
        if not DELTA_EXTENSION.is_file():
            raise ServeError(f"DuckDB's delta extension is missing: {DELTA_EXTENSION} (pip install "
                             f"duckdb-extension-delta=={duckdb.__version__})")
        self._con = duckdb.connect(config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "threads": threads, "memory_limit": memory_limit, "enable_external_access": True,
        })
        self._con.execute(f"LOAD '{DELTA_EXTENSION}'")
        self._lock = threading.Lock()
        self.pinned: dict[str, int] = {}  # table -> the version read (time travel); others: their latest

    def at(self, versions: dict[str, int | None]) -> "Warehouse":
        """A view of this warehouse that reads each table of `versions` at that version (it shares this one's
        connection: close this one, not the view)."""
        view = copy.copy(self)
        view.pinned = {t: int(v) for t, v in versions.items() if v is not None}
        return view

    def close(self) -> None:
        self._con.close()

    def path(self, table: str) -> Path:
        if not TABLE_NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        return self.root / table

    def exists(self, table: str) -> bool:
        """Whether the table has a committed version (see has_commit)."""
        return has_commit(self.path(table))

    def require(self, *tables: str) -> None:
        missing = [t for t in tables if not self.exists(t)]
        if missing:
            raise ServeError(f"{self.root} has no Delta table {', '.join(missing)} (run `recsys pipeline` first)")

    def version(self, table: str) -> int | None:
        """The table's latest committed version; None when it does not exist."""
        if not self.exists(table):
            return None
        if table in self.pinned:
            return self.pinned[table]
        return deltalake.DeltaTable(str(self.path(table))).version()

    def committed_at(self, table: str) -> float | None:
        """When the table's latest version was committed (seconds since 1970); None when it does not exist."""
        if not self.exists(table):
            return None
        history = deltalake.DeltaTable(str(self.path(table))).history(1)
        return history[0]["timestamp"] / 1000 if history and "timestamp" in history[0] else None

    def partitions(self, table: str) -> dict[tuple[str, dt.date], tuple[str, ...]]:
        """{(model, run_date): its data files} of a table partitioned by model and run_date. The files say whether a
        partition was rewritten (a re-run of the same date commits new files)."""
        if not self.exists(table):
            return {}
        delta = deltalake.DeltaTable(str(self.path(table)), version=self.pinned.get(table))
        parts = {}
        for values in delta.partitions():
            key = (values["model"], dt.date.fromisoformat(values["run_date"]))
            files = delta.file_uris(partition_filters=[("model", "=", key[0]), ("run_date", "=", values["run_date"])])
            parts[key] = tuple(sorted(files))
        return parts

    def factor_tables(self) -> dict[str, str]:
        """{ALS model: its `<model>_item_factors` table}, as found in the warehouse."""
        return {p.name[:-len(FACTORS_SUFFIX)]: p.name for p in sorted(self.root.glob(f"*{FACTORS_SUFFIX}"))
                if TABLE_NAME.match(p.name) and has_commit(p)}

    def query(self, sql: str, params: list | None = None, **tables: str) -> dict[str, np.ndarray]:
        """Run `sql`, in which `{name}` stands for the Delta table `tables[name]`; columns as numpy arrays."""
        scans = {name: _delta_scan(self.path(table), self.pinned.get(table)) for name, table in tables.items()}
        with self._lock:
            return self._con.execute(sql.format(**scans), params or []).fetchnumpy()

    def frame(self, sql: str, params: list | None = None, **tables: str):
        """`query`, as a pandas DataFrame (for the notebooks)."""
        scans = {name: _delta_scan(self.path(table), self.pinned.get(table)) for name, table in tables.items()}
        with self._lock:
            return self._con.execute(sql.format(**scans), params or []).df()

    def tables(self) -> list[str]:
        """The Delta tables in the warehouse, by name."""
        return sorted(p.name for p in self.root.iterdir() if TABLE_NAME.match(p.name) and self.exists(p.name))


def published(root: str | Path, **kwargs) -> Warehouse:
    """The warehouse as its last published run left it (every table at the version the newest `runs` row names);
    with nothing published yet, every table's latest version. What the notebooks read."""
    warehouse = Warehouse(root, **kwargs)
    run = latest_published(warehouse.root)
    return warehouse.at(run.tables) if run is not None else warehouse


def _delta_scan(path: Path, version: int | None = None) -> str:
    at = "" if version is None else f", version => {int(version)}"
    return "delta_scan('" + str(path).replace("'", "''") + "'" + at + ")"
