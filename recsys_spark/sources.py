"""Each input format read into the ETL's rows (recsys_spark.inputs says what the formats are).

Whatever the format, the interactions come out as one frame with a row per input row: `line` (the line in a text
file, the row in a Parquet file, 1-based), `raw` (the line, or the row as JSON), userId, movieId, rating, timestamp,
`reason` (null: accepted so far) and `field`, plus `file` where a table spans many files. An items file, when the
format has one, comes out the same way. The ETL (recsys_spark.etl) takes it from there: duplicates, k-core,
indices, splits, the tables.

Implicit data: no rating means weight 1 (`rating` holds the weight). No timestamp means the file's order:
`timestamp` then holds an order key (a text file's line * 2^24 + position in the line; a table's file number *
2^40 + row) and etl_report.json says
`"time": "order"`, so no step reads it as seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.inputs import (EVENT_TIME, GENRE_FLAG, ID, ML100K_GENRES, ORDER_STRIDE, RATING, REJECT_REASONS,
                                 TEXT, TIME_UNITS, WEIGHT, CheckedInput, InputColumn, Source)
from recsys_spark.row_checks import check_columns, numbered_lines, parse_rows

RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")
TABLE_FILE_STRIDE = 1 << 40  # a table's order key without timestamps: file number * 2^40 + row in the file


class EtlIdentityError(RuntimeError):
    """input rows != accepted + rejected for a file: a bug in the ETL, never the input's fault."""


@dataclass
class FileOutcome:
    """One input file after validation: its rows (persisted; `reason` null = accepted) and its counts."""

    name: str
    rows: DataFrame
    input_rows: int
    counts: dict[str | None, int] = field(default_factory=dict)  # reason (None = accepted) -> rows
    present: bool = True                                          # False: an optional file that is absent

    @property
    def accepted(self) -> int:
        return self.counts.get(None, 0)

    @property
    def rejected(self) -> dict[str, int]:
        return {r: self.counts[r] for r in REJECT_REASONS if self.counts.get(r)}


def persist_and_count(outcome: FileOutcome) -> FileOutcome:
    """Materialise the rows and count them per reason; a row without a line number means the two reads of the
    file were split differently, which would silently misnumber rows: refuse."""
    outcome.rows = outcome.rows.persist(StorageLevel.MEMORY_AND_DISK)
    stats = (outcome.rows.groupBy("reason")
             .agg(F.count(F.lit(1)).alias("rows"), F.count_if(F.col("line").isNull()).alias("unnumbered"))
             .collect())
    if any(r["unnumbered"] for r in stats):
        raise EtlIdentityError(f"{outcome.name}: rows without a line number (the file was split differently "
                               f"between the counting and the reading pass)")
    outcome.counts = {r["reason"]: r["rows"] for r in stats}
    total = sum(outcome.counts.values())
    if total != outcome.input_rows:
        raise EtlIdentityError(f"{outcome.name}: {outcome.input_rows} input rows but {outcome.accepted} accepted + "
                               f"{total - outcome.accepted} rejected")
    return outcome


def validated(spark: SparkSession, source: CheckedInput, time_unit: int = 1) -> tuple[DataFrame, int]:
    lines, n_lines = numbered_lines(spark, source.path)
    return parse_rows(lines, source, time_unit), max(n_lines - (1 if source.spec.header else 0), 0)


