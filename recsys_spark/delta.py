"""Delta tables: Spark's own Delta writer where the Delta Lake jars are on the class path, delta-rs otherwise.

Either way a write is one atomic commit, the table is readable by Spark, delta-rs, Polars and DuckDB, and a write
with `replace` replaces exactly the rows matching it (a (model, run_date) partition), never appending twice.

delta-rs path: Spark writes the rows as Parquet into a staging folder beside the table, and delta-rs commits them
as one transaction from a streaming Arrow reader, so the driver never holds the whole table in memory. A staging
folder is named after its writer (host and pid); one a killed writer left behind is removed at the start of the
next write beside it (`remove_stale_staging`), never one whose writer is still running.

A partition replace never commits an empty frame: a step that produced no rows for its (model, run_date) is refused
(EmptyPartitionError) and the partition keeps its current rows.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Mapping

import deltalake
import pyarrow as pa
import pyarrow.dataset as pads
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from recsys_core import storage
from recsys_core.published import has_commit
from recsys_spark.errors import RecsysError

WRITER_ENV = "RECSYS_DELTA_WRITER"  # auto | spark | delta-rs
STAGING_PREFIX = "_staging-"
# _staging-<table>-<host>-<pid>-<random>; folders of an older layout have no owner and are judged by age alone
STAGING_OWNER = re.compile(r"^_staging-.+-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[0-9a-f]{8}$")
STAGING_MAX_AGE_S = 24 * 3600  # a folder whose writer cannot be checked (another host) is stale after this


class EmptyPartitionError(RecsysError):
    """A partition replace with no rows: it would wipe a good (model, run_date) partition."""


def spark_has_delta(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # noqa: SLF001
    except Exception:  # noqa: BLE001 - py4j raises its own error type when the class is missing
        return False
    return "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions", "")


def use_spark_writer(spark: SparkSession) -> bool:
    choice = os.environ.get(WRITER_ENV, "auto")
    if choice == "delta-rs":
        return False
    has = spark_has_delta(spark)
    if choice == "spark" and not has:
        raise RecsysError(f"{WRITER_ENV}=spark but the Delta Lake jars/extension are not configured in this Spark session")
    return has


def table_path(warehouse: str | Path, name: str) -> str:
    """The table `name` of the warehouse at `warehouse`: a path or a URI (recsys_core.storage), never mangled."""
    return storage.join(str(warehouse), name)


def table_exists(path: str | Path) -> bool:
    """A Delta table with at least one commit is there (recsys_core.published.has_commit)."""
    return has_commit(path)


def _sql_literal(value) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def replace_predicate(replace: Mapping[str, object]) -> str:
    return " AND ".join(f"{col} = {_sql_literal(val)}" for col, val in replace.items())


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def staging_dir(path: str | Path) -> str:
    """A fresh staging folder beside the table at `path` (on its filesystem), naming this process as its writer."""
    path = str(path)
    name = f"{STAGING_PREFIX}{storage.basename(path)}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return storage.join(storage.parent(path), name)


def is_stale_staging(folder: str | Path, now: float | None = None, max_age_s: float = STAGING_MAX_AGE_S) -> bool:
    """Whether a staging folder was left by a writer that is gone: one of this host whose pid is no longer running,
    or, when the writer cannot be checked (another host, an older name), one untouched for `max_age_s` (never, on a
    store that keeps no folder times)."""
    folder = str(folder)
    owner = STAGING_OWNER.match(storage.basename(folder))
    if owner and owner["host"] == _host():
        pid = int(owner["pid"])
        return pid != os.getpid() and not _alive(pid)
    mtime = storage.modified(folder) if storage.exists(folder) else None
    if mtime is None:  # removed meanwhile by another writer, or an object-store prefix
        return False
    return (now if now is not None else time.time()) - mtime > max_age_s


def remove_stale_staging(warehouse: str | Path) -> list[str]:
    """Remove the staging folders killed writers left in `warehouse` (see is_stale_staging); the removed ones."""
    removed = []
    for name in storage.listdir(str(warehouse)):
        folder = storage.join(str(warehouse), name)
        if name.startswith(STAGING_PREFIX) and storage.is_dir(folder) and is_stale_staging(folder):
            storage.remove(folder)
            removed.append(folder)
    return removed


def _refuse_empty(path: str | Path, replace: Mapping[str, object]) -> None:
    what = ", ".join(f"{col}={val}" for col, val in replace.items())
    raise EmptyPartitionError(f"refusing to replace the ({what}) partition of {path} with no rows: the step produced "
                              f"nothing for it; the partition keeps its current rows")


def check_schema(df: DataFrame, schema: pa.Schema, path: str | Path) -> None:
    """`df` has exactly the declared columns and types (recsys_spark.schemas): anything else is a bug, refused
    before it is written."""
    from pyspark.sql.pandas.types import from_arrow_type

    declared = [(f.name, from_arrow_type(f.type).simpleString()) for f in schema]
    actual = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    if actual != declared:
        raise RuntimeError(f"{path}: the frame's columns {actual} are not the declared schema {declared}")


def write_table(
    df: DataFrame,
    path: str | Path,
    partition_by: list[str] | None = None,
    replace: Mapping[str, object] | None = None,
    schema: pa.Schema | None = None,
) -> None:
    """Write `df` to the Delta table at `path` in one commit; `schema`: the table's declared schema, checked first.

    replace=None overwrites the whole table; replace={"model": "als", "run_date": date} replaces only those rows
    (every row of `df` must match it; an empty `df` is refused: EmptyPartitionError). Earlier versions stay readable
    by time travel.
    """
    if schema is not None:
        check_schema(df, schema, path)
    path = str(path)
    spark = df.sparkSession
    if use_spark_writer(spark):
        if replace and df.isEmpty():
            _refuse_empty(path, replace)
        writer = df.write.format("delta").mode("overwrite")
        if replace:
            writer = writer.option("replaceWhere", replace_predicate(replace))
        else:
            writer = writer.option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(storage.spark_path(path))
        return

    remove_stale_staging(storage.parent(path))
    staging = staging_dir(path)
    try:
        df.write.mode("overwrite").parquet(storage.spark_path(staging))
        filesys, staged = storage.filesystem(staging)
        dataset = pads.dataset(staged, format="parquet", filesystem=filesys)
        if replace and dataset.count_rows() == 0:
            _refuse_empty(path, replace)
        reader = dataset.scanner(batch_size=64_000).to_reader()
        kwargs = {"mode": "overwrite", "partition_by": partition_by, "storage_options": storage.storage_options(path)}
        if replace and table_exists(path):
            kwargs["predicate"] = replace_predicate(replace)
        else:
            kwargs["schema_mode"] = "overwrite"
        deltalake.write_deltalake(storage.native_path(path), reader, **kwargs)
        del reader, dataset
    finally:
        storage.remove(staging)


def write_arrow(table: pa.Table, path: str | Path, partition_by: list[str] | None = None,
                replace: Mapping[str, object] | None = None) -> None:
    """Commit a small Arrow table (a report, a metrics table) with delta-rs; a partition `replace` with no rows is
    refused (EmptyPartitionError)."""
    if replace and table.num_rows == 0:
        _refuse_empty(path, replace)
    kwargs = {"mode": "overwrite", "partition_by": partition_by, "storage_options": storage.storage_options(str(path))}
    if replace and table_exists(path):
        kwargs["predicate"] = replace_predicate(replace)
    else:
        kwargs["schema_mode"] = "overwrite"
    deltalake.write_deltalake(storage.native_path(str(path)), table, **kwargs)


def _require(path: str) -> deltalake.DeltaTable:
    if not table_exists(path):
        raise RecsysError(f"Delta table not found: {path} (run the step that writes it first)")
    return deltalake.DeltaTable(storage.native_path(path), storage_options=storage.storage_options(path))


def read_table(spark: SparkSession, path: str | Path, version: int | None = None) -> DataFrame:
    """Read a Delta table into Spark (any version), with Spark's Delta reader if present, else via its log."""
    path = str(path)
    if spark_has_delta(spark) and os.environ.get(WRITER_ENV, "auto") != "delta-rs":
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(storage.spark_path(path))
    table = _require(path)
    if version is not None:
        table.load_as_version(version)
    # A Delta schema is serialised exactly as Spark's StructType JSON.
    schema = StructType.fromJson(json.loads(table.schema().to_json()))
    files = [storage.spark_path(f) for f in table.file_uris()]
    if not files:
        return spark.createDataFrame([], schema)
    # delta-rs resolves symlinks in the file URIs; its table_uri is resolved the same way (a symlinked warehouse).
    return spark.read.schema(schema).option("basePath", storage.spark_path(table.table_uri)).parquet(*files)


