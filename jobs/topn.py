"""`recsys topn --warehouse DIR --model NAME [--k 100] [--run-date D]`: top-K for every user -> recommendations.

als -> blocked ALS scoring in Spark; popularity|genre|markov|ar2|hybrid -> recsys_spark.baselines;
ncf|sasrec|ss4rec -> recsys_torch.infer (Spark is not started for those).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from jobs.common import add_config_flags, guarded, resolve_config
from jobs.config import section


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys topn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--model", required=True, help="als | popularity | genre | markov | ar2 | hybrid | ncf | sasrec | ss4rec")
    parser.add_argument("--k", type=int, default=100, help="list length per user (default 100)")
    parser.add_argument("--run-date", help="partition date YYYY-MM-DD (default: today); a re-run replaces it")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    cfg = resolve_config(args, "als")

    from jobs.tracking import job_run
    from recsys_spark.errors import RecsysError
    from recsys_spark.recommendations import new_run_id, parse_run_date
    from recsys_spark.topn import model_family, run_topn

    family = model_family(args.model)
    run_date = parse_run_date(args.run_date)
    block_size = int(section(cfg, "als").get("topn_block_size", 256))
    if args.k < 1:
        raise RecsysError(f"--k must be >= 1, got {args.k}")
    run_id = new_run_id()
    params = {"model": args.model, "k": args.k, "run_date": run_date, "run_id": run_id}
    with job_run(cfg, args.warehouse, f"topn-{args.model}", params):
        run_topn(args.warehouse, args.model, args.k, run_date, run_id,
                 spark_conf=section(cfg, "spark") if family != "torch" else None, block_size=block_size)
    print(f"top-{args.k} of {args.model} for every user -> {args.warehouse}/recommendations "
          f"(run_date {run_date.isoformat()}, run_id {run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
