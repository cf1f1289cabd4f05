"""Fit the baselines on a warehouse and write their top-k to the recommendations table."""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.baselines.common import seen_as_of, user_histories
from recsys_spark.baselines.ease import EASEConfig
from recsys_spark.baselines.genre import GenreConfig
from recsys_spark.baselines.hybrid import HybridConfig
from recsys_spark.baselines.itemcf import ItemCFConfig, item_neighbors, write_scoring_config
from recsys_spark.baselines.markov import MarkovConfig, transitions_ar1, transitions_ar2
from recsys_spark.baselines.popularity import PopularityConfig, item_popularity
from recsys_core import catalogue
from recsys_core.config import POSITIVE, Config, check_value
from recsys_core.ties import Ties
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.errors import ConfigError
from recsys_spark.recommendations import (LIST_SPLITS, as_of_validation, list_table, new_run_id,
                                          read_recommendations, write_recommendations)
from recsys_spark.schemas import ITEM_NEIGHBORS, TRANSITIONS_AR1, TRANSITIONS_AR2

AR1_TABLE = "transitions_ar1"
AR2_TABLE = "transitions_ar2"
NEIGHBORS_TABLE = "item_neighbors"


@dataclass
class TrainTables:
    """The ETL tables a baseline reads, and the fitted pieces several baselines share."""

    spark: SparkSession
    warehouse: Path
    interactions: DataFrame
    items: DataFrame
    users: DataFrame
    popularity: DataFrame
    config: "BaselinesConfig"
    ties: Ties  # the ETL's tie policy (etl_report.json): the order of equal scores in every list
    split: str = "test"  # the list these tables make: test, or validation (as_of)
    fitted: dict = field(default_factory=dict)  # fitted once, shared with the validation view

    def chain(self, order: int) -> DataFrame:
        """transitions_ar1 (order 1) or transitions_ar2 (order 2): counted and stored once per TrainTables."""
        if order not in self.fitted:
            self.fitted.update(fit_transitions(self.spark, self.warehouse, self.interactions,
                                               self.config.markov.top_k, (order,)))
        return self.fitted[order]

    def neighbors(self) -> DataFrame:
        """item_neighbors (ItemCF's similarities): computed and stored once per TrainTables."""
        if "neighbors" not in self.fitted:
            path = table_path(self.warehouse, NEIGHBORS_TABLE)
            write_table(item_neighbors(self.interactions, self.config.itemcf), path, schema=ITEM_NEIGHBORS)
            write_scoring_config(self.warehouse, self.config.itemcf)
            self.fitted["neighbors"] = read_table(self.spark, path)
        return self.fitted["neighbors"]

    def shared(self, key, fit: Callable[[], object]):
        """`fit()` once per TrainTables, shared by the test and validation views (what a model fits on the train
        rows alone); `key`: what names it, e.g. the fitting function."""
        if key not in self.fitted:
            self.fitted[key] = fit()
        return self.fitted[key]

    def users_as_of(self) -> DataFrame:
        """user_idx, seen: the users of this view's list and what it leaves out (common.seen_as_of), from histories
        collected and cached once for both views."""
        if "histories" not in self.fitted:
            test_view = self.interactions if self.split == "test" else self.fitted["test_interactions"]
            self.fitted["histories"] = user_histories(test_view).cache()
        return seen_as_of(self.fitted["histories"], self.split)

    def as_of(self, split: str) -> "TrainTables":
        """The tables as a list for `split` sees them: `validation` drops the test rows and treats the validation
        item as the target (history and seen items = train only). Everything fitted depends on train rows only
        (popularity, transitions, neighbours, EASE's weights), so it is shared, not refitted."""
        if split == "test":
            return self
        self.fitted.setdefault("test_interactions", self.interactions)
        return dataclasses.replace(self, interactions=as_of_validation(self.interactions), split=split)

    @classmethod
    def open(cls, spark: SparkSession, warehouse: str | Path, config: "BaselinesConfig") -> "TrainTables":
        path = Path(warehouse)
        interactions = read_table(spark, table_path(path, "interactions"))
        items = read_table(spark, table_path(path, "items"))
        users = read_table(spark, table_path(path, "users"))
        # Small (one row per item) and used by every model: computed once.
        popularity = item_popularity(interactions, items, config.popularity.recent_days).cache()
        return cls(spark, path, interactions, items, users, popularity, config, Ties.of_warehouse(warehouse))

    def close(self) -> None:
        self.popularity.unpersist()
        if "histories" in self.fitted:
            self.fitted["histories"].unpersist()


