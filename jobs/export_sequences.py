"""`recsys export-sequences --warehouse DIR [--out DIR] [key=value …]`: per-user sequences -> Petastorm Parquet
shards + meta.json (docs/SCHEMAS.md, "Sequence shards"), the input of `recsys train`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`spark-submit jobs/<name>.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config, require_tables  # noqa: E402
from jobs.config import section  # noqa: E402


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys export-sequences", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory holding the ETL's Delta tables")
    parser.add_argument("--out", help="output folder, replaced whole (default: <warehouse>/sequences)")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    cfg, config = job_config(args, "sequences")

    import mlflow

    from jobs.tracking import job_run
    from recsys_spark.sequences import export_sequences
    from recsys_spark.session import get_spark

    require_tables(args.warehouse, "interactions")  # before anything (an MLflow store) is created under the warehouse
    out = Path(args.out) if args.out else Path(args.warehouse) / "sequences"
    spark = get_spark("recsys-export-sequences", conf=section(cfg, "spark"))
    with job_run(cfg, args.warehouse, "export-sequences", params=vars(config)):
        meta = export_sequences(spark, args.warehouse, out, config)
        mlflow.log_metrics({f"rows.{name}": float(n) for name, n in meta["rows"].items()})
        mlflow.log_dict(meta, "meta.json")
    rows = ", ".join(f"{name} {n}" for name, n in meta["rows"].items())
    print(f"sequences -> {out}: {rows} rows; n_users {meta['n_users']}, n_items {meta['n_items']}, "
          f"max_len {meta['max_len']}, last_gap {meta['last_gap']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
