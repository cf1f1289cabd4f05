"""A warehouse for the serving tests, made from ml-latest-small with the project's own writers, no training beyond a
tiny ALS: the real ETL tables (copied from conftest's ml_small_warehouse), the popularity, Markov and AR(2)
baselines' top-20 on two run dates, a small ALS fit (item factors + its top-20), an untrained SASRec's item
embeddings through the torch top-N step's export, the evaluator's metrics with intervals, the drift step's rows (the
first load: its last 30 days against the rest; popularity's list against its earlier run date) and the comparison
report.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

LATEST = dt.date(2030, 1, 2)
EARLIER = dt.date(2030, 1, 1)
SERVED_MODELS = ("popularity", "markov", "ar2", "als")
K = 20


def build(spark, etl_warehouse: Path, root: Path) -> dict:
    from pyspark.sql import functions as F

    from recsys_spark.als import AlsConfig, fit, ratings, save
    from recsys_spark.als_topn import write_als_topn
    from recsys_spark.baselines import BaselinesConfig, run_baselines, topn
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.drift import DriftConfig, measure, write_drift
    from recsys_spark.evaluate import EvaluateConfig, evaluate
    from recsys_spark.report import write_report

    warehouse = root / "warehouse"
    shutil.copytree(etl_warehouse, warehouse)
    run_baselines(spark, warehouse, k=K, run_date=LATEST,
                  config=BaselinesConfig(models=("popularity", "markov", "ar2")))
    topn(spark, warehouse, "popularity", K, EARLIER, "earlier-popularity")

    interactions = read_table(spark, table_path(warehouse, "interactions"))
    model = fit(ratings(interactions.where(F.col("split") == "train")), AlsConfig(rank=8, max_iter=3))
    save(model, warehouse, "als", read_table(spark, table_path(warehouse, "users")),
         read_table(spark, table_path(warehouse, "items")))
    write_als_topn(spark, warehouse, "als", K, LATEST, "als-run")

    write_sasrec_embeddings(warehouse)
    evaluate(spark, warehouse, run_date=LATEST, config=EvaluateConfig(ks=[10], bootstrap_resamples=200))
    write_drift(measure(spark, warehouse, LATEST, DriftConfig(bootstrap_resamples=200)), warehouse, LATEST)
    reports = root / "reports"
    write_report(warehouse, reports, LATEST)
    return {"warehouse": warehouse, "reports": reports}


def write_sasrec_embeddings(warehouse: Path) -> None:
    """The item vectors the torch top-N step exports (recsys_torch.infer.item_vectors), of a SASRec with its
    seeded initial weights: the serving side reads them exactly as those of a trained one."""
    import numpy as np
    import torch

    from recsys_spark.delta import read_arrow
    from recsys_torch.infer import item_vectors
    from recsys_torch.models import build_model
    from recsys_torch.tables import write_item_embeddings

    items = read_arrow(warehouse / "items", columns=["movieId", "item_idx"]).to_pydict()
    rated = [(i, m) for i, m in zip(items["item_idx"], items["movieId"]) if i is not None]
    movie_ids = np.full(max(i for i, _ in rated) + 1, -1, np.int64)
    for item_idx, movie_id in rated:
        movie_ids[item_idx] = movie_id
    torch.manual_seed(0)
    net = build_model("sasrec", {"n_items": len(movie_ids) - 1, "hidden": 16, "n_layers": 1, "max_len": 20}, "cpu")
    write_item_embeddings(warehouse, "sasrec", LATEST, *item_vectors(net, movie_ids))
