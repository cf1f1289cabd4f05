"""`recsys als --warehouse DIR [--run-date D] [key=value …]`: fit Spark MLlib ALS on the train split."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`spark-submit jobs/<name>.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config, parse_run_date, require_tables  # noqa: E402
from jobs.config import section  # noqa: E402


def log_spark_model(model) -> None:
    """The fitted ALSModel as the run's MLflow model (`mlflow.spark.load_model("runs:/<id>/model")`)."""
    import mlflow.spark
    import pyspark

    # Explicit requirements: MLflow would otherwise reload the model in a subprocess to infer them.
    mlflow.spark.log_model(model, artifact_path="model", pip_requirements=[f"pyspark=={pyspark.__version__}"])


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys als", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory holding the ETL's Delta tables")
    parser.add_argument("--run-date", help="date the metrics rows are filed under (default: today)")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    cfg, config = job_config(args, "als")

    from jobs.tracking import job_run
    from recsys_spark.als import run_als
    from recsys_spark.recommendations import new_run_id
    from recsys_spark.session import get_spark

    # Everything a user can get wrong is checked before Spark and MLflow start.
    run_date = parse_run_date(args.run_date)
    require_tables(args.warehouse, "interactions", "items", "users")
    spark = get_spark("recsys-als", conf=section(cfg, "spark"))
    params = {"run_date": run_date, **{f"als.{k}": v for k, v in section(cfg, "als").items()}}
    with job_run(cfg, args.warehouse, "als", params):
        import mlflow

        result = run_als(spark, args.warehouse, config, run_date, new_run_id())
        mlflow.log_metric("fit_seconds", result.fit_seconds)
        for split, err in result.errors.items():
            mlflow.log_metrics({f"{split}.cold_rows": err.cold_rows, f"{split}.rows": err.rows})
            if err.rmse is not None:
                mlflow.log_metrics({f"{split}.rmse": err.rmse, f"{split}.mae": err.mae})
        for point in result.grid:
            mlflow.log_metric("grid." + ".".join(f"{k}_{v}" for k, v in point.params.items()), point.score)
        mlflow.log_params({f"best.{k}": getattr(result.config, k) for k in ("rank", "reg_param", "max_iter", "alpha")})
        mlflow.set_tag("model_path", result.paths["model"])
        log_spark_model(result.model)

    c = result.config
    mode = f"implicit (alpha={c.alpha})" if c.implicit_prefs else "explicit"
    print(f"ALS {c.name}: {mode}, rank={c.rank}, reg_param={c.reg_param}, max_iter={c.max_iter}, seed={c.seed}; "
          f"fit {result.fit_seconds:.1f}s")
    for point in result.grid:
        print(f"  grid {point.params}: validation score {point.score:.4f} ({point.seconds:.1f}s)")
    for split, err in result.errors.items():
        if err.rmse is None:
            print(f"  {split}: all {err.rows} rows cold (no factors), no RMSE")
            continue
        print(f"  {split}: RMSE {err.rmse:.4f}  MAE {err.mae:.4f}  on {err.scored_rows} rows "
              f"({err.cold_rows} cold rows of {err.rows} not scored)")
    print(f"  model {result.paths['model']}; factors {result.paths['user_factors']}, {result.paths['item_factors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
