"""`recsys ensemble --warehouse DIR [--k 100] [--run-date D] [key=value ...]`: the learned ensemble — weighted
reciprocal-rank fusion of `ensemble.models`' lists, weights chosen on the validation-time lists
(recommendations_validation) only, then the blend of the test-time lists written to recommendations."""
from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/ensemble.py` / `spark-submit jobs/ensemble.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import (add_config_flags, add_list_flags, guarded, job_config, list_length,  # noqa: E402
                         parse_run_date, require_tables)
from jobs.config import section  # noqa: E402
from recsys_core import catalogue  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsys ensemble", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="directory of the Delta tables")
    add_list_flags(parser, run_date_help="YYYY-MM-DD partition to (re)write; members' latest lists on or before it "
                                         "are blended (default: today)")
    add_config_flags(parser)
    return parser.parse_intermixed_args(argv)


def write_ensemble(cfg: dict, config, warehouse: str, k: int, run_date, run_id: str):
    """Choose, blend and write (the `recsys topn --model ensemble` writer too); logs the chosen weights."""
    import mlflow

    from recsys_spark.ensemble import run_ensemble
    from recsys_spark.session import get_spark

    spark = get_spark("recsys-ensemble", conf=section(cfg, "spark"))
    choice = run_ensemble(spark, warehouse, config, k, run_date, run_id)
    if mlflow.active_run() is not None:
        mlflow.log_params({f"weight.{m}": w for m, w in choice.weights.items()})
        mlflow.log_metric("validation_ndcg_at_10", choice.ndcg)
    weights = ", ".join(f"{m} {w:.2f}" for m, w in choice.weights.items())
    print(f"ensemble weights ({weights}): validation NDCG@10 {choice.ndcg:.4f} on {choice.users} users")
    return choice


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from jobs.tracking import job_run

    k = list_length(args)
    cfg, config = job_config(args, "ensemble")
    run_date = parse_run_date(args.run_date)
    require_tables(args.warehouse, *catalogue.ENSEMBLE.needs)
    run_id = uuid.uuid4().hex
    params = {"k": k, "run_date": run_date, "run_id": run_id,
              **{f"ensemble.{k}": v for k, v in section(cfg, "ensemble").items()}}
    with job_run(cfg, args.warehouse, "ensemble", params):
        write_ensemble(cfg, config, args.warehouse, k, run_date, run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
