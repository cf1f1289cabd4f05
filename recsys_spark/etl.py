"""The ETL: raw MovieLens CSVs -> interactions, items, users, tags, rejects, etl_report (Delta; docs/SCHEMAS.md).

Every input row ends in exactly one place: an output table or `rejects` (with its line, raw text, reason and
field); per file, input = accepted + rejected is asserted before anything is written, and again against the
written tables. Over an existing load the new one is first compared with it (recsys_spark.etl_guard), and refused
before the first commit when it shrinks or rejects too much.

Plan for ratings.csv (the big file): a cheap line-count pass, then one pass that numbers, parses and validates the
lines, marks unknown movies (broadcast join), shuffles once by userId, and marks duplicates within that
partitioning; the result is persisted (MEMORY_AND_DISK, raw text kept only on refused rows) and feeds the counts,
the dense indices, the temporal cut-off and, without another shuffle, the per-user history window of `seq`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from recsys_core import storage
from recsys_core.errors import ConfigError
from recsys_core.config import NON_NEGATIVE, POSITIVE, Config, checked, number_in, one_of
from recsys_spark.delta import table_path, table_rows, write_arrow, write_table
from recsys_spark.etl_guard import LoadCounts, check_load, reject_fraction
from recsys_spark import schemas
from recsys_spark.inputs import (FORMATS, MOVIELENS_LAYOUTS, SEQUENCE_LAYOUTS, CheckedInput, ColumnsConfig,
                                 ItemsConfig, Source, check_source)
from recsys_spark.splits import TIE_BREAKS, add_sequence, add_temporal_split, temporal_cutoff
from recsys_spark.row_checks import long_map, mark_duplicates, mark_unknown_movies, rejects_of
from recsys_spark.sources import (EtlIdentityError, FileOutcome, interaction_rows, movie_rows,  # noqa: F401
                                  persist_and_count, validated)

NO_GENRES = "(no genres listed)"
# "Title (1995)", "Title (2006–2007)", "Title (2007-)", trailing spaces allowed.
TITLE_YEAR = r"^(.*?)\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$"
REPORT_FILE = "etl_report.json"


@dataclass(frozen=True)
class KcoreConfig(Config):
    section = "etl.kcore"

    min_user_interactions: int = checked(0, NON_NEGATIVE)   # 0 = off
    min_item_interactions: int = checked(0, NON_NEGATIVE)   # 0 = off
    max_iterations: int = checked(30, POSITIVE)

    @property
    def enabled(self) -> bool:
        return self.min_user_interactions > 0 or self.min_item_interactions > 0


@dataclass(frozen=True)
class EtlConfig(Config):
    section = "etl"

    format: str = checked("auto", one_of(*FORMATS))  # of --data (recsys_spark/inputs.py); auto: detected
    sequence_layout: str = checked("auto", one_of(*SEQUENCE_LAYOUTS))  # sequences: lines | pairs
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)  # events: the log's column names
    event_weights: dict[str, float] = field(default_factory=dict)  # events: etl.columns.event's weight per type
    items: ItemsConfig = field(default_factory=ItemsConfig)  # events: an optional item table (titles, genres)
    tie_break: str = checked("hash", one_of(*TIE_BREAKS))  # order of a user's ratings given in the same second
    seed: int = 42                   # seeds the hash tie-break
    # global temporal split: train up to this quantile of timestamps
    temporal_quantile: float = checked(0.8, number_in(0, 1, low_open=True))
    kcore: KcoreConfig = field(default_factory=KcoreConfig)
    # refuse a load with fewer ratings/users/movies than this share below the last
    max_shrink: float = checked(0.2, number_in(0, 1))
    # refuse a load (over an existing one) rejecting more of a file's rows
    max_reject_fraction: float = checked(0.05, number_in(0, 1))

    def validate(self) -> None:
        for event, weight in self.event_weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise ConfigError(f"etl.event_weights.{event} must be a number > 0, got {weight!r}")

    def source(self, data: str | Path) -> Source:
        """`--data` checked for this config's format, before Spark starts."""
        return check_source(data, self.format, self.sequence_layout, self.columns, self.event_weights, self.items)


