"""The ETL: raw MovieLens CSVs -> interactions, items, users, tags, rejects, etl_report (Delta; docs/SCHEMAS.md).

Every input row ends in exactly one place: an output table or `rejects` (with its line, raw text, reason and
field); per file, input = accepted + rejected is asserted before anything is written, and again against the
written tables. Over an existing load the new one is first compared with it (recsys_spark.etl_guard), and refused
before the first commit when it shrinks or rejects too much.

Plan for ratings.csv (the big file): a cheap line-count pass, then one pass that numbers, parses and validates the
lines, marks unknown movies (broadcast join), shuffles once by userId, and marks duplicates within that
partitioning; the result is persisted (MEMORY_AND_DISK, raw text kept only on refused rows) and feeds the counts,
the dense indices, the temporal cut-off and, without another shuffle, the per-user history window of `seq`.

The parts: `etl_config` (the settings), `etl_read` (each file read, validated and marked; `kcore` the k-core
filter), `etl_report` (the rejects, the report tables and etl_report.json); this module makes the indices and the
tables and writes them.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from recsys_core import storage
from recsys_spark.delta import table_path, write_table
from recsys_spark.errors import InputError
from recsys_spark.etl_config import EtlConfig, KcoreConfig
from recsys_spark.etl_guard import LoadCounts, check_load, reject_fraction
from recsys_spark.etl_read import EtlInputs, accepted_rows, read_inputs, unreadable_input
from recsys_spark.etl_report import (REPORT_FILE, EtlResult, build_rejects, check_written, etl_summary, print_report,
                                     report_rows, write_report_table, write_summary)
from recsys_spark import schemas
from recsys_spark.splits import add_sequence, add_temporal_split, temporal_cutoff
from recsys_spark.row_checks import long_map
from recsys_spark.sources import EtlIdentityError

# Jobs, scripts and tests import the ETL's names from here.
__all__ = ["REPORT_FILE", "EtlConfig", "EtlIdentityError", "EtlResult", "KcoreConfig", "dense_index", "movie_columns",
           "pinned_file_splits", "print_report", "run_etl"]

NO_GENRES = "(no genres listed)"
# "Title (1995)", "Title (2006–2007)", "Title (2007-)", trailing spaces allowed.
TITLE_YEAR = r"^(.*?)\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$"


@contextlib.contextmanager
def pinned_file_splits(spark: SparkSession):
    """Fix how files are split into partitions for the whole run: line numbering reads each file twice and both
    reads must see the same blocks, even if executors come or go (the default follows the cores present)."""
    key = "spark.sql.files.minPartitionNum"
    before = spark.conf.get(key, None)
    if before is None:
        spark.conf.set(key, str(max(spark.sparkContext.defaultParallelism, 1)))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)


def dense_index(keys: DataFrame, key: str, index: str, max_buckets: int = 4096) -> DataFrame:
    """(key, index): 1-based dense index by ascending key over the distinct keys of `keys` (persist it: it is read
    three times). No global window (that would funnel every key through one task): keys are bucketed by value
    range, a prefix sum over the bucket sizes (at most max_buckets numbers, on the driver) gives each bucket's
    offset, and row_number inside the bucket does the rest."""
    lo, hi = keys.agg(F.min(key), F.max(key)).first()
    if lo is None:
        return keys.select(key, F.lit(None).cast("int").alias(index)).limit(0)
    width = -(-(hi - lo + 1) // max_buckets)
    bucket = F.floor((F.col(key) - F.lit(lo)) / F.lit(width)).alias("_bucket")
    offsets, seen = {}, 0
    for b, rows in sorted(keys.groupBy(bucket).count().collect()):
        offsets[b] = seen
        seen += rows
    within = F.row_number().over(Window.partitionBy("_bucket").orderBy(key))
    return (keys.select(key, bucket)
            .select(key, (within + long_map(offsets)[F.col("_bucket")]).cast("int").alias(index)))


def movie_columns(movies: DataFrame) -> DataFrame:
    """movieId, title without the trailing (year), year (null if none), genres as an array (empty if none listed)."""
    title = F.trim(F.col("title"))
    has_year = title.rlike(TITLE_YEAR)
    bare = F.regexp_extract(title, TITLE_YEAR, 1)
    genres = F.when(F.col("genres").isin(NO_GENRES, ""), F.array().cast("array<string>")).otherwise(
        F.split(F.col("genres"), r"\|"))
    return movies.select(
        "movieId",
        F.when(has_year & (bare != ""), bare).otherwise(title).alias("title"),
        F.when(has_year, F.regexp_extract(title, TITLE_YEAR, 2).cast("int")).alias("year"),
        genres.alias("genres"))


def _build_items(read: EtlInputs, item_index: DataFrame) -> DataFrame:
    if not read.movies.present:  # no item file: each item's id is its title, no genres
        items = item_index.select("movieId", F.col("movieId").cast("string").alias("title"),
                                  F.lit(None).cast("int").alias("year"), F.array().cast("array<string>").alias("genres"))
    else:
        items = movie_columns(accepted_rows(read.movies, "movieId", "title", "genres"))
    if read.links.present:
        items = items.join(F.broadcast(accepted_rows(read.links, "movieId", "imdbId", "tmdbId")), "movieId", "left")
    else:
        items = items.withColumns({"imdbId": F.lit(None).cast("string"), "tmdbId": F.lit(None).cast("long")})
    return items.join(F.broadcast(item_index), "movieId", "left").select(*schemas.ITEMS.names)


class _StageClock:
    """Seconds per stage of the run, each counted from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._mark = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._mark, 2)
        self._mark = now


