"""Row checks of the input CSV files in Spark SQL: every physical line of an input file gets a line number, typed
columns and either no reason (accepted so far) or the reason it is refused and the field to blame.

No Python UDFs: the lines stay in the JVM. The first failing check wins, in this order: non_utf8, malformed
(unbalanced quotes or a wrong field count), then each column in the file's column order; unknown_movie and
duplicate are marked afterwards, among the rows that passed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys_spark.inputs import (DIGITS, EVENT_TIME, ID, OPTIONAL_ID, RATING, TEXT, TIMESTAMP, WEIGHT, CheckedInput,
                                 InputColumn)

# One CSV field: quoted (quotes doubled inside) or unquoted (no quote, no comma). Unrolled loops, no alternation
# under a star, so long quoted fields cannot overflow Java's regex stack.
_QUOTED = r'"[^"]*+(?:""[^"]*+)*+"'
_FIELD = rf'(?:{_QUOTED}|[^",]*+)'
WELL_QUOTED_LINE = rf"^{_FIELD}(?:,{_FIELD})*+$"
# A comma followed by an even number of quotes up to the end of the line is outside quotes.
COMMA_OUTSIDE_QUOTES = r',(?=(?:[^"]*+"[^"]*+")*+[^"]*+$)'
DECIMAL = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
DIGITS_ONLY = r"^[0-9]+$"


def numbered_lines(spark: SparkSession, path: Path) -> tuple[DataFrame, int]:
    """(line, value) for every physical line of a text file, line numbers 1-based exactly as in the file.

    monotonically_increasing_id() numbers rows consecutively inside each partition, and every row knows the byte
    offset of the file block it was read from. One cheap pass counts the rows per block; a prefix sum over the blocks
    in file order (a few dozen numbers, on the driver) turns (block, id) into the exact line number of the second
    pass. Both passes must split the file alike: run_etl pins spark.sql.files.minPartitionNum while it reads.
    """
    def scan() -> DataFrame:
        return spark.read.text(str(path)).select(F.input_file_block_start().alias("block"),
                                                 F.monotonically_increasing_id().alias("row_id"), "value")

    blocks = sorted(scan().groupBy("block").agg(F.count(F.lit(1)).alias("rows"),
                                                F.min("row_id").alias("first_row_id")).collect())
    if not blocks:
        return spark.createDataFrame([], "line long, value string"), 0
    shift, lines_before = {}, 0
    for block, rows, first_row_id in blocks:
        shift[block] = lines_before + 1 - first_row_id
        lines_before += rows
    line = F.col("row_id") + long_map(shift)[F.col("block")]
    return scan().select(line.alias("line"), "value"), lines_before


def long_map(values: dict[int, int]) -> Column:
    """A map<bigint, bigint> literal, built as one SQL expression (one call into the JVM, however many entries)."""
    return F.expr("map(" + ", ".join(f"{int(k)}L, {int(v)}L" for k, v in values.items()) + ")")


def unquote(field: Column) -> Column:
    inner = field.substr(F.lit(2), F.length(field) - 2)
    return F.when(field.startswith('"'), F.regexp_replace(inner, '""', '"')).otherwise(field)


def _checks(kind: str, text: Column, value: Column) -> list[tuple[Column, str]]:
    """(failing condition, reason) for one column, in order; `text` is the unquoted field, `value` its typed form."""
    if kind == ID:
        return [(text == "", "missing_id"), (value.isNull(), "non_numeric"), (value <= 0, "non_positive")]
    if kind == OPTIONAL_ID:
        return [((text != "") & value.isNull(), "non_numeric"), (value <= 0, "non_positive")]
    if kind == RATING:
        return [(~text.rlike(DECIMAL) | value.isNull(), "non_numeric"),
                ((value < 0.5) | (value > 5.0), "rating_out_of_range"),
                (F.floor(value * 2) != value * 2, "not_half_star")]
    if kind == WEIGHT:
        return [(~text.rlike(DECIMAL) | value.isNull(), "non_numeric"), (value <= 0, "non_positive")]
    if kind == TIMESTAMP:
        # A number that is no valid epoch second (fractional, zero, negative, too large) is a bad timestamp;
        # something that is no number at all is non_numeric.
        return [(value.isNull() & ~text.rlike(DECIMAL), "non_numeric"),
                (value.isNull() | (value <= 0), "bad_timestamp")]
    if kind == EVENT_TIME:  # a number of etl.columns.timestamp_unit, or a date-time text
        return [(value.isNull() | (value <= 0), "bad_timestamp")]
    if kind == DIGITS:
        return [((text != "") & ~text.rlike(DIGITS_ONLY), "non_numeric")]
    if kind == TEXT:
        return []
    raise ValueError(f"unknown column kind {kind!r}")


def _typed(kind: str, text: Column, time_unit: int = 1) -> Column:
    if kind in (ID, TIMESTAMP):
        return text.try_cast("long")
    if kind == EVENT_TIME:
        number = F.when(text.rlike(DIGITS_ONLY), F.floor(text.try_cast("decimal(38,0)") / F.lit(time_unit)))
        return F.coalesce(number.cast("long"), F.unix_timestamp(F.try_to_timestamp(text)))
    if kind == OPTIONAL_ID:
        return F.when(text != "", text.try_cast("long"))
    if kind in (RATING, WEIGHT):
        return text.try_cast("double")
    if kind == DIGITS:
        return F.when(text != "", text)
    return text


def check_columns(texts: DataFrame, columns: Sequence[InputColumn], keep: Sequence[str],
                  structure: Sequence[tuple[Column, str, str | None]] = (), time_unit: int = 1) -> DataFrame:
    """`texts` has a `<name>_text` column per input column: -> `keep`, one typed column per input column, reason,
    field. `structure` are the line's own checks (encoding, quotes, field count), which come first."""
    typed = texts.select("*", *[_typed(c.kind, F.col(f"{c.name}_text"), time_unit).alias(c.name) for c in columns])
    checks = list(structure)
    for c in columns:
        checks += [(cond, reason, c.name) for cond, reason in _checks(c.kind, F.col(f"{c.name}_text"), F.col(c.name))]
    if not checks:
        return typed.select(*keep, *[c.name for c in columns], F.lit(None).cast("string").alias("reason"),
                            F.lit(None).cast("string").alias("field"))
    first, *rest = checks
    reason, field = F.when(first[0], F.lit(first[1])), F.when(first[0], F.lit(first[2]))
    for cond, why, blame in rest:  # CASE WHEN: the first failing check wins
        reason, field = reason.when(cond, F.lit(why)), field.when(cond, F.lit(blame))
    return typed.select(*keep, *[c.name for c in columns],
                        reason.cast("string").alias("reason"), field.cast("string").alias("field"))


