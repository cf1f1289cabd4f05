"""`recsys topn --warehouse DIR --model NAME [--k 100] [--run-date D]`: top-K for every user -> recommendations.

The model's family (jobs/catalogue.py) writes the lists: ALS by blocked scoring in Spark, the baselines in Spark,
the torch models with recsys_torch.infer (neither Spark nor recsys_spark is imported for those: a GPU node needs
no Spark).
"""
from __future__ import annotations

import argparse
import sys
import uuid
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/topn.py` / `spark-submit jobs/topn.py`
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import catalogue  # noqa: E402
from jobs.common import (add_config_flags, add_list_flags, guarded, list_length,  # noqa: E402
                         parse_run_date, resolve_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys topn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--model", required=True,
                        help=f"{catalogue.summary(catalogue.ALS)} (or als_<name>) | "
                             f"{catalogue.summary(catalogue.BASELINE)} | {catalogue.summary(catalogue.TORCH)} | "
                             f"{catalogue.summary(catalogue.ENSEMBLE)}")
    add_list_flags(parser)
    add_config_flags(parser)
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    model = catalogue.find(args.model)
    list_length(args)
    run_date, run_id = parse_run_date(args.run_date), uuid.uuid4().hex
    cfg = resolve_config(args, *model.sections)
    write = catalogue.topn_writer(model)(cfg, args.warehouse, model.name)

    from jobs.tracking import job_run

    params = {"model": model.name, "k": args.k, "run_date": run_date, "run_id": run_id}
    with job_run(cfg, args.warehouse, f"topn-{model.name}", params):
        write(args.k, run_date, run_id)
    print(f"top-{args.k} of {model.name} for every user -> {args.warehouse}/recommendations "
          f"(run_date {run_date.isoformat()}, run_id {run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