def movie_rows(spark: SparkSession, source: CheckedInput, item_columns: dict[str, str] | None = None,
               separator: str = "|") -> tuple[DataFrame, int]:
    """An items file's rows (movieId, title, genres as MovieLens writes them: pipe-separated): MovieLens' own, u.item
    (its genre flags become the names), or an events log's item table (`item_columns`: role -> its column; no title
    means the id, no genres means none)."""
    if source.layout == "parquet":  # an events log's item table in Parquet
        rows, n = table_rows(spark, source.path, "parquet", item_columns, ITEM_KINDS)
    else:
        rows, n = validated(spark, source)
    if item_columns:
        title = F.col(item_columns["title"]) if "title" in item_columns else F.col(item_columns["movieId"]).cast("string")
        genres = F.col(item_columns["genres"]) if "genres" in item_columns else F.lit("")
        if separator != "|":
            genres = F.regexp_replace(genres, r"\s*\Q" + separator + r"\E\s*", "|")
        rows = rows.select(*_where_from(rows), F.col(item_columns["movieId"]).alias("movieId"),
                           title.alias("title"), F.coalesce(genres, F.lit("")).alias("genres"), "reason", "field")
    if any(c.name.startswith(GENRE_FLAG) for c in source.spec.columns):
        names = F.array(*[F.when(F.col(f"{GENRE_FLAG}{i}") == "1", F.lit(name))
                          for i, name in enumerate(ML100K_GENRES) if i])  # flag 0 is "unknown"
        rows = rows.withColumn("genres", F.array_join(F.filter(names, lambda g: g.isNotNull()), "|"))
    return rows.select(*_where_from(rows), "movieId", "title", "genres", "reason", "field"), n


def _where_from(rows: DataFrame) -> list[str]:
    """The columns that place a row in its input: line and raw, and file and order for a table of many files."""
    return [c for c in ("file", "line", "raw", "order") if c in rows.columns]


def interaction_rows(spark: SparkSession, source: Source, weights: dict[str, float],
                     time_unit: str = "s") -> tuple[DataFrame, int]:
    """The interactions of any format: (rows as in the module docstring, input rows)."""
    if source.format == "movielens":
        return validated(spark, source.files["ratings"])
    if source.format == "sequences":
        reader = _sequence_lines if source.layout == "lines" else _sequence_pairs
        return reader(spark, source.files["ratings"])
    if source.layout == "csv":
        rows, n = validated(spark, source.files["ratings"], TIME_UNITS[time_unit])
        rows, keep = rows.withColumn("order", F.col("line") * F.lit(ORDER_STRIDE)), ["line", "raw"]
    else:
        rows, n = _table_rows(spark, source, TIME_UNITS[time_unit])
        keep = ["file", "line", "raw"]
    return _as_interactions(rows, source.columns, weights, keep), n


def _as_interactions(rows: DataFrame, columns: dict[str, str], weights: dict[str, float],
                     keep: list[str]) -> DataFrame:
    """Events rows under the user's column names -> the interaction columns; rating from the rating or weight
    column, the event's weight, or 1; timestamp from its column or the order key."""
    if "event" in columns:
        event = F.col(columns["event"])
        weight = F.element_at(F.create_map(*[F.lit(x) for kv in weights.items() for x in kv]), event)
        unknown = F.col("reason").isNull() & weight.isNull()
        rows = rows.withColumns({"reason": F.when(unknown, F.lit("unknown_event")).otherwise(F.col("reason")),
                                 "field": F.when(unknown, F.lit(columns["event"])).otherwise(F.col("field"))})
        rating = weight.cast("double")
    elif "rating" in columns or "weight" in columns:
        rating = F.col(columns.get("rating") or columns["weight"]).cast("double")
    else:
        rating = F.lit(1.0)
    timestamp = F.col(columns["timestamp"]) if "timestamp" in columns else F.col("order")
    return rows.select(*keep, F.col(columns["userId"]).alias("userId"), F.col(columns["movieId"]).alias("movieId"),
                       rating.alias("rating"), timestamp.cast("long").alias("timestamp"), "reason", "field")


EVENT_KINDS = {"userId": ID, "movieId": ID, "timestamp": EVENT_TIME, "rating": RATING, "weight": WEIGHT,
               "event": TEXT}
ITEM_KINDS = {"movieId": ID, "title": TEXT, "genres": TEXT}


def _table_rows(spark: SparkSession, source: Source, time_unit: int) -> tuple[DataFrame, int]:
    """The events log as a table (Parquet or Delta)."""
    return table_rows(spark, source.path, source.layout, source.columns, EVENT_KINDS, time_unit)


