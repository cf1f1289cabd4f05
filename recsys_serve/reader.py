"""Reading the warehouse's Delta tables without Spark, on the local filesystem or on S3.

Rows come through DuckDB's delta extension, loaded from the `duckdb-extension-delta` wheel's file (never downloaded:
auto-install and auto-load are off); on S3 DuckDB reads through its httpfs extension, loaded the same way from the
`duckdb-extension-httpfs` wheel, with a DuckDB secret made of the AWS_* settings recsys_core.storage reads. The table
versions and the partitions' files, which say when something must be reloaded, come from the Delta log through
delta-rs (with the same settings as its `storage_options`). delta-rs' own readers are not used for rows: under
pyarrow 14 they cannot filter a partitioned table. Table names come from this code or from listing the warehouse,
never from a request.

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
from recsys_core.published import has_commit, latest_published
from recsys_serve.errors import ServeError


def _extension_file(package, name: str) -> Path:
    return Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"


DELTA_EXTENSION = _extension_file(duckdb_extension_delta, "delta")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
FACTORS_SUFFIX = "_item_factors"


def httpfs_extension() -> Path:
    """DuckDB's httpfs extension file (the `duckdb-extension-httpfs` wheel); ServeError when it is not installed."""
    try:
        import duckdb_extension_httpfs
    except ImportError:
        raise ServeError(f"a warehouse on S3 needs DuckDB's httpfs extension: pip install "
                         f"duckdb-extension-httpfs=={duckdb.__version__}") from None
    return _extension_file(duckdb_extension_httpfs, "httpfs")


def _sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class Warehouse:
    """One warehouse (a directory, `file:///…` or `s3://bucket/prefix`): versions, partitions and queries of its Delta
    tables."""

    def __init__(self, root: str | Path, threads: int = 2, memory_limit: str = "2GB"):
        root = str(root)
        if not (storage.is_local(root) or storage.is_s3(root)):
            raise ServeError(f"the server reads a warehouse on the local filesystem (a path or file://) or on S3 "
                             f"(s3://bucket/prefix), not {root}")
        self.root = storage.native_path(root)  # an absolute path, or s3://…
        if not DELTA_EXTENSION.is_file():
            raise ServeError(f"DuckDB's delta extension is missing: {DELTA_EXTENSION} (pip install "
                             f"duckdb-extension-delta=={duckdb.__version__})")
        extensions = [DELTA_EXTENSION]
        if storage.is_s3(self.root):
            extensions.insert(0, httpfs_extension())
            if not extensions[0].is_file():
                raise ServeError(f"DuckDB's httpfs extension is missing: {extensions[0]} (pip install "
                                 f"duckdb-extension-httpfs=={duckdb.__version__})")
        try:
            found = storage.is_dir(self.root)
        except OSError as exc:  # S3 unreachable, no such bucket, refused credentials: one line
            raise ServeError(f"cannot read the warehouse {self.root}: {str(exc).strip().splitlines()[0]}") from None
        if not found:
            raise ServeError(f"warehouse not found: {self.root}")
        self._options = storage.storage_options(self.root)
        self._con = duckdb.connect(config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "threads": threads, "memory_limit": memory_limit, "enable_external_access": True,
        })
        for extension in extensions:
            self._con.execute(f"LOAD {_sql_text(extension)}")
        secret = storage.duckdb_s3_secret(self.root)
        if secret is not None:
            settings = ", ".join(f"{key} {str(value).lower() if isinstance(value, bool) else _sql_text(value)}"
                                 for key, value in secret.items())
            self._con.execute(f"CREATE SECRET warehouse (TYPE s3, {settings})")
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

    def path(self, table: str) -> str:
        if not TABLE_NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        return storage.join(self.root, table)

    def _delta(self, table: str, version: int | None = None) -> deltalake.DeltaTable:
        return deltalake.DeltaTable(self.path(table), version=version, storage_options=self._options)

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
        return self._delta(table).version()

    def committed_at(self, table: str) -> float | None:
        """When the table's latest version was committed (seconds since 1970); None when it does not exist."""
        if not self.exists(table):
            return None
        history = self._delta(table).history(1)
        return history[0]["timestamp"] / 1000 if history and "timestamp" in history[0] else None

    def partitions(self, table: str) -> dict[tuple[str, dt.date], tuple[str, ...]]:
        """{(model, run_date): its data files} of a table partitioned by model and run_date. The files say whether a
        partition was rewritten (a re-run of the same date commits new files)."""
        if not self.exists(table):
            return {}
        delta = self._delta(table, self.pinned.get(table))
        parts = {}
        for values in delta.partitions():
            key = (values["model"], dt.date.fromisoformat(values["run_date"]))
            files = delta.file_uris(partition_filters=[("model", "=", key[0]), ("run_date", "=", values["run_date"])])
            parts[key] = tuple(sorted(files))
        return parts

    def factor_tables(self) -> dict[str, str]:
        """{ALS model: its `<model>_item_factors` table}, as found in the warehouse."""
        return {name[:-len(FACTORS_SUFFIX)]: name for name in storage.listdir(self.root)
                if name.endswith(FACTORS_SUFFIX) and TABLE_NAME.match(name) and self.exists(name)}

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
        return [name for name in storage.listdir(self.root) if TABLE_NAME.match(name) and self.exists(name)]


def published(root: str | Path, **kwargs) -> Warehouse:
    """The warehouse as its last published run left it (every table at the version the newest `runs` row names);
    with nothing published yet, every table's latest version. What the notebooks read."""
    warehouse = Warehouse(root, **kwargs)
    run = latest_published(warehouse.root)
    return warehouse.at(run.tables) if run is not None else warehouse


def _delta_scan(location: str, version: int | None = None) -> str:
    at = "" if version is None else f", version => {int(version)}"
    return f"delta_scan({_sql_text(location)}{at})"
