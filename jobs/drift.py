"""`recsys drift --warehouse DIR [--run-date D] [key=value ...]`: how far tonight's input and lists moved from the
last published run's -> the `drift` table (recsys_spark/drift.py); a value beyond its `drift.*` threshold
(conf/drift.yaml) prints a `WARNING drift …` line, which `recsys pipeline`'s summary repeats. Exit 0 either way."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/drift.py` / `spark-submit jobs/drift.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config, parse_run_date, require_tables  # noqa: E402
from jobs.config import section  # noqa: E402


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys drift", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--run-date", help="the run to measure (default: today)")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)

    cfg, config = job_config(args, "drift")
    run_date = parse_run_date(args.run_date)
    require_tables(args.warehouse, "interactions", "items")

    from jobs.tracking import job_run
    from recsys_spark.drift import measure, warnings, write_drift
    from recsys_spark.session import get_spark

    spark = get_spark("recsys-drift", conf=section(cfg, "spark"))
    with job_run(cfg, args.warehouse, "drift", {"run_date": run_date, "k": config.k}):
        import mlflow

        rows = measure(spark, args.warehouse, run_date, config)
        path = write_drift(rows, args.warehouse, run_date)
        mlflow.log_metrics({f"drift.{r['model'] or 'input'}.{r['metric']}": r["value"] for r in rows
                            if r["value"] is not None})
    for r in rows:
        before = "" if r["previous"] is None else f"  (before {r['previous']:.4f})"
        ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        print(f"{r['kind']:<6} {r['model'] or '':<14} {r['metric']:<22} {r['value']:.4f}{ci}{before}")
    lines = warnings(rows)
    print("\n".join(lines) if lines else "no drift beyond the thresholds")
    print(f"{len(rows)} drift rows -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
