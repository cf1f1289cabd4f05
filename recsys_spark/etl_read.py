"""The ETL's read: every input file numbered, parsed, validated and marked (duplicates, unknown movies, the
k-core), persisted and counted; a row's `reason` is null where it is accepted (recsys_spark.sources does the
parsing)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_core import storage
from recsys_spark.etl_config import EtlConfig
from recsys_spark.inputs import MOVIELENS_LAYOUTS, CheckedInput, Source
from recsys_spark.kcore import kcore_keep, mark_kcore
from recsys_spark.row_checks import mark_duplicates, mark_unknown_movies
from recsys_spark.sources import FileOutcome, interaction_rows, movie_rows, persist_and_count, validated


@dataclass
class EtlInputs:
    movies: FileOutcome
    links: FileOutcome
    tags: FileOutcome
    ratings: FileOutcome
    kcore: dict  # settings and outcome of the k-core filter

    @property
    def present(self) -> list[FileOutcome]:
        return [o for o in (self.ratings, self.movies, self.tags, self.links) if o.present]


def read_inputs(spark: SparkSession, source: Source, config: EtlConfig) -> EtlInputs:
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
    return EtlInputs(movies, links, tags, ratings, kcore)


def accepted_rows(outcome: FileOutcome, *columns: str) -> DataFrame:
    return outcome.rows.where(F.col("reason").isNull()).select(*columns)


def _latest_line_first() -> list:
    return [F.col("line").desc()]


def _read_movies(spark, source: CheckedInput, item_columns: dict[str, str], separator: str) -> FileOutcome:
    rows, n = movie_rows(spark, source, item_columns, separator)
    latest = [F.col("order").desc()] if "order" in rows.columns else _latest_line_first()  # a Parquet item table
    rows = mark_duplicates(rows, ["movieId"], latest)
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


def _name(source: Source, role: str) -> str:
    """An absent file's name in the report: MovieLens' own (tags.csv), else the role."""
    layout = MOVIELENS_LAYOUTS.get(source.layout, {}) if source.format == "movielens" else {}
    return layout[role].name if role in layout else role


READ_FAILURES = ("FAILED_READ_FILE", "CANNOT_READ_FILE_FOOTER")  # Spark's conditions for a file it cannot read


def unreadable_input(exc: BaseException) -> tuple[str, str] | None:
    """(file, the reader's reason) when `exc` is Spark failing to read one input file (a corrupt Parquet page or
    footer, a truncated file), found in its chain of Java causes; None for any other error."""
    # py4j's own error (some actions, collect among them, raise it unconverted) or pyspark's converted one
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    for _ in range(20):  # a cause chain is short; a cycle must not loop
        if java is None:
            return None
        try:
            condition = java.getCondition()
        except Exception:  # noqa: BLE001 - py4j's error: the Java object is no SparkThrowable
            condition = None
        if condition and condition.startswith(READ_FAILURES):
            params = dict(java.getMessageParameters())
            path = params.get("path") or params.get("file") or "an input file"
            cause = java.getCause()
            reason = str(cause.getMessage() if cause is not None else java.getMessage())
            return storage.local_path(path), reason.strip().splitlines()[0]
        java = java.getCause()
    return None