def decoded(value: Column, latin1_fallback: bool) -> Column:
    """A line as text: as read (UTF-8), or, where allowed and it is no valid UTF-8, its bytes read as Latin-1."""
    if not latin1_fallback:
        return value
    return F.when(F.is_valid_utf8(value), value).otherwise(F.decode(value.cast("binary"), "ISO-8859-1"))


def parse_rows(lines: DataFrame, source: CheckedInput, time_unit: int = 1) -> DataFrame:
    """Data lines (header dropped) -> line, raw, one typed column per spec column, reason, field."""
    spec = source.spec
    raw = decoded(F.col("value"), spec.latin1_fallback)
    data = lines.where(F.col("line") >= (2 if spec.header else 1)).select("line", raw.alias("raw"))
    if spec.separator == ",":
        has_quote = F.instr("raw", '"') > 0
        split = F.when(has_quote, F.split("raw", COMMA_OUTSIDE_QUOTES, -1)).otherwise(F.split("raw", ",", -1))
        structure = [((F.instr("raw", '"') > 0) & ~F.col("raw").rlike(WELL_QUOTED_LINE), "malformed", None)]
        field_text = unquote
    else:
        split = F.split(F.trim("raw") if spec.separator == r"\s+" else F.col("raw"), spec.separator, -1)
        structure, field_text = [], (lambda f: f)
    structure = [(~F.is_valid_utf8("raw"), "non_utf8", None), *structure,
                 (F.size("fields") != source.n_fields, "malformed", None)]
    fields = data.select("line", "raw", split.alias("fields"))
    texts = fields.select("line", "raw", "fields", *[field_text(F.get("fields", source.position(c.name)))
                                                     .alias(f"{c.name}_text") for c in spec.columns])
    return check_columns(texts, spec.columns, ["line", "raw"], structure, time_unit)


def mark_unknown_movies(rows: DataFrame, movie_ids: DataFrame) -> DataFrame:
    """Rows that passed so far but name a movieId absent from movies.csv -> unknown_movie (a broadcast join)."""
    known = F.broadcast(movie_ids.select("movieId", F.lit(True).alias("_known")))
    marked = rows.join(known, on="movieId", how="left")
    unknown = F.col("reason").isNull() & F.col("_known").isNull()
    return marked.withColumns({
        "reason": F.when(unknown, F.lit("unknown_movie")).otherwise(F.col("reason")),
        "field": F.when(unknown, F.lit("movieId")).otherwise(F.col("field")),
    }).select(*rows.columns)


def mark_duplicates(rows: DataFrame, key: list[str], latest_first: list[Column],
                    reason: str = "duplicate") -> DataFrame:
    """Among the rows that passed so far, all but the first of each key in `latest_first` order -> `reason`.

    Rows already refused sort after the good ones of their key, so they never displace one.
    """
    order = [F.col("reason").isNotNull(), *latest_first]
    rank = F.row_number().over(Window.partitionBy(*key).orderBy(*order))
    duplicate = F.col("reason").isNull() & (rank > 1)
    return rows.withColumns({
        "reason": F.when(duplicate, F.lit(reason)).otherwise(F.col("reason")),
        "field": F.when(duplicate, F.lit(None).cast("string")).otherwise(F.col("field")),
    })


def rejects_of(rows: DataFrame, file_name: str) -> DataFrame:
    """The refused rows in the `rejects` table's shape; invalid UTF-8 in the raw line becomes U+FFFD. Rows read
    from a table of many files name their own (`file` column)."""
    file = F.col("file") if "file" in rows.columns else F.lit(file_name)
    return rows.where(F.col("reason").isNotNull()).select(
        file.alias("file"), F.col("line").cast("long").alias("line"),
        F.make_valid_utf8("raw").alias("raw"), "reason", "field")
