"""The one `recommendations` table every model writes to, and what every top-N shares (seen-item exclusion, ranking)."""
from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_core.ties import Ties
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.schemas import RECOMMENDATIONS

TABLE = "recommendations"
VALIDATION_TABLE = "recommendations_validation"  # the same lists made one step earlier (see as_of_validation)
LIST_SPLITS = ("test", "validation")  # every list-writing step writes both
PARTITION_BY = ["model", "run_date"]
HISTORY_SPLITS = ("train", "validation")  # what a user "has seen" when the list is evaluated on `test`


def list_table(split: str) -> str:
    """Where a model's lists for `split` go: `recommendations` (test) or `recommendations_validation`."""
    if split not in LIST_SPLITS:
        raise ValueError(f"lists are made for {LIST_SPLITS}, not {split!r}")
    return TABLE if split == "test" else VALIDATION_TABLE


def as_of_validation(interactions: DataFrame) -> DataFrame:
    """The interactions as they stood when each user's validation item was next: test rows dropped, the
    validation row relabelled `test`. A list made from this view sees train items only (history and seen items)
    and is evaluated against the validation item; it is what a learned blend or a tuner may choose on, because it
    never touches a test item."""
    return (interactions.where(F.col("split") != "test")
            .withColumn("split", F.when(F.col("split") == "validation", F.lit("test")).otherwise(F.col("split"))))


def new_run_id() -> str:
    return uuid.uuid4().hex


def seen_pairs(interactions: DataFrame) -> DataFrame:
    """(user_idx, item_idx) of everything before each user's test item: excluded from every top-N."""
    return interactions.where(F.col("split").isin(*HISTORY_SPLITS)).select("user_idx", "item_idx")


def top_k(scores: DataFrame, k: int, ties: Ties, user_col: str = "user_idx", item_col: str = "item_idx",
          score_col: str = "score") -> DataFrame:
    """Keep each user's k best-scored rows, ranked 1..k; equal scores in the tie key's order (recsys_core.ties)."""
    window = Window.partitionBy(user_col).orderBy(F.col(score_col).desc(), ties.column(user_col, item_col).asc())
    return (scores.withColumn("rank", F.row_number().over(window))
            .where(F.col("rank") <= k))


def write_recommendations(
    recs: DataFrame,
    warehouse: str | Path,
    model: str,
    run_date: dt.date,
    run_id: str,
    items: DataFrame,
    users: DataFrame,
    table: str = TABLE,
) -> str:
    """Map dense indices back to MovieLens ids and replace the (model, run_date) partition in one commit.

    `recs` has user_idx, item_idx, rank, score; `table`: recommendations or recommendations_validation.
    """
    out = (recs.join(F.broadcast(items.select("item_idx", "movieId")), "item_idx")
           .join(users.select("user_idx", "userId"), "user_idx")
           .select(F.lit(model).alias("model"), F.lit(run_id).alias("run_id"),
                   F.lit(run_date).cast("date").alias("run_date"),
                   F.col("userId").cast("long"), F.col("rank").cast("int"),
                   F.col("movieId").cast("long"), F.col("score").cast("double")))
    path = table_path(warehouse, table)
    write_table(out, path, partition_by=PARTITION_BY, replace={"model": model, "run_date": run_date},
                schema=RECOMMENDATIONS)
    return path


def read_recommendations(spark, warehouse: str | Path, model: str | None = None, table: str = TABLE) -> DataFrame:
    df = read_table(spark, table_path(warehouse, table))
    return df.where(F.col("model") == model) if model else df
