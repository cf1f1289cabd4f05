"""`recsys topn --warehouse DIR --model NAME [--k 100] [--run-date D]`: top-K for every user -> recommendations.

als -> blocked ALS scoring in Spark; popularity|genre|markov|ar2|hybrid -> recsys_spark.baselines;
ncf|sasrec|ss4rec -> recsys_torch.infer (neither Spark nor recsys_spark is imported for those: a GPU node needs
no Spark).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/topn.py` / `spark-submit jobs/topn.py`
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, require_tables, resolve_config
from jobs.config import ConfigError, section

TORCH_MODELS = ("ncf", "sasrec", "ss4rec")
BASELINES = ("popularity", "genre", "markov", "ar2", "hybrid")


def model_family(model: str) -> str:
    if model == "als" or model.startswith("als_"):
        return "als"
    if model in BASELINES:
        return "baseline"
    if model in TORCH_MODELS:
        return "torch"
    raise ConfigError(f"unknown model {model!r}; one of: als, {', '.join(BASELINES + TORCH_MODELS)}")


def parse_run_date(value: str | None) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else dt.date.today()
    except ValueError:
        raise ConfigError(f"--run-date {value!r} is not a date of the form YYYY-MM-DD") from None


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys topn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--model", required=True, help="als | " + " | ".join(BASELINES + TORCH_MODELS))
    parser.add_argument("--k", type=int, default=100, help="list length per user (default 100)")
    parser.add_argument("--run-date", help="partition date YYYY-MM-DD (default: today); a re-run replaces it")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    family = model_family(args.model)
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    cfg = resolve_config(args, "als", "baselines", "train", *([args.model] if family == "torch" else []))
    run_date, run_id = parse_run_date(args.run_date), uuid.uuid4().hex
    # Everything a user can get wrong is checked before Spark and MLflow start (torch checks its own inputs).
    if family == "als":
        from recsys_spark.als import AlsConfig

        block_size = AlsConfig.from_dict(section(cfg, "als")).topn_block_size
        require_tables(args.warehouse, f"{args.model}_user_factors", f"{args.model}_item_factors", "interactions",
                       "items", "users")
    elif family == "baselines":
        from recsys_spark.baselines import BaselinesConfig

        config = BaselinesConfig.from_dict(section(cfg, "baselines"))
        require_tables(args.warehouse, "interactions", "items", "users")
    else:
        train = section(cfg, "train")

    from jobs.tracking import job_run

    params = {"model": args.model, "k": args.k, "run_date": run_date, "run_id": run_id}
    with job_run(cfg, args.warehouse, f"topn-{args.model}", params):
        if family == "torch":
            from recsys_torch.infer import topn

            topn(warehouse=args.warehouse, model=args.model, k=args.k, run_date=run_date, run_id=run_id,
                 device=str(train.get("device", "auto")), amp=bool(train.get("amp", True)),
                 sequences=train.get("sequences"), model_dir=train.get("output"))
        else:
            from recsys_spark.session import get_spark

            spark = get_spark(f"recsys-topn-{args.model}", conf=section(cfg, "spark"))
            if family == "als":
                from recsys_spark.als_topn import write_als_topn

                write_als_topn(spark, args.warehouse, args.model, args.k, run_date, run_id, block_size)
            else:
                from recsys_spark.baselines import topn

                topn(spark, args.warehouse, args.model, args.k, run_date, run_id, config=config)
    print(f"top-{args.k} of {args.model} for every user -> {args.warehouse}/recommendations "
          f"(run_date {run_date.isoformat()}, run_id {run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
