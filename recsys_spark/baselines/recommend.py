"""Fit the baselines on a warehouse and write their top-k to the recommendations table."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.baselines.config import MODELS, BaselinesConfig
from recsys_spark.baselines.genre import recommend_genre
from recsys_spark.baselines.hybrid import recommend_hybrid
from recsys_spark.baselines.markov import (recommend_ar2, recommend_markov, transitions_ar1,
                                           transitions_ar2)
from recsys_spark.baselines.popularity import item_popularity, recommend_popularity
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import new_run_id, parse_run_date, read_recommendations, write_recommendations

AR1_TABLE = "transitions_ar1"
AR2_TABLE = "transitions_ar2"


@dataclass
class Warehouse:
    """The ETL tables a baseline reads, and the fitted pieces shared by several models."""

    spark: SparkSession
    path: Path
    interactions: DataFrame
    items: DataFrame
    users: DataFrame
    popularity: DataFrame
    markov_top_k: int
    chains: dict[int, DataFrame] = field(default_factory=dict)

    def chain(self, order: int) -> DataFrame:
        """transitions_ar1 (order 1) or transitions_ar2 (order 2): counted and stored once per Warehouse."""
        if order not in self.chains:
            self.chains.update(fit_transitions(self.spark, self.path, self.interactions, self.markov_top_k, (order,)))
        return self.chains[order]

    @classmethod
    def open(cls, spark: SparkSession, warehouse: str | Path, config: BaselinesConfig) -> "Warehouse":
        path = Path(warehouse)
        interactions = read_table(spark, table_path(path, "interactions"))
        items = read_table(spark, table_path(path, "items"))
        users = read_table(spark, table_path(path, "users"))
        # Small (one row per item) and used by every model: computed once.
        popularity = item_popularity(interactions, items, config.popularity.recent_days).cache()
        return cls(spark, path, interactions, items, users, popularity, config.markov.top_k)

    def close(self) -> None:
        self.popularity.unpersist()


def fit_transitions(spark: SparkSession, warehouse: str | Path, interactions: DataFrame, top_k: int,
                    orders: tuple[int, ...] = (1, 2)) -> dict[int, DataFrame]:
    """Count AR(1)/AR(2) transitions, store them as Delta tables, and return them as read back from the tables."""
    fitters = {1: (AR1_TABLE, transitions_ar1), 2: (AR2_TABLE, transitions_ar2)}
    fitted = {}
    for order in orders:
        name, fit = fitters[order]
        path = table_path(warehouse, name)
        write_table(fit(interactions, top_k), path)
        fitted[order] = read_table(spark, path)
    return fitted


def recommend(wh: Warehouse, model: str, k: int, config: BaselinesConfig) -> DataFrame:
    """user_idx, item_idx, rank, score: the model's top-k for every user (fits transitions where it needs them)."""
    if model == "popularity":
        return recommend_popularity(wh.interactions, wh.popularity, k)
    if model == "genre":
        return recommend_genre(wh.interactions, wh.items, wh.popularity, k, config.genre)
    if model == "markov":
        return recommend_markov(wh.interactions, wh.chain(1), wh.popularity, k)
    if model == "ar2":
        return recommend_ar2(wh.interactions, wh.chain(1), wh.chain(2), wh.popularity, k)
    if model == "hybrid":
        return recommend_hybrid(wh.interactions, wh.chain(1), wh.popularity, k, config.hybrid.alpha)
    raise RecsysError(f"unknown baseline model {model!r}; expected one of {list(MODELS)}")


def _write(wh: Warehouse, model: str, k: int, run_date: dt.date, run_id: str, config: BaselinesConfig) -> int:
    recs = recommend(wh, model, k, config)
    write_recommendations(recs, wh.path, model, run_date, run_id, wh.items, wh.users)
    written = read_recommendations(wh.spark, wh.path, model).where(F.col("run_date") == F.lit(run_date))
    return written.count()


def _check(model: str | None, k: int) -> None:
    if model is not None and model not in MODELS:
        raise RecsysError(f"unknown baseline model {model!r}; expected one of {list(MODELS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RecsysError(f"k must be a positive integer, got {k!r}")


def topn(spark: SparkSession, warehouse: str | Path, model: str, k: int, run_date: str | dt.date | None,
         run_id: str | None, config: BaselinesConfig | None = None) -> int:
    """Fit one baseline and replace its (model, run_date) partition of recommendations; returns the rows written."""
    _check(model, k)
    config = config or BaselinesConfig()
    wh = Warehouse.open(spark, warehouse, config)
    try:
        return _write(wh, model, k, parse_run_date(run_date), run_id or new_run_id(), config)
    finally:
        wh.close()


def run_baselines(spark: SparkSession, warehouse: str | Path, k: int = 100, run_date: str | dt.date | None = None,
                  config: BaselinesConfig | None = None) -> dict[str, dict]:
    """Fit every configured baseline and write its top-k, one run_id per model: {model: {run_id, rows}}."""
    _check(None, k)
    config = config or BaselinesConfig()
    day = parse_run_date(run_date)
    wh = Warehouse.open(spark, warehouse, config)
    results = {}
    try:
        for model in config.models:
            run_id = new_run_id()
            results[model] = {"run_id": run_id, "rows": _write(wh, model, k, day, run_id, config)}
    finally:
        wh.close()
    return results
