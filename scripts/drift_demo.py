"""The drift report on two real loads of MovieLens data: the ratings without their last `--days` days (yesterday's
load), then all of them (tonight's), each through the real ETL with the popularity, Markov and AR(2) baselines'
lists, the drift step and, for tonight, the evaluator and the report (reports/<tonight>/drift.png: the picture in
docs/OPERATIONS.md).

    python scripts/drift_demo.py --data ../shared/data/ml-latest-small --out /tmp/drift_demo
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

YESTERDAY, TONIGHT = dt.date(2030, 6, 1), dt.date(2030, 6, 2)


def without_last_days(data: Path, out: Path, days: int) -> int:
    """A copy of the MovieLens files whose ratings.csv lacks the ratings of the last `days` days; rows dropped."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("movies.csv", "links.csv", "tags.csv"):
        shutil.copy(data / name, out / name)
    lines = (data / "ratings.csv").read_text().splitlines()
    newest = max(int(line.rsplit(",", 1)[1]) for line in lines[1:])
    kept = [lines[0]] + [line for line in lines[1:] if int(line.rsplit(",", 1)[1]) <= newest - days * 86400]
    (out / "ratings.csv").write_text("\n".join(kept) + "\n")
    return len(lines) - len(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a MovieLens folder (ratings.csv, movies.csv, …)")
    parser.add_argument("--out", type=Path, required=True, help="a new folder: data copy, warehouse, reports")
    parser.add_argument("--days", type=int, default=180, help="the ratings tonight's load adds (default 180 days)")
    args = parser.parse_args()

    from recsys_spark.baselines import BaselinesConfig, run_baselines
    from recsys_spark.drift import DriftConfig, measure, warnings, write_drift
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.evaluate import EvaluateConfig, evaluate
    from recsys_spark.report import write_report
    from recsys_spark.session import get_spark

    start = time.perf_counter()
    spark = get_spark("drift-demo")
    warehouse = args.out / "warehouse"
    dropped = without_last_days(args.data, args.out / "yesterday", args.days)
    print(f"yesterday's load: the ratings without the last {args.days} days ({dropped} fewer)")
    baselines = BaselinesConfig(models=("popularity", "markov", "ar2"))
    for day, data in ((YESTERDAY, args.out / "yesterday"), (TONIGHT, args.data)):
        run_etl(spark, data, warehouse, EtlConfig())
        run_baselines(spark, warehouse, k=100, run_date=day, config=baselines)
        rows = measure(spark, warehouse, day, DriftConfig())
        write_drift(rows, warehouse, day)
    evaluate(spark, warehouse, run_date=TONIGHT, config=EvaluateConfig(ks=[10]))
    report = write_report(warehouse, args.out / "reports", TONIGHT)
    for r in rows:
        ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        before = "" if r["previous"] is None else f" (before {r['previous']:.4f})"
        print(f"{r['kind']:<6} {r['model'] or '':<11} {r['metric']:<21} {r['value']:.4f}{ci}{before}")
    print("\n".join(warnings(rows)) or "no drift beyond the thresholds")
    print(f"report: {report}  ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
