"""How many ALS iterations the validation curve needs, and what each costs: the evidence behind `als.max_iter`.

    .venv/bin/python benchmarks/als_iterations.py --ml-small --iterations 5 10 15 20
    .venv/bin/python benchmarks/als_iterations.py --warehouse .bench/nightly/<data>/warehouse --iterations 5 10 15

For each mode (explicit: validation RMSE; implicit: validation HR@10, the score `als.tune` maximises) and each
iteration count it fits MLlib ALS with the rest of conf/als.yaml on the warehouse's train split and prints the
fit's seconds and the validation score, one line each (and --out as JSON). A warehouse the ETL filled is used as it
is; --ml-small (or a generated size) is put through the ETL first, cached as the other Spark benchmarks do.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

from _spark_bench import add_data_args, add_spark_args, spark_over_etl  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_spark_args(p)
    p.add_argument("--iterations", type=int, nargs="+", default=[5, 10, 15])
    p.add_argument("--modes", nargs="+", choices=["explicit", "implicit"], default=["explicit", "implicit"])
    p.add_argument("--out", help="write the figures here as JSON too")
    args = p.parse_args()

    from pyspark.sql import functions as F

    from jobs.config import load_config, section
    from recsys_core.ties import Ties
    from recsys_spark.als import AlsConfig, ensure_checkpoint_dir, fit, ratings, validation_score
    from recsys_spark.delta import read_table, table_path

    spark, warehouse, name = spark_over_etl(args, "als-iterations")
    ensure_checkpoint_dir(spark, None, Path(warehouse) / "_checkpoints")
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    train = ratings(interactions.where(F.col("split") == "train")).cache()
    validation = interactions.where(F.col("split") == "validation").cache()
    print(f"{name}: {train.count():,} train ratings, {validation.count():,} validation rows")
    base = AlsConfig.from_dict(section(load_config(["als"]), "als"))
    rows = []
    print(f"{'mode':<10}{'iterations':>11}{'fit s':>9}{'validation':>12}")
    for mode in args.modes:
        for iterations in args.iterations:
            config = base.with_params(max_iter=iterations, implicit_prefs=mode == "implicit")
            started = time.perf_counter()
            model = fit(train, config)
            model.userFactors.count()
            seconds = time.perf_counter() - started
            score = validation_score(model, config, train, validation, Ties.of_warehouse(warehouse))
            value = -score if mode == "explicit" else score
            rows.append({"mode": mode, "iterations": iterations, "fit_seconds": round(seconds, 1),
                         "metric": "rmse" if mode == "explicit" else "hr@10", "validation": round(value, 5)})
            print(f"{mode:<10}{iterations:>11}{seconds:>9.1f}{value:>12.5f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"data": name, "rows": rows}, indent=2) + "\n")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