def table_rows(spark: SparkSession, path, layout: str, columns_of: dict[str, str], kinds: dict[str, str],
               time_unit: int = 1) -> tuple[DataFrame, int]:
    """A Parquet file or folder, or a Delta table (`layout`): each mapped column (role -> column) as text (a
    timestamp column as epoch seconds), checked as a CSV field would be; `file` and `line` (the row within that
    Parquet file) name each row, `order` is the table's own order (files by path, rows within each)."""
    from recsys_spark.delta import read_table

    frame = (read_table(spark, str(path)) if layout == "delta" else
             spark.read.option("recursiveFileLookup", "true").parquet(str(path)))
    types = {f.name: f.dataType for f in frame.schema.fields}
    texts = []
    for role, column in columns_of.items():
        value = F.col(column)
        if isinstance(types[column], (T.TimestampType, T.TimestampNTZType, T.DateType)):
            value = F.unix_timestamp(value.cast("timestamp")) * F.lit(time_unit)
        texts.append(F.coalesce(value.cast("string"), F.lit("")).alias(f"{column}_text"))
    raw = F.to_json(F.struct(*[F.col(c) for c in columns_of.values()]))
    # Without timestamps the order is the files' (by path), then the rows' within each file.
    paths = sorted(r[0] for r in frame.select(F.col("_metadata.file_path")).distinct().collect())
    file_number = F.create_map(*[F.lit(x) for i, path in enumerate(paths) for x in (path, i)])
    order = file_number[F.col("_metadata.file_path")].cast("long") * F.lit(TABLE_FILE_STRIDE) + \
        F.col("_metadata.row_index")
    rows = frame.select(F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1).alias("file"),
                        (F.col("_metadata.row_index") + 1).alias("line"), raw.alias("raw"), order.alias("order"),
                        *texts)
    columns = [InputColumn(column, kinds[role]) for role, column in columns_of.items()]
    return check_columns(rows, columns, ["file", "line", "raw", "order"], time_unit=time_unit), frame.count()


def _sequence_lines(spark: SparkSession, source: CheckedInput) -> tuple[DataFrame, int]:
    """`user item item ...`: a row per item, in the line's order; a line without items is one malformed row."""
    lines, _ = numbered_lines(spark, source.path)
    tokens = lines.select("line", F.col("value").alias("raw"),
                          F.split(F.trim("value"), r"\s+", -1).alias("tokens"))
    n = tokens.agg(F.sum(F.greatest(F.size("tokens") - 1, F.lit(1)))).first()[0] or 0
    items = F.when(F.size("tokens") >= 2, F.slice("tokens", 2, F.size("tokens") - 1)).otherwise(F.array(F.lit("")))
    exploded = tokens.select("line", "raw", F.get("tokens", 0).alias("userId_text"), "tokens",
                             F.posexplode(items).alias("pos", "movieId_text"))
    order = F.col("line") * F.lit(ORDER_STRIDE) + F.col("pos") + 1
    structure = [(~F.is_valid_utf8("raw"), "non_utf8", None), (F.size("tokens") < 2, "malformed", None)]
    rows = check_columns(exploded.withColumn("timestamp", order), source.spec.columns, ["line", "raw", "timestamp"],
                         structure)
    return rows.select("line", "raw", "userId", "movieId", F.lit(1.0).alias("rating"), "timestamp", "reason",
                       "field"), int(n)


def _sequence_pairs(spark: SparkSession, source: CheckedInput) -> tuple[DataFrame, int]:
    """`user item` per line, each user's lines in time order: the line number is the order key."""
    rows, n = validated(spark, source)
    return rows.select("line", "raw", "userId", "movieId", F.lit(1.0).alias("rating"),
                       (F.col("line") * F.lit(ORDER_STRIDE)).alias("timestamp"), "reason", "field"), n
