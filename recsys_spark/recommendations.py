"""The one `recommendations` table every model writes to, and what every top-N shares (seen-item exclusion, ranking)."""
from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.schemas import RECOMMENDATIONS

TABLE = "recommendations"
PARTITION_BY = ["model", "run_date"]
HISTORY_SPLITS = ("train", "validation")  # what a user "has seen" when the list is evaluated on `test`


def new_run_id() -> str:
    return uuid.uuid4().hex


def seen_pairs(interactions: DataFrame) -> DataFrame:
    """(user_idx, item_idx) of everything before each user's test item: excluded from every top-N."""
    return interactions.where(F.col("split").isin(*HISTORY_SPLITS)).select("user_idx", "item_idx")


def top_k(scores: DataFrame, k: int, user_col: str = "user_idx", item_col: str = "item_idx",
          score_col: str = "score") -> DataFrame:
    """Keep each user's k best-scored rows, ranked 1..k; ties broken by the item column so ranks are deterministic."""
    window = Window.partitionBy(user_col).orderBy(F.col(score_col).desc(), F.col(item_col).asc())
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
) -> str:
    """Map dense indices back to MovieLens ids and replace the (model, run_date) partition in one commit.

    `recs` has user_idx, item_idx, rank, score.
    """
    out = (recs.join(F.broadcast(items.select("item_idx", "movieId")), "item_idx")
           .join(users.select("user_idx", "userId"), "user_idx")
           .select(F.lit(model).alias("model"), F.lit(run_id).alias("run_id"),
                   F.lit(run_date).cast("date").alias("run_date"),
                   F.col("userId").cast("long"), F.col("rank").cast("int"),
                   F.col("movieId").cast("long"), F.col("score").cast("double")))
    path = table_path(warehouse, TABLE)
    write_table(out, path, partition_by=PARTITION_BY, replace={"model": model, "run_date": run_date},
                schema=RECOMMENDATIONS)
    return path


def read_recommendations(spark, warehouse: str | Path, model: str | None = None) -> DataFrame:
    df = read_table(spark, table_path(warehouse, TABLE))
    return df.where(F.col("model") == model) if model else df
