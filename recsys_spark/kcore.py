"""The ETL's k-core filter (etl.kcore): users and items with too few interactions are set aside, repeatedly."""
from __future__ import annotations

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from recsys_spark.etl_config import KcoreConfig

# Up to this many pairs the iterations run on the driver in numpy (two int64 columns: 32 MB), not as Spark jobs: a
# Spark iteration is a few jobs of fixed cost (seconds each, however small the input), and a k-core takes as many
# iterations as its longest cascade.
DRIVER_PAIRS = 2_000_000


def kcore_keep(pairs: DataFrame, config: KcoreConfig) -> tuple[DataFrame, DataFrame, int, bool]:
    """Users and items of the k-core of (userId, movieId) pairs: drop users with fewer than min_user and items with
    fewer than min_item interactions, repeatedly, until nothing changes or max_iterations.

    Counts only fall, so a dropped row's user or item never returns: the kept rows are exactly those whose user and
    item are both in the returned sets (also when stopped early).
    """
    current = pairs.select("userId", "movieId").persist(StorageLevel.MEMORY_AND_DISK)
    rows, iterations, converged = current.count(), 0, False
    if rows <= DRIVER_PAIRS:
        try:
            return _kcore_on_driver(current, config)
        finally:
            current.unpersist()
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


def _kcore_on_driver(pairs: DataFrame, config: KcoreConfig) -> tuple[DataFrame, DataFrame, int, bool]:
    """kcore_keep's iterations over the collected pairs: the same rule, the same stopping, the same outputs."""
    table = pairs.toArrow()
    users = table.column("userId").to_numpy().astype(np.int64)
    items = table.column("movieId").to_numpy().astype(np.int64)
    iterations, converged = 0, False
    while iterations < config.max_iterations:
        iterations += 1
        kept = (_counts(users) >= config.min_user_interactions) & (_counts(items) >= config.min_item_interactions)
        users, items = users[kept], items[kept]
        if kept.all():
            converged = True
            break
    kept_users, kept_items = (
        pairs.sparkSession.createDataFrame([(int(v),) for v in np.unique(values)],
                                           StructType([pairs.schema[name]])).persist()
        for name, values in (("userId", users), ("movieId", items)))
    kept_users.count(), kept_items.count()
    return kept_users, kept_items, iterations, converged


def _counts(ids: np.ndarray) -> np.ndarray:
    """Each row's count of rows with the same id."""
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return counts[inverse]


def mark_kcore(rows: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    marked = (rows.join(F.broadcast(users.withColumn("_user_kept", F.lit(True))), "userId", "left")
              .join(F.broadcast(items.withColumn("_item_kept", F.lit(True))), "movieId", "left"))
    dropped = F.col("reason").isNull() & (F.col("_user_kept").isNull() | F.col("_item_kept").isNull())
    return marked.withColumns({
        "reason": F.when(dropped, F.lit("k-core")).otherwise(F.col("reason")),
        "field": F.when(dropped, F.lit(None).cast("string")).otherwise(F.col("field")),
    }).select(*rows.columns)