@dataclass
class EtlResult:
    warehouse: Path
    report: list[tuple[str, str, str | None, int]]  # (file, category, reason, rows), as in etl_report
    summary: dict                                    # what etl_report.json holds
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


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


def _latest_line_first() -> list:
    return [F.col("line").desc()]


def kcore_keep(pairs: DataFrame, config: KcoreConfig) -> tuple[DataFrame, DataFrame, int, bool]:
    """Users and items of the k-core of (userId, movieId) pairs: drop users with fewer than min_user and items with
    fewer than min_item interactions, repeatedly, until nothing changes or max_iterations.

    Counts only fall, so a dropped row's user or item never returns: the kept rows are exactly those whose user and
    item are both in the returned sets (also when stopped early).
    """
    current = pairs.select("userId", "movieId").persist(StorageLevel.MEMORY_AND_DISK)
    rows, iterations, converged = current.count(), 0, False
    while iterations < config.max_iterations:
        iterations += 1
        users = (current.groupBy("userId").count().where(F.col("count") >= config.min_user_interactions)
                 .select("userId"))
        items = (current.groupBy("movieId").count().where(F.col("count") >= config.min_item_interactions)
                 .select("movieId"))
        kept = (current.join(F.broadcast(users), "userId", "left_semi")
                .join(F.broadcast(items), "movieId", "left_semi").persist(StorageLevel.MEMORY_AND_DISK))
        kept_rows = kept.count()
        current.unpersist()
        current = kept
        if kept_rows == rows:
            converged = True
            break
        rows = kept_rows
    users = current.select("userId").distinct().persist()
    items = current.select("movieId").distinct().persist()
    users.count(), items.count()
    current.unpersist()
    return users, items, iterations, converged


