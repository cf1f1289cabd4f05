"""`recsys etl --data PATH --warehouse DIR [--config F] [key=value …]`: an interaction log -> Delta tables.

`--data` is a MovieLens folder, an events table (a CSV or Parquet file, a Parquet folder, a Delta table; its columns
in `etl.columns.*`) or a sequences text file (S3-Rec's `user item item ...`, SASRec's `user item`); `etl.format`
names it, or it is detected (recsys_spark/inputs.py).

Writes interactions, items, users, tags, rejects and etl_report (docs/SCHEMAS.md) plus etl_report.json, and prints
the report. A missing required file or column: exit code 2 with one line naming it, and nothing written. Over a
warehouse that holds a load, a new one that shrinks it by more than etl.max_shrink or rejects more than
etl.max_reject_fraction of a file's rows is refused the same way (exit 2, the numbers, every table left as it was).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`python jobs/etl.py`, `spark-submit jobs/etl.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config  # noqa: E402
from jobs.config import section  # noqa: E402


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys etl", description=__doc__)
    parser.add_argument("--data", required=True, help="a MovieLens folder, an events table or a sequences file")
    parser.add_argument("--warehouse", required=True, help="folder the Delta tables are written to")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    from recsys_spark.etl import print_report, run_etl
    cfg, config = job_config(args, "etl")
    source = config.source(args.data)  # before Spark starts: a bad input is one line on stderr, nothing else

    from recsys_spark.session import get_spark

    from jobs.tracking import job_run

    spark = get_spark("recsys-etl", conf=section(cfg, "spark"))
    params = {"data": args.data, "format": source.format, "layout": source.layout, "tie_break": config.tie_break, "seed": config.seed,
              "temporal_quantile": config.temporal_quantile}
    with job_run(cfg, args.warehouse, "etl", params):
        import mlflow

        result = run_etl(spark, args.data, args.warehouse, config)
        print_report(result)
        mlflow.log_metric("seconds", result.seconds)
        mlflow.log_metrics({f"rows.{name}": float(n) for name, n in result.summary.get("tables", {}).items()
                            if isinstance(n, (int, float))})
        mlflow.log_dict(result.summary, "etl_report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
