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

from _measure import jvm_peak_rss_gb, machine, python_peak_rss_gb, reset_jvm_peak_rss  # noqa: E402

ML_SMALL = REPO.parent / "shared" / "data" / "ml-latest-small"


def input_data(args) -> tuple[Path, str]:
    if args.ml_small:
        return ML_SMALL, "ml-latest-small"
    try:
        from recsys_data.generate import generate
    except ImportError:
        print("recsys_data.generate not available: falling back to ml-latest-small")
        return ML_SMALL, "ml-latest-small"
    name = f"{args.users}u-{args.items}i-{args.ratings}r"
    data = Path(args.cache) / name
    if not (data / "ratings.csv").exists():
        started = time.perf_counter()
        generate(data, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=0)
        print(f"generated {name} in {time.perf_counter() - started:.0f} s")
    return data, name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--ratings", type=int, default=25_000_095)
    p.add_argument("--ml-small", action="store_true", help="use ml-latest-small instead of generated data")
    p.add_argument("--cache", default=str(REPO / ".bench" / "ml25m-gen"))
    p.add_argument("--top-k", type=int, default=50, help="successors kept per state")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--driver-memory", default="6g")
    args = p.parse_args()

    from recsys_spark.baselines.markov import transitions_ar1, transitions_ar2
    from recsys_spark.delta import read_table, table_exists, table_path, write_table
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.session import get_spark

    data, name = input_data(args)
    warehouse = REPO / ".bench" / "markov" / name
    spark = get_spark("bench-markov", master=f"local[{args.threads}]",
                      conf={"spark.driver.memory": args.driver_memory, "spark.ui.enabled": "false",
                            "spark.sql.shuffle.partitions": str(max(8, 4 * args.threads))})
    print(machine())
    if not table_exists(table_path(warehouse, "interactions")):
        started = time.perf_counter()
        run_etl(spark, data, warehouse, EtlConfig())
        print(f"ETL of {name} in {time.perf_counter() - started:.0f} s (cached in {warehouse})")
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
