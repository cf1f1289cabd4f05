"""`recsys baselines --warehouse DIR [--k 100] [--run-date D] [key=value ...]`: fit the five Spark baselines
(popularity, genre, Markov AR(1), AR(2), hybrid) and write each one's top-k to the recommendations table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/baselines.py` / `spark-submit jobs/baselines.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import (add_config_flags, add_list_flags, guarded, job_config, list_length,  # noqa: E402
                         parse_run_date, require_tables)
from jobs.config import section  # noqa: E402
from recsys_core import catalogue  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsys baselines", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="directory of the Delta tables (the ETL's output)")
    add_list_flags(parser)
    add_config_flags(parser)
    return parser.parse_intermixed_args(argv)


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from jobs.tracking import job_run
    from recsys_spark.baselines import run_baselines
    from recsys_spark.session import get_spark

    # Everything a user can get wrong is checked before Spark and MLflow start.
    k = list_length(args)
    cfg, config = job_config(args, "baselines")
    run_date = parse_run_date(args.run_date)
    require_tables(args.warehouse, *catalogue.BASELINE.needs)
    spark = get_spark("recsys-baselines", conf=section(cfg, "spark"))
    params = {"k": k, "run_date": run_date, **{f"baselines.{k}": v for k, v in section(cfg, "baselines").items()}}
    with job_run(cfg, args.warehouse, "baselines", params) as run:
        import mlflow

        results = run_baselines(spark, args.warehouse, k, run_date, config)
        for model, result in results.items():
            mlflow.log_metric(f"rows_{model}", result["rows"])
            mlflow.set_tag(f"run_id.{model}", result["run_id"])
            print(f"{model}: {result['rows']} rows (run_id {result['run_id']}, run_date {run_date})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