def arrow_schema(table: deltalake.DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def read_arrow(path: str | Path, columns: list[str] | None = None, version: int | None = None,
               filters=None) -> pa.Table:
    """Read a Delta table (any version) into Arrow without Spark, through delta-rs' own reader; `filters`:
    delta-rs' DNF filters, e.g. [("model", "=", "als")], which prune partitions before any file is opened."""
    table = _require(str(path))
    if version is not None:
        table.load_as_version(version)
    return table.to_pyarrow_table(columns=columns, filters=filters)


def table_rows(path: str | Path) -> int:
    """Rows of a Delta table from its log's file statistics (falls back to reading when stats are missing)."""
    records = pa.table(_require(str(path)).get_add_actions(flatten=True)).column("num_records").to_pylist()
    if None in records:
        return read_arrow(path, columns=[]).num_rows
    return int(sum(records))


def partition_times(path: str | Path) -> dict[tuple[str, dt.date], int]:
    """(model, run_date) -> when that partition of the table was last written (ms since the epoch): the commit time
    its files carry in the Delta log (`modification_time` of their add actions)."""
    actions = pa.table(_require(str(path)).get_add_actions(flatten=True))
    times: dict[tuple[str, dt.date], int] = {}
    if actions.num_rows == 0:
        return times
    for row in actions.select(["partition.model", "partition.run_date", "modification_time"]).to_pylist():
        key = (row["partition.model"], row["partition.run_date"])
        times[key] = max(times.get(key, 0), int(row["modification_time"]))
    return times


def partition_commits(path: str | Path) -> dict[tuple[str, dt.date], int]:
    """(model, run_date) -> the version of the commit that wrote the partition's files: the first commit not older
    than their newest file (a commit is stamped after the files it adds are written), so every partition one commit
    wrote gets that commit's version, whatever order its files were written in."""
    import bisect

    commits = sorted((c["timestamp"], c["version"]) for c in _require(str(path)).history())
    stamps = [ms for ms, _ in commits]
    return {key: commits[min(bisect.bisect_left(stamps, ms), len(commits) - 1)][1]
            for key, ms in partition_times(path).items()}


# Commits that leave a table's rows as they were (a vacuum, a compaction, a property): a reader before and after
# one of them saw the same data.
SAME_ROWS = frozenset({"VACUUM START", "VACUUM END", "OPTIMIZE", "SET TBLPROPERTIES"})


def rows_version_at(path: str | Path, ms: int | None = None) -> int | None:
    """The version whose rows the table held at `ms` (ms since the epoch; None: now): its newest commit not after it
    that changed rows (SAME_ROWS skipped); None when every such commit the log still holds is later."""
    before = [c["version"] for c in _require(str(path)).history()
              if c.get("operation") not in SAME_ROWS and (ms is None or c["timestamp"] <= ms)]
    return max(before) if before else None


def table_version(path: str | Path) -> int:
    return _require(str(path)).version()


def log_versions(warehouse: str | Path) -> dict[str, int]:
    """Each Delta table of a local warehouse (a top-level folder that is one) -> its newest commit number."""
    from deltalake.exceptions import TableNotFoundError

    versions = {}
    for folder in sorted(Path(warehouse).iterdir()) if Path(warehouse).is_dir() else ():
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            try:  # one open per table: has_commit would open it a second time
                versions[folder.name] = deltalake.DeltaTable(str(folder)).version()
            except TableNotFoundError:
                continue
    return versions


def rows_committed(warehouse: str | Path, since: Mapping[str, int]) -> dict[str, int]:
    """Table -> rows written by the commits made after `since` (log_versions taken earlier), from each commit's
    operationMetrics in the table's history: delta-rs's `num_added_rows`, Spark's `numOutputRows`. Tables with no
    new commit are left out; a commit with no row count (a vacuum, a checkpoint) adds nothing."""
    written = {}
    for table, newest in log_versions(warehouse).items():
        first = since.get(table, -1) + 1
        if newest < first:
            continue
        history = deltalake.DeltaTable(str(Path(warehouse) / table)).history(newest - first + 1)
        written[table] = sum(int((c.get("operationMetrics") or {}).get("num_added_rows",
                                 (c.get("operationMetrics") or {}).get("numOutputRows")) or 0)
                             for c in history if c.get("version", newest) >= first)
    return written
