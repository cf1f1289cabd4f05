"""Shared by the Spark baseline benchmarks (markov.py, itemcf.py): the data flags, the generated set (cached), and a
local Spark session over a warehouse the real ETL filled once (cached too)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _measure import machine

REPO = Path(__file__).resolve().parent.parent
ML_SMALL = REPO.parent / "shared" / "data" / "ml-latest-small"


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--ratings", type=int, default=25_000_095)
    p.add_argument("--ml-small", action="store_true", help="use ml-latest-small instead of generated data")
    p.add_argument("--cache", default=str(REPO / ".bench" / "ml25m-gen"))
    p.add_argument("--warehouse", help="the warehouse to use: one the ETL filled is used as it is (no data is "
                                       "generated), another is filled first (default .bench/<benchmark>/<data>)")


def add_spark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--driver-memory", default="6g")


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


def spark_over_etl(args, bench: str):
    """(spark, warehouse, data name): a local[threads] session and `.bench/<bench>/<name>`, ETL'd on first use."""
    from recsys_spark.delta import table_exists, table_path
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.session import get_spark

    given = Path(args.warehouse) if args.warehouse else None
    if given is not None and table_exists(table_path(given, "interactions")):
        data, name = None, given.name
    else:
        data, name = input_data(args)
    warehouse = given or REPO / ".bench" / bench / name
    spark = get_spark(f"bench-{bench}", master=f"local[{args.threads}]",
                      conf={"spark.driver.memory": args.driver_memory, "spark.ui.enabled": "false",
                            "spark.sql.shuffle.partitions": str(max(8, 4 * args.threads))})
    print(machine())
    if not table_exists(table_path(warehouse, "interactions")):
        started = time.perf_counter()
        run_etl(spark, data, warehouse, EtlConfig())
        print(f"ETL of {name} in {time.perf_counter() - started:.0f} s (cached in {warehouse})")
    return spark, warehouse, name
