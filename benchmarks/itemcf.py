"""ItemCF benchmark: item_neighbors (item–item cosine, top-K) and every user's top-N on a generated large set.

    .venv/bin/python benchmarks/itemcf.py [--ratings 25000095] [--users 162541] [--items 59047] [--threads 2]
    .venv/bin/python benchmarks/itemcf.py --ml-small        # ml-latest-small instead of generated data

Generates MovieLens-shaped CSVs once (cached under --cache), runs the real ETL once into a cached warehouse, then
times the two ItemCF steps of recsys_spark.baselines.itemcf with the configured settings (conf/baselines.yaml
defaults unless overridden): the self-join co-counts + shrunk cosine + top-K per item written to item_neighbors
(Delta), and the recency-weighted top-N of every user written to recommendations. Prints per step: wall seconds,
rows written, and the peak resident memory of the Spark JVM (driver + executors in local mode; reset before each
step where the kernel allows) and of the Python driver.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

from _measure import jvm_peak_rss_gb, python_peak_rss_gb, reset_jvm_peak_rss  # noqa: E402
from _spark_bench import add_data_args, add_spark_args, spark_over_etl  # noqa: E402  (markov.py's set and cache)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--neighbors", type=int, default=50, help="baselines.itemcf.neighbors")
    p.add_argument("--shrinkage", type=float, default=0.0, help="baselines.itemcf.shrinkage")
    p.add_argument("--max-user-items", type=int, default=500, help="baselines.itemcf.max_user_items")
    p.add_argument("--k", type=int, default=100, help="list length per user")
    add_spark_args(p)
    args = p.parse_args()

    from recsys_spark.baselines import BaselinesConfig, TrainTables
    from recsys_spark.baselines.itemcf import item_neighbors, recommend_itemcf
    from recsys_spark.delta import read_table, table_path, write_table
    from recsys_spark.recommendations import write_recommendations
    from recsys_spark.schemas import ITEM_NEIGHBORS

    spark, warehouse, name = spark_over_etl(args, "itemcf")
    config = BaselinesConfig.from_dict({"itemcf": {"neighbors": args.neighbors, "shrinkage": args.shrinkage,
                                                   "max_user_items": args.max_user_items}})
    tables = TrainTables.open(spark, warehouse, config)
    n_train = tables.interactions.where("split = 'train'").count()
    print(f"{name}: {n_train:,} train interactions, K {args.neighbors}, shrinkage {args.shrinkage}, "
          f"max_user_items {args.max_user_items}, top-{args.k}, local[{args.threads}]")

    def step(label: str, write, table: str) -> None:
        reset = reset_jvm_peak_rss(spark)
        started = time.perf_counter()
        write()
        seconds = time.perf_counter() - started
        rows = read_table(spark, table_path(warehouse, table)).count()
        peak = "peak" if reset else "peak since start"
        print(f"{label}: {seconds:7.1f} s  {rows:>12,} rows  ({n_train / seconds:,.0f} train rows/s)  "
              f"JVM {peak} RSS {jvm_peak_rss_gb(spark):.2f} GB  Python peak RSS {python_peak_rss_gb():.2f} GB")

    neighbors_path = table_path(warehouse, "item_neighbors")
    step("item_neighbors", lambda: write_table(item_neighbors(tables.interactions, config.itemcf), neighbors_path,
                                               schema=ITEM_NEIGHBORS), "item_neighbors")
    neighbors = read_table(spark, neighbors_path)
    step(f"top-{args.k} of every user",
         lambda: write_recommendations(
             recommend_itemcf(tables.interactions, neighbors, tables.popularity, args.k, config.itemcf,
                              tables.ties), warehouse,
             "itemcf", dt.date(2030, 1, 1), "bench", tables.items, tables.users), "recommendations")
    tables.close()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
