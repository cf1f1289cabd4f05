"""Per-user sequences -> the Parquet shards of docs/SCHEMAS.md ("Sequence shards") that the torch side trains on.

Everything row-shaped is Spark SQL: one `collect_list` of (seq, item, timestamp, split) structs per user, sorted with
`array_sort`, then `filter`/`slice`/`transform` over those arrays; train windows come from `explode(sequence(...))`.
Memory is bounded by the longest single user history, never by the table.

Files are written through pyarrow from `mapInArrow`, one file per Spark partition, so that every row group holds
exactly `group_rows` rows (Spark's Parquet writer sizes row groups in bytes). Petastorm shards by row group, so a
small dataset is cut into at least `min_row_groups` groups. Rows are hash-partitioned by user_idx into a number of
files that depends only on the row count, then sorted inside each file: the same input gives the same files with
the same rows in the same order.

`edges/` is the train graph of a graph model (LightGCN): one row per train interaction, ordered by (user, item). It
holds the same rows as `ncf_train/`, which is NCF's sample stream in history order; the graph is its own contract so
that either can change without the other.

Train rows carry target_item = target_timestamp = query_timestamp = 0 and an empty seen_items (their loss is on
`targets`). An evaluation row with no history at all (a user whose only interaction is the target) has all-padding
items and query_timestamp 0 under `last_gap: query_time`.

The output folder is built beside the target under a temporary name and swapped in when complete.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_core import storage
from recsys_core.config import POSITIVE, Config, checked, one_of
from recsys_spark.delta import read_table, table_exists, table_path
from recsys_spark.errors import ConfigError, RecsysError
from recsys_spark.schemas import EDGE_ROWS, ITEM_MAP, NCF_ROWS, SEQUENCE_ROWS, SHARD_SCHEMA_VERSION, USER_MAP

LAST_GAPS = ("query_time", "target_time")
REQUIRED_COLUMNS = ("userId", "movieId", "timestamp", "user_idx", "item_idx", "seq", "split")
DATASETS = ("train", "validation", "test", "ncf_train", "edges")


@dataclass
class SequenceConfig(Config):
    section = "sequences"

    max_len: int = checked(200, POSITIVE)
    stride: int | None = checked(None, POSITIVE)  # train window stride; None = max_len (non-overlapping windows)
    # query_time: last history timestamp + 1 s; target_time: the target's timestamp
    last_gap: str = checked("query_time", one_of(*LAST_GAPS))
    rows_per_group: int = checked(4096, POSITIVE)        # rows per Parquet row group of train/validation/test
    ncf_rows_per_group: int = checked(65536, POSITIVE)   # rows per row group of ncf_train and edges (two ints a row)
    min_row_groups: int = checked(8, POSITIVE)  # per dataset, when it has that many rows: every rank needs a row group
    groups_per_file: int = checked(16, POSITIVE)

    def validate(self) -> None:
        if self.stride is not None and self.stride > self.max_len:
            raise ConfigError(f"sequences.stride={self.stride} is larger than max_len={self.max_len}: "
                              f"windows would skip items")

    @property
    def window_stride(self) -> int:
        return self.max_len if self.stride is None else self.stride


# ---------------------------------------------------------------- rows (Spark SQL only)

def require_interactions(warehouse: str | Path) -> str:
    path = table_path(warehouse, "interactions")
    if not table_exists(path):
        raise RecsysError(f"Delta table not found: {path} (run `recsys etl` first)")
    return path


def check_interactions(interactions: DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in interactions.columns]
    if missing:
        raise RecsysError(f"interactions table lacks column(s) {missing} (expected the ETL output of docs/SCHEMAS.md)")


def build_histories(interactions: DataFrame) -> DataFrame:
    """One row per user: train_items/train_ts (ordered by seq), and the validation and test events (null if none)."""
    events = F.array_sort(F.collect_list(F.struct(
        F.col("seq").cast("int").alias("seq"),
        F.col("item_idx").cast("int").alias("item"),
        F.col("timestamp").cast("long").alias("ts"),
        F.col("split").alias("split"))))
    per_user = interactions.groupBy(F.col("user_idx").cast("int").alias("user_idx")).agg(events.alias("events"))

    def of_split(name: str) -> Column:
        return F.filter("events", lambda e: e["split"] == name)

    train = of_split("train")
    validation = F.try_element_at(of_split("validation"), F.lit(1))
    test = F.try_element_at(of_split("test"), F.lit(1))
    return per_user.select(
        "user_idx",
        F.transform(train, lambda e: e["item"]).alias("train_items"),
        F.transform(train, lambda e: e["ts"]).alias("train_ts"),
        validation["item"].alias("validation_item"), validation["ts"].alias("validation_ts"),
        test["item"].alias("test_item"), test["ts"].alias("test_ts"))


def left_pad(values: Column, length: int, zero: Column) -> Column:
    """The last `length` values, left-padded with `zero` to exactly `length`."""
    tail = F.slice(values, F.greatest(F.size(values) - length + 1, F.lit(1)), length)
    return F.concat(F.array_repeat(zero, F.lit(length) - F.size(tail)), tail)


def zero_int() -> Column:
    return F.lit(0).cast("int")


def zero_long() -> Column:
    return F.lit(0).cast("long")


def train_windows(histories: DataFrame, max_len: int, stride: int) -> DataFrame:
    """Windows over each user's train items s: items = s[e-L:e], targets = s[e-L+1:e+1] for e = n-1, n-1-stride, …

    The newest window is whole; the oldest may be shorter (left-padded). A user needs 2 train items for one window.
    """
    n = F.size("train_items")
    n_windows = F.ceil((n - 1) / F.lit(stride)).cast("int")
    exploded = (histories.where(n >= 2)
                .select("*", F.explode(F.sequence(F.lit(0), n_windows - 1)).alias("window")))
    end = F.size("train_items") - 1 - F.col("window") * stride      # exclusive end of the inputs (0-based)
    start = F.greatest(end - max_len, F.lit(0))
    length = end - start
    windows = exploded.select("user_idx", start.alias("start"), end.alias("window_end"), length.alias("length"),
                              "train_items", "train_ts")
    return windows.select(
        "user_idx",
        F.concat(F.array_repeat(zero_int(), max_len - F.col("length")),
                 F.slice("train_items", F.col("start") + 1, F.col("length"))).alias("items"),
        F.concat(F.array_repeat(zero_long(), max_len - F.col("length")),
                 F.slice("train_ts", F.col("start") + 1, F.col("length"))).alias("timestamps"),
        F.concat(F.array_repeat(zero_int(), max_len - F.col("length")),
                 F.slice("train_items", F.col("start") + 2, F.col("length"))).alias("targets"),
        zero_int().alias("target_item"), zero_long().alias("target_timestamp"), zero_long().alias("query_timestamp"),
        F.array().cast("array<int>").alias("seen_items"),
        "window_end")  # unique per user (starts repeat when stride < max_len): the row order inside a file


def eval_rows(histories: DataFrame, split: str, max_len: int, last_gap: str) -> DataFrame:
    """One row per user with a `split` event: history = train (+ validation for test) items, target = that event."""
    if split == "validation":
        hist_items, hist_ts = F.col("train_items"), F.col("train_ts")
    elif split == "test":
        has_validation = F.col("validation_item").isNotNull()
        hist_items = F.when(has_validation, F.concat("train_items", F.array("validation_item"))) \
            .otherwise(F.col("train_items"))
        hist_ts = F.when(has_validation, F.concat("train_ts", F.array("validation_ts"))).otherwise(F.col("train_ts"))
    else:
        raise ValueError(f"eval rows are built for validation or test, not {split!r}")
    target_item, target_ts = F.col(f"{split}_item"), F.col(f"{split}_ts")
    if last_gap == "target_time":
        query_ts = target_ts
    else:  # production cannot know when the target happens; with no history at all there is no gap to give (0)
        query_ts = F.coalesce(F.try_element_at(hist_ts, F.lit(-1)) + 1, zero_long())
    return histories.where(target_item.isNotNull()).select(
        "user_idx",
        left_pad(hist_items, max_len, zero_int()).alias("items"),
        left_pad(hist_ts, max_len, zero_long()).alias("timestamps"),
        F.array_repeat(zero_int(), max_len).alias("targets"),
        target_item.cast("int").alias("target_item"),
        target_ts.cast("long").alias("target_timestamp"),
        query_ts.cast("long").alias("query_timestamp"),
        F.array_sort(F.array_distinct(hist_items)).alias("seen_items"))


# ---------------------------------------------------------------- files

def group_rows_for(rows: int, rows_per_group: int, min_row_groups: int) -> int:
    """Rows per row group: rows_per_group, or fewer so that `rows` make at least `min_row_groups` groups."""
    return max(1, min(rows_per_group, rows // min_row_groups))


def _partition_writer(folder: str, schema: pa.Schema, group_rows: int):
    """The mapInArrow function: this partition's rows -> folder/part-<partition>.parquet, groups of group_rows."""

    def write(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        name = f"part-{ctx.partitionId():05d}.parquet"
        final = os.path.join(folder, name)
        temp = os.path.join(folder, f".{name}.{ctx.taskAttemptId()}.tmp")  # a retried task never leaves half a file
        writer, pending, n_pending, rows, groups = None, [], 0, 0, 0

        def flush(table: pa.Table):
            nonlocal writer, rows, groups
            if writer is None:
                writer = pq.ParquetWriter(temp, schema)
            writer.write_table(table, row_group_size=group_rows)
            rows += table.num_rows
            groups += 1

        try:
            for batch in batches:  # Spark's Arrow types (field names, nullability) -> the contract's schema
                pending.append(pa.Table.from_batches([batch]).cast(schema))
                n_pending += batch.num_rows
                if n_pending >= group_rows:
                    table = pa.concat_tables(pending)
                    full = n_pending - n_pending % group_rows
                    for offset in range(0, full, group_rows):
                        flush(table.slice(offset, group_rows))
                    pending, n_pending = [table.slice(full)], n_pending - full
            if n_pending:
                flush(pa.concat_tables(pending))
            if writer is not None:
                writer.close()
                os.replace(temp, final)
        finally:
            if os.path.exists(temp):
                os.remove(temp)
        if rows:
            yield pa.RecordBatch.from_pylist([{"file": name, "rows": rows, "row_groups": groups}],
                                             schema=WRITE_RESULT_SCHEMA)

    return write


WRITE_RESULT_SCHEMA = pa.schema([("file", pa.string()), ("rows", pa.int64()), ("row_groups", pa.int32())])


def write_parquet_shards(df: DataFrame, rows: int, folder: Path, schema: pa.Schema, order_by: list[str],
                         rows_per_group: int, min_row_groups: int, groups_per_file: int) -> int:
    """Write the `rows` rows of `df` as Parquet files of exact row groups; returns the rows written (== rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    if rows == 0:  # still a readable, typed (empty) dataset
        pq.write_table(schema.empty_table(), folder / "part-00000.parquet")
        return 0
    group_rows = group_rows_for(rows, rows_per_group, min_row_groups)
    n_files = max(1, math.ceil(math.ceil(rows / group_rows) / groups_per_file))
    laid_out = df.repartition(n_files, "user_idx").sortWithinPartitions(*order_by).select(*schema.names)
    written = laid_out.mapInArrow(_partition_writer(str(folder), schema, group_rows),
                                  "file string, rows long, row_groups int").collect()
    total = sum(r["rows"] for r in written)
    if total != rows:
        raise RecsysError(f"{folder}: wrote {total} rows, expected {rows}")
    return total


def planned_rows(histories: DataFrame, stride: int) -> dict:
    """Rows each dataset will have, and n_users/n_items, in one pass over the (cached) histories."""
    n = F.size("train_items")
    last_item = F.greatest(F.array_max("train_items"), "validation_item", "test_item")
    totals = histories.agg(
        F.count(F.lit(1)).alias("users"), F.max("user_idx").alias("n_users"), F.max(last_item).alias("n_items"),
        F.sum(F.when(n >= 2, F.ceil((n - 1) / F.lit(stride))).otherwise(0)).alias("train"),
        F.count("validation_item").alias("validation"), F.count("test_item").alias("test"),
        F.sum(n).alias("ncf_train"), F.sum(n).alias("edges")).first()
    return {key: int(totals[key] or 0) for key in ("users", "n_users", "n_items", *DATASETS)}


def write_id_map(pairs: DataFrame, path: Path, schema: pa.Schema) -> int:
    """A small dense-index -> MovieLens-id map (one row per index, sorted), collected and written by the driver."""
    idx = schema.names[0]
    table = pairs.distinct().toArrow().cast(schema).sort_by(idx)
    if len(pc.unique(table.column(idx))) != table.num_rows:
        raise RecsysError(f"interactions maps some {idx} to more than one id: the ETL output is inconsistent")
    pq.write_table(table, path)
    return table.num_rows


def etl_provenance(warehouse: str | Path) -> dict:
    """tie_break, seed and time (seconds | order) from <warehouse>/etl_report.json when the ETL left one (null
    otherwise; an ETL older than `time` had timestamps)."""
    path = storage.join(str(warehouse), "etl_report.json")
    report: dict = {}
    text = storage.read_bytes(path)
    if text is not None:
        try:
            report = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecsysError(f"{path}: not valid JSON ({exc})") from None
    config = report.get("config") if isinstance(report.get("config"), dict) else {}
    found = {key: report.get(key, config.get(key)) for key in ("tie_break", "seed")}
    return {**found, "time": report.get("time", "seconds" if report else None)}


def _prepare_out(out: Path) -> Path:
    """Refuse to replace a folder that is not an earlier export; return the temporary folder to build in."""
    if out.exists():
        if not out.is_dir():
            raise RecsysError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "meta.json").is_file():
            raise RecsysError(f"--out {out} is a non-empty folder without meta.json: not an earlier sequence "
                              f"export, refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    return temp


def _swap_in(temp: Path, out: Path) -> None:
    """Two renames on one file system: readers see the old export or the new one (or, for an instant, none)."""
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        os.rename(out, old)
    try:
        os.rename(temp, out)
    except OSError:
        if old.exists():
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_sequences(spark: SparkSession, warehouse: str | Path, out: str | Path | None = None,
                     config: SequenceConfig | None = None) -> dict:
    """Read <warehouse>/interactions, write the shards to `out` (default <warehouse>/sequences); returns meta.json."""
    config = config or SequenceConfig()
    warehouse = str(warehouse)
    out = str(out) if out else storage.join(warehouse, "sequences")
    if not storage.is_local(out):  # the executors write the shards with local file calls (a shared mount on a cluster)
        raise ConfigError(f"the sequence shards go to a local or shared folder, not {out}: give one with --out")
    out = Path(storage.local_path(out))
    interactions = read_table(spark, require_interactions(warehouse))
    check_interactions(interactions)
    provenance = etl_provenance(warehouse)
    if provenance["time"] == "order":  # the timestamps are order keys, not seconds: no gaps to give (SCHEMAS.md)
        interactions = interactions.withColumn("timestamp", F.lit(0).cast("long"))
    histories = build_histories(interactions).persist(StorageLevel.MEMORY_AND_DISK)
    temp = None
    try:
        plan = planned_rows(histories, config.window_stride)
        if not plan["users"]:
            raise RecsysError(f"{table_path(warehouse, 'interactions')} has no rows: nothing to export")
        temp = _prepare_out(out)
        L = config.max_len
        datasets = {
            "train": (train_windows(histories, L, config.window_stride), ["user_idx", "window_end"], SEQUENCE_ROWS,
                      config.rows_per_group),
            "validation": (eval_rows(histories, "validation", L, config.last_gap), ["user_idx"], SEQUENCE_ROWS,
                           config.rows_per_group),
            "test": (eval_rows(histories, "test", L, config.last_gap), ["user_idx"], SEQUENCE_ROWS,
                     config.rows_per_group),
            "ncf_train": (histories.select("user_idx", F.posexplode("train_items").alias("pos", "item_idx")),
                          ["user_idx", "pos"], NCF_ROWS, config.ncf_rows_per_group),
            "edges": (histories.select("user_idx", F.explode("train_items").alias("item_idx")),
                      ["user_idx", "item_idx"], EDGE_ROWS, config.ncf_rows_per_group),
        }
        rows = {name: write_parquet_shards(df, plan[name], temp / name, schema, order_by, rows_per_group,
                                           config.min_row_groups, config.groups_per_file)
                for name, (df, order_by, schema, rows_per_group) in datasets.items()}
        write_id_map(interactions.select("item_idx", "movieId"), temp / "item_map.parquet", ITEM_MAP)
        write_id_map(interactions.select("user_idx", "userId"), temp / "user_map.parquet", USER_MAP)
        meta = {"schema_version": SHARD_SCHEMA_VERSION, "n_items": plan["n_items"], "n_users": plan["n_users"],
                "max_len": L, "rows": rows, **provenance, "last_gap": config.last_gap,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        (temp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _swap_in(temp, out)
        return meta
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        histories.unpersist()