def mark_kcore(rows: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    marked = (rows.join(F.broadcast(users.withColumn("_user_kept", F.lit(True))), "userId", "left")
              .join(F.broadcast(items.withColumn("_item_kept", F.lit(True))), "movieId", "left"))
    dropped = F.col("reason").isNull() & (F.col("_user_kept").isNull() | F.col("_item_kept").isNull())
    return marked.withColumns({
        "reason": F.when(dropped, F.lit("k-core")).otherwise(F.col("reason")),
        "field": F.when(dropped, F.lit(None).cast("string")).otherwise(F.col("field")),
    }).select(*rows.columns)


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


def _read_movies(spark, source: CheckedInput, item_columns: dict[str, str], separator: str) -> FileOutcome:
    rows, n = movie_rows(spark, source, item_columns, separator)
    rows = mark_duplicates(rows, ["movieId"], _latest_line_first())
    return persist_and_count(FileOutcome(source.spec.name, rows, n))


def _read_links(spark, source: CheckedInput, movie_ids: DataFrame) -> FileOutcome:
    rows, n = validated(spark, source)
    rows = mark_duplicates(mark_unknown_movies(rows, movie_ids), ["movieId"], _latest_line_first())
    return persist_and_count(FileOutcome(source.spec.name, rows, n))


def _read_tags(spark, source: CheckedInput, movie_ids: DataFrame) -> FileOutcome:
    rows, n = validated(spark, source)
    return persist_and_count(FileOutcome(source.spec.name, mark_unknown_movies(rows, movie_ids), n))


def _keep_first(source: Source) -> tuple[list, str]:
    """Which of a (user, item)'s rows is kept, and the reason the others get. A rating: the latest (same second:
    the later line), the others are `duplicate`s (bad input). An event log's repeats are normal, not bad input:
    the strongest event, then the latest, is kept and the others are `repeat`s (set aside, like the k-core's)."""
    latest = [F.col("timestamp").desc(), F.col("line").desc()]
    if source.format == "movielens":
        return latest, "duplicate"
    return [F.col("rating").desc(), *latest], "repeat"


def _read_ratings(spark, source: Source, movie_ids: DataFrame | None,
                  config: EtlConfig) -> tuple[FileOutcome, dict]:
    rows, n = interaction_rows(spark, source, config.event_weights, config.columns.timestamp_unit)
    if movie_ids is not None:
        rows = mark_unknown_movies(rows, movie_ids)
    rows = rows.repartition("userId")
    # Partitioned by userId, this window (by userId, movieId) and the later history window (by userId) need no
    # further shuffle.
    order, reason = _keep_first(source)
    rows = mark_duplicates(rows, ["userId", "movieId"], order, reason)
    kcore = {**dataclasses.asdict(config.kcore), "iterations": 0, "converged": True}
    staged = None
    if config.kcore.enabled:
        staged = rows.persist(StorageLevel.MEMORY_AND_DISK)
        users, items, iterations, converged = kcore_keep(staged.where(F.col("reason").isNull()), config.kcore)
        rows = mark_kcore(staged, users, items)
        kcore.update(iterations=iterations, converged=converged)
    rows = rows.withColumn("raw", F.when(F.col("reason").isNotNull(), F.col("raw")))  # raw text of rejects only
    outcome = persist_and_count(FileOutcome(source.files["ratings"].spec.name if "ratings" in source.files else
                                            source.path.name,
                                            rows, n))
    if staged is not None:
        staged.unpersist()
    return outcome, kcore


def _absent(spark, name: str) -> FileOutcome:
    return FileOutcome(name, spark.createDataFrame([], "line long, raw string, reason string, field string"), 0,
                       present=False)


def _report_rows(outcomes: list[FileOutcome]) -> list[tuple[str, str, str | None, int]]:
    rows = []
    for o in outcomes:
        rows += [(o.name, "input", None, o.input_rows), (o.name, "accepted", None, o.accepted)]
        rejected = o.rejected
        rows += [(o.name, "rejected", reason, count) for reason, count in rejected.items()] or \
            [(o.name, "rejected", None, 0)]
    return rows


def _check_written(warehouse: Path, expected: dict[str, int]) -> None:
    for name, rows in expected.items():
        written = table_rows(table_path(warehouse, name))
        if written != rows:
            raise EtlIdentityError(f"{name}: wrote {written} rows, expected {rows}")


@dataclass
class _Inputs:
    movies: FileOutcome
    links: FileOutcome
    tags: FileOutcome
    ratings: FileOutcome
    kcore: dict  # settings and outcome of the k-core filter

    @property
    def present(self) -> list[FileOutcome]:
        return [o for o in (self.ratings, self.movies, self.tags, self.links) if o.present]


def _name(source: Source, role: str) -> str:
    """An absent file's name in the report: MovieLens' own (tags.csv), else the role."""
    layout = MOVIELENS_LAYOUTS.get(source.layout, {}) if source.format == "movielens" else {}
    return layout[role].name if role in layout else role


def _read_inputs(spark: SparkSession, source: Source, config: EtlConfig) -> _Inputs:
    files = source.files
    if "movies" in files:
        movies = _read_movies(spark, files["movies"], source.item_columns, source.genre_separator)
        movie_ids = movies.rows.where(F.col("reason").isNull()).select("movieId")
    else:  # no item file: the items are those the interactions name
        movies, movie_ids = _absent(spark, _name(source, "movies")), None
    links = (_read_links(spark, files["links"], movie_ids) if "links" in files else
             _absent(spark, _name(source, "links")))
    tags = _read_tags(spark, files["tags"], movie_ids) if "tags" in files else _absent(spark, _name(source, "tags"))
    ratings, kcore = _read_ratings(spark, source, movie_ids, config)
    return _Inputs(movies, links, tags, ratings, kcore)


def _accepted(outcome: FileOutcome, *columns: str) -> DataFrame:
    return outcome.rows.where(F.col("reason").isNull()).select(*columns)


def _build_items(read: _Inputs, item_index: DataFrame) -> DataFrame:
    if not read.movies.present:  # no item file: each item's id is its title, no genres
        items = item_index.select("movieId", F.col("movieId").cast("string").alias("title"),
                                  F.lit(None).cast("int").alias("year"), F.array().cast("array<string>").alias("genres"))
    else:
        items = movie_columns(_accepted(read.movies, "movieId", "title", "genres"))
    if read.links.present:
        items = items.join(F.broadcast(_accepted(read.links, "movieId", "imdbId", "tmdbId")), "movieId", "left")
    else:
        items = items.withColumns({"imdbId": F.lit(None).cast("string"), "tmdbId": F.lit(None).cast("long")})
    return items.join(F.broadcast(item_index), "movieId", "left").select(*schemas.ITEMS.names)


def _build_rejects(read: _Inputs) -> DataFrame:
    rejects = rejects_of(read.ratings.rows, read.ratings.name)
    for other in (read.movies, read.tags, read.links):
        if other.present:
            rejects = rejects.unionByName(rejects_of(other.rows, other.name))
    return rejects.select(*schemas.REJECTS.names)


def run_etl(spark: SparkSession, data_dir: str | Path, warehouse: str | Path,
            config: EtlConfig | None = None) -> EtlResult:
    """Read, validate and split the input at `data_dir` (any format, recsys_spark.inputs); write every table into
    `warehouse`."""
    started = time.perf_counter()
    config = config or EtlConfig()
    source = config.source(data_dir)  # plain Python: a missing file or column fails before anything is read/written
    warehouse = Path(storage.local_path(str(warehouse)) if storage.scheme(str(warehouse)) == "file" else warehouse)
    persisted: list[DataFrame] = []
    stages: dict[str, float] = {}
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = round(now - mark, 2)
        mark = now

    def keep(df: DataFrame) -> DataFrame:
        persisted.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    try:
        with pinned_file_splits(spark):
            read = _read_inputs(spark, source, config)
            persisted += [o.rows for o in (read.movies, read.links, read.tags, read.ratings)]
            stage("read and validate")
            accepted = _accepted(read.ratings, "userId", "movieId", "rating", "timestamp")

            user_counts = keep(accepted.groupBy("userId").agg(F.count(F.lit(1)).alias("n_interactions")))
            rated_items = keep(accepted.select("movieId").distinct())
            users = keep(user_counts.join(dense_index(user_counts, "userId", "user_idx"), "userId")
                         .select(*schemas.USERS.names))
            item_index = keep(dense_index(rated_items, "movieId", "item_idx"))
            n_users, n_rated_items = user_counts.count(), rated_items.count()
            n_items = read.movies.accepted if read.movies.present else n_rated_items
            cutoff = temporal_cutoff(accepted, config.temporal_quantile, rows=read.ratings.accepted)
            stage("indices and temporal cut-off")

            # accepted is still hash-partitioned by userId: the history window adds no shuffle
            interactions = (add_sequence(accepted, config.tie_break, config.seed)
                            .join(F.broadcast(users.select("userId", "user_idx")), "userId")
                            .join(F.broadcast(item_index), "movieId"))
            interactions = add_temporal_split(interactions, cutoff).select(*schemas.INTERACTIONS.names)
            tags = (_accepted(read.tags, *schemas.TAGS.names) if read.tags.present
                    else spark.createDataFrame([], from_arrow_schema(schemas.TAGS)))
            report = _report_rows(read.present)
            n_rejects = sum(sum(o.rejected.values()) for o in read.present)
            # Before the first commit: a load that must not replace the current one leaves every table as it is.
            check_load(warehouse, LoadCounts(
                interactions=read.ratings.accepted, users=n_users, items=n_items,
                rated_items=n_rated_items,
                reject_fractions={o.name: reject_fraction(o.input_rows, o.rejected) for o in read.present}),
                config.max_shrink, config.max_reject_fraction)

            warehouse.mkdir(parents=True, exist_ok=True)
            write_table(interactions, table_path(warehouse, "interactions"), schema=schemas.INTERACTIONS)
            stage("write interactions")
            write_table(_build_items(read, item_index), table_path(warehouse, "items"), schema=schemas.ITEMS)
            write_table(users, table_path(warehouse, "users"), schema=schemas.USERS)
            write_table(tags, table_path(warehouse, "tags"), schema=schemas.TAGS)
            write_table(_build_rejects(read), table_path(warehouse, "rejects"), schema=schemas.REJECTS)
            report_rows = [dict(zip(schemas.ETL_REPORT.names, r)) for r in report]
            write_arrow(pa.Table.from_pylist(report_rows, schemas.ETL_REPORT), table_path(warehouse, "etl_report"))
            _check_written(warehouse, {"interactions": read.ratings.accepted, "items": n_items,
                                       "users": n_users, "tags": read.tags.accepted, "rejects": n_rejects})
            stage("write the other tables")
    finally:
        for df in persisted:
            df.unpersist()

    summary = {
        "schema_version": 1,
        "data": str(source.path),
        "format": source.format,
        "layout": source.layout,
        "time": "seconds" if source.time_known else "order",  # order: timestamp is the order key (sources.py)
        "explicit": source.explicit,  # ratings on a scale; false: implicit weights
        "genres": source.genres,
        "tie_break": config.tie_break,
        "seed": config.seed,
        "temporal": {"quantile": config.temporal_quantile, "cutoff_timestamp": cutoff},
        "kcore": read.kcore,
        "files": {o.name: {"input": o.input_rows, "accepted": o.accepted, "rejected": sum(o.rejected.values()),
                           "rejected_by_reason": o.rejected} for o in read.present},
        "files_missing": [o.name for o in (read.movies, read.tags, read.links) if not o.present],
        "tables": {"interactions": read.ratings.accepted, "users": n_users, "items": n_items,
                   "rated_items": n_rated_items, "tags": read.tags.accepted, "rejects": n_rejects},
    }
    (warehouse / REPORT_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return EtlResult(warehouse, report, summary, time.perf_counter() - started, stages)


def print_report(result: EtlResult, console=None) -> None:
    """The etl_report table, as a rich table, and the settings that shaped the splits."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"ETL report ({result.warehouse})")
    for name, justify in (("file", "left"), ("category", "left"), ("reason", "left"), ("rows", "right")):
        table.add_column(name, justify=justify)
    for file, category, reason, rows in result.report:
        table.add_row(file, category, reason or "", f"{rows:,}")
    console.print(table)
    s = result.summary
    k = s["kcore"]
    kcore = ("off" if not (k["min_user_interactions"] or k["min_item_interactions"]) else
             f"users >= {k['min_user_interactions']}, items >= {k['min_item_interactions']}, "
             f"{k['iterations']} iterations{'' if k['converged'] else ' (not converged)'}")
    console.print(f"tie_break={s['tie_break']} seed={s['seed']} temporal cut-off={s['temporal']['cutoff_timestamp']} "
                  f"(quantile {s['temporal']['quantile']}) k-core: {kcore}")
    t = s["tables"]
    console.print(f"{t['interactions']:,} interactions, {t['users']:,} users, {t['rated_items']:,} rated of "
                  f"{t['items']:,} movies, {t['tags']:,} tags, {t['rejects']:,} rejects in {result.seconds:.1f}s "
                  f"({', '.join(f'{k} {v:.1f}s' for k, v in result.stage_seconds.items())})")
