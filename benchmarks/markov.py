"""Markov benchmark: AR(1) and AR(2) transition counting (recsys_spark.baselines.markov) on a generated large set.

    .venv/bin/python benchmarks/markov.py [--ratings 25000095] [--users 162541] [--items 59047] [--threads 2]
    .venv/bin/python benchmarks/markov.py --ml-small        # ml-latest-small instead of generated data

Generates MovieLens-shaped CSVs once (recsys_data.generate, cached under --cache; ml-latest-small when the
generator is absent), runs the real ETL once into a cached warehouse, then counts AR(1) and AR(2) transitions
(lag over seq per user, groupBy state, top-k per state) and writes transitions_ar1 / transitions_ar2 as Delta.
Prints per step: wall seconds, rows written, and the peak resident memory of the Spark JVM (driver + executors in
local mode; the peak is reset before each step where the kernel allows) and of the Python driver.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

from _measure import jvm_peak_rss_gb, python_peak_rss_gb, reset_jvm_peak_rss  # noqa: E402
from _spark_bench import add_data_args, add_spark_args, spark_over_etl  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--top-k", type=int, default=50, help="successors kept per state")
    add_spark_args(p)
    args = p.parse_args()

    from recsys_spark.baselines.markov import transitions_ar1, transitions_ar2
    from recsys_spark.delta import read_table, table_path, write_table

    spark, warehouse, name = spark_over_etl(args, "markov")
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    n_train = interactions.where("split = 'train'").count()
    print(f"{name}: {n_train:,} train interactions, top-k {args.top_k}, local[{args.threads}]")

    for label, fit, table in (("AR(1)", transitions_ar1, "transitions_ar1"),
                              ("AR(2)", transitions_ar2, "transitions_ar2")):
        reset = reset_jvm_peak_rss(spark)
        started = time.perf_counter()
        write_table(fit(interactions, args.top_k), table_path(warehouse, table))
        seconds = time.perf_counter() - started
        rows = read_table(spark, table_path(warehouse, table)).count()
        peak = "peak" if reset else "peak since start"
        print(f"{label}: {seconds:7.1f} s  {rows:>12,} rows  ({n_train / seconds:,.0f} train rows/s)  "
              f"JVM {peak} RSS {jvm_peak_rss_gb(spark):.2f} GB  Python peak RSS {python_peak_rss_gb():.2f} GB")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