def recommender(model: str) -> Callable[[TrainTables, int, "BaselinesConfig"], DataFrame]:
    """What computes a baseline of the catalogue (its `implementation`, in the model's own module): user_idx,
    item_idx, rank, score of every user's top-k, fitting transitions where needed."""
    entry = catalogue.MODELS.get(model)
    if entry is None or entry.family is not catalogue.BASELINE:
        raise catalogue.unknown_model(model, family=catalogue.BASELINE)
    return catalogue.load(entry.implementation)


@dataclass(frozen=True)
class BaselinesConfig(Config):
    """The `baselines:` section of conf/baselines.yaml (every key overridable)."""

    section = "baselines"

    models: tuple[str, ...] | None = None  # which ones `recsys baselines` fits; None: every baseline
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    genre: GenreConfig = field(default_factory=GenreConfig)
    markov: MarkovConfig = field(default_factory=MarkovConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    itemcf: ItemCFConfig = field(default_factory=ItemCFConfig)
    ease: EASEConfig = field(default_factory=EASEConfig)

    def validate(self) -> None:
        every = tuple(catalogue.names(catalogue.BASELINE))
        if self.models is None:
            object.__setattr__(self, "models", every)
        if not self.models or any(m not in every for m in self.models):
            raise ConfigError(f"baselines.models: {list(self.models)} must be a non-empty subset of {list(every)}")


def fit_transitions(spark: SparkSession, warehouse: str | Path, interactions: DataFrame, top_k: int,
                    orders: tuple[int, ...] = (1, 2)) -> dict[int, DataFrame]:
    """Count AR(1)/AR(2) transitions, store them as Delta tables, and return them as read back from the tables."""
    fitters = {1: (AR1_TABLE, transitions_ar1, TRANSITIONS_AR1), 2: (AR2_TABLE, transitions_ar2, TRANSITIONS_AR2)}
    fitted = {}
    for order in orders:
        name, fit, schema = fitters[order]
        path = table_path(warehouse, name)
        write_table(fit(interactions, top_k), path, schema=schema)
        fitted[order] = read_table(spark, path)
    return fitted


def recommend(tables: TrainTables, model: str, k: int, config: BaselinesConfig) -> DataFrame:
    """user_idx, item_idx, rank, score: the model's top-k for every user (fits transitions where it needs them)."""
    return recommender(model)(tables, k, config)


def _write(tables: TrainTables, model: str, k: int, run_date: dt.date, run_id: str,
           config: BaselinesConfig) -> int:
    """The model's test-time list (recommendations) and validation-time list (recommendations_validation);
    returns the rows of the test-time one."""
    for split in LIST_SPLITS:
        recs = recommend(tables.as_of(split), model, k, config)
        write_recommendations(recs, tables.warehouse, model, run_date, run_id, tables.items, tables.users,
                              table=list_table(split))
    written = read_recommendations(tables.spark, tables.warehouse, model).where(F.col("run_date") == F.lit(run_date))
    return written.count()


def _check(model: str | None, k: int) -> None:
    if model is not None:
        recommender(model)
    check_value("k", k, POSITIVE)


def topn(spark: SparkSession, warehouse: str | Path, model: str, k: int, run_date: dt.date | None,
         run_id: str | None, config: BaselinesConfig | None = None) -> int:
    """Fit one baseline and replace its (model, run_date) partition of recommendations; returns the rows written."""
    _check(model, k)
    config = config or BaselinesConfig()
    tables = TrainTables.open(spark, warehouse, config)
    try:
        return _write(tables, model, k, run_date or dt.date.today(), run_id or new_run_id(), config)
    finally:
        tables.close()


def run_baselines(spark: SparkSession, warehouse: str | Path, k: int = 100, run_date: dt.date | None = None,
                  config: BaselinesConfig | None = None) -> dict[str, dict]:
    """Fit every configured baseline and write its top-k, one run_id per model: {model: {run_id, rows}}."""
    _check(None, k)
    config = config or BaselinesConfig()
    day = run_date or dt.date.today()
    tables = TrainTables.open(spark, warehouse, config)
    results = {}
    try:
        for model in config.models:
            run_id = new_run_id()
            results[model] = {"run_id": run_id, "rows": _write(tables, model, k, day, run_id, config)}
    finally:
        tables.close()
    return results