@dataclass
class _Indexed:
    """The accepted ratings with their users' and items' dense indices, the counts and the temporal cut-off."""

    accepted: DataFrame
    users: DataFrame
    item_index: DataFrame
    n_users: int
    n_rated_items: int
    n_items: int
    cutoff: int


def _index(read: EtlInputs, config: EtlConfig, persisted: list[DataFrame]) -> _Indexed:
    def keep(df: DataFrame) -> DataFrame:
        persisted.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    accepted = accepted_rows(read.ratings, "userId", "movieId", "rating", "timestamp")
    user_counts = keep(accepted.groupBy("userId").agg(F.count(F.lit(1)).alias("n_interactions")))
    rated_items = keep(accepted.select("movieId").distinct())
    users = keep(user_counts.join(dense_index(user_counts, "userId", "user_idx"), "userId")
                 .select(*schemas.USERS.names))
    item_index = keep(dense_index(rated_items, "movieId", "item_idx"))
    n_users, n_rated_items = user_counts.count(), rated_items.count()
    n_items = read.movies.accepted if read.movies.present else n_rated_items
    cutoff = temporal_cutoff(accepted, config.temporal_quantile, rows=read.ratings.accepted)
    return _Indexed(accepted, users, item_index, n_users, n_rated_items, n_items, cutoff)


def _interactions(indexed: _Indexed, config: EtlConfig) -> DataFrame:
    # accepted is still hash-partitioned by userId: the history window adds no shuffle
    interactions = (add_sequence(indexed.accepted, config.tie_break, config.seed)
                    .join(F.broadcast(indexed.users.select("userId", "user_idx")), "userId")
                    .join(F.broadcast(indexed.item_index), "movieId"))
    return add_temporal_split(interactions, indexed.cutoff).select(*schemas.INTERACTIONS.names)


def _table_rows(read: EtlInputs, indexed: _Indexed) -> dict[str, int]:
    """The rows each table gets (and the rated items), known before any is written."""
    return {"interactions": read.ratings.accepted, "users": indexed.n_users, "items": indexed.n_items,
            "rated_items": indexed.n_rated_items, "tags": read.tags.accepted,
            "rejects": sum(sum(o.rejected.values()) for o in read.present)}


def _check_load(warehouse: Path, read: EtlInputs, indexed: _Indexed, config: EtlConfig) -> None:
    check_load(warehouse, LoadCounts(
        interactions=read.ratings.accepted, users=indexed.n_users, items=indexed.n_items,
        rated_items=indexed.n_rated_items,
        reject_fractions={o.name: reject_fraction(o.input_rows, o.rejected) for o in read.present}),
        config.max_shrink, config.max_reject_fraction)


def _write_tables(spark: SparkSession, warehouse: Path, read: EtlInputs, indexed: _Indexed, interactions: DataFrame,
                  report: list, expected: dict[str, int], stages: _StageClock) -> None:
    tags = (accepted_rows(read.tags, *schemas.TAGS.names) if read.tags.present
            else spark.createDataFrame([], from_arrow_schema(schemas.TAGS)))
    warehouse.mkdir(parents=True, exist_ok=True)
    write_table(interactions, table_path(warehouse, "interactions"), schema=schemas.INTERACTIONS)
    stages.done("write interactions")
    write_table(_build_items(read, indexed.item_index), table_path(warehouse, "items"), schema=schemas.ITEMS)
    write_table(indexed.users, table_path(warehouse, "users"), schema=schemas.USERS)
    write_table(tags, table_path(warehouse, "tags"), schema=schemas.TAGS)
    write_table(build_rejects(read), table_path(warehouse, "rejects"), schema=schemas.REJECTS)
    write_report_table(warehouse, report)
    check_written(warehouse, {name: rows for name, rows in expected.items() if name != "rated_items"})
    stages.done("write the other tables")


def run_etl(spark: SparkSession, data_dir: str | Path, warehouse: str | Path,
            config: EtlConfig | None = None) -> EtlResult:
    """Read, validate and split the input at `data_dir` (any format, recsys_spark.inputs); write every table into
    `warehouse`."""
    started = time.perf_counter()
    config = config or EtlConfig()
    source = config.source(data_dir)  # plain Python: a missing file or column fails before anything is read/written
    warehouse = Path(storage.local_path(str(warehouse)) if storage.scheme(str(warehouse)) == "file" else warehouse)
    persisted: list[DataFrame] = []
    stages = _StageClock()
    try:
        with pinned_file_splits(spark):
            read = read_inputs(spark, source, config)
            persisted += [o.rows for o in (read.movies, read.links, read.tags, read.ratings)]
            stages.done("read and validate")
            indexed = _index(read, config, persisted)
            stages.done("indices and temporal cut-off")
            interactions = _interactions(indexed, config)
            report = report_rows(read.present)
            tables = _table_rows(read, indexed)
            # Before the first commit: a load that must not replace the current one leaves every table as it is.
            _check_load(warehouse, read, indexed, config)
            _write_tables(spark, warehouse, read, indexed, interactions, report, tables, stages)
    except Exception as exc:  # noqa: BLE001 - only Spark's "cannot read this file" becomes a user error
        unreadable = unreadable_input(exc)
        if unreadable is None:
            raise
        raise InputError(f"--data {data_dir}: cannot read {unreadable[0]} ({unreadable[1]})") from None
    finally:
        for df in persisted:
            df.unpersist()

    summary = etl_summary(source, config, read, indexed.cutoff, tables)
    write_summary(warehouse, summary)
    return EtlResult(warehouse, report, summary, time.perf_counter() - started, stages.seconds)
