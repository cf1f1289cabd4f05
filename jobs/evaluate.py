"""`recsys evaluate --warehouse DIR [--model NAME] [--run-date D]`: one evaluator for every model -> metrics."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`spark-submit jobs/<name>.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import (add_config_flags, comparison_view, guarded, job_config, parse_run_date,  # noqa: E402
                         require_tables)
from jobs.config import section  # noqa: E402


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys evaluate", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--model", help="evaluate only this model (default: every model in recommendations)")
    parser.add_argument("--run-date", help="evaluate this run date (default: each model's list written last)")
    parser.add_argument("--split", choices=["test", "validation"], default="test",
                        help="test: recommendations vs the test item (default); validation: "
                             "recommendations_validation vs the validation item")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)

    cfg, config = job_config(args, "evaluate")

    from rich.console import Console

    from recsys_spark.evaluate import evaluate
    from recsys_spark.report import comparison_table, intervals_table, load_metrics
    from recsys_spark.session import get_spark

    run_date = parse_run_date(args.run_date) if args.run_date else None
    from jobs.tracking import job_run

    from recsys_spark.recommendations import list_table

    require_tables(args.warehouse, list_table(args.split), "interactions", "items")
    spark = get_spark("recsys-evaluate", conf=section(cfg, "spark"))
    params = {"model": args.model or "all", "run_date": run_date or "latest", "ks": config.ks, "split": args.split}
    with job_run(cfg, args.warehouse, "evaluate", params):
        import mlflow

        result = evaluate(spark, args.warehouse, args.model, run_date, config, args.split)
        # what the figures were scored on: the tie policy, the input, the interactions version (as the rows say)
        mlflow.log_params({key: str(value)[:500] for key, value in result.provenance.items()})
        mlflow.log_metrics({f"{r['model']}.{r['metric']}_at_{r['k']}": r["value"] for r in result.rows})
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: do not squeeze the table into 80 columns
        console = Console(width=160)
    metrics = load_metrics(args.warehouse, run_date, args.split)
    metrics = metrics[metrics["model"].isin({row["model"] for row in result.rows})]
    for k in config.ks:
        console.print(comparison_view(comparison_table(metrics, k),
                                      f"Top-N evaluation at K={k} (leave-last-out {args.split} item, full ranking)"))
    intervals = intervals_table(metrics, 10 if 10 in config.ks else config.ks[0])
    if not intervals.empty:
        console.print(comparison_view(intervals, "95% bootstrap intervals over users; paired differences, "
                                                 "(noise): the interval holds zero"))
    print(f"{len(result.rows)} metric rows -> {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
