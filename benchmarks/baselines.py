"""Baselines benchmark: each Spark baseline's two lists (test and validation) on a warehouse, one model at a time.

    .venv/bin/python benchmarks/baselines.py --warehouse .bench/nightly/<data>/warehouse --run-date 2026-12-02 \
        --models popularity genre --out benchmarks/results/baselines-25m.json
    .venv/bin/python benchmarks/baselines.py --ml-small --out /tmp/baselines-small.json

Runs recsys_spark.baselines.topn per model (fit, both lists, written to the warehouse's recommendations tables,
replacing that model's partition for --run-date) and records its wall seconds, the Spark JVM's peak resident memory
(driver + executors in local mode; reset before each model where the kernel allows) and the Python driver's. The
JSON (--out) is rewritten after every model, with the machine's load average before and during each one.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

from _measure import jvm_peak_rss_gb, machine, python_peak_rss_gb, reset_jvm_peak_rss  # noqa: E402
from _spark_bench import add_data_args, add_spark_args, spark_over_etl  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_spark_args(p)
    p.add_argument("--models", nargs="+", help="default: every baseline")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--run-date", default=dt.date.today().isoformat())
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from recsys_core import catalogue
    from recsys_spark.baselines import BaselinesConfig, topn

    models = args.models or catalogue.names(catalogue.BASELINE)
    spark, warehouse, name = spark_over_etl(args, "baselines")
    figures = {"data": name, "warehouse": str(warehouse), "k": args.k, "machine": machine(),
               "run_date": args.run_date, "models": []}
    out = Path(args.out)
    for model in models:
        reset_jvm_peak_rss(spark)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        rows = topn(spark, warehouse, model, args.k, dt.date.fromisoformat(args.run_date), f"bench-{model}",
                    BaselinesConfig())
        seconds = time.perf_counter() - started
        entry = {"model": model, "seconds": round(seconds, 1), "rows": rows,
                 "jvm_peak_rss_gb": round(jvm_peak_rss_gb(spark), 2),
                 "python_peak_rss_gb": round(python_peak_rss_gb(), 2),
                 "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
        figures["models"].append(entry)
        out.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"{model:12s} {seconds:8.1f} s  {rows:>12,} rows  JVM {entry['jvm_peak_rss_gb']:.2f} GB  "
              f"Python {entry['python_peak_rss_gb']:.2f} GB  load {entry['load_before']}/{entry['load_after']}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
