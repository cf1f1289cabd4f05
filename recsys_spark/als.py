"""Spark MLlib ALS on the train split: explicit (ratings) or implicit (confidence = alpha * rating) feedback.

Explicit mode is scored by RMSE/MAE on the leave-last-out `test` rows and, when asked, on the global temporal split
(`temporal`: a second fit on the temporal train rows) and on a random 80/20 split of all ratings (`random_split`:
the figure the literature quotes). Rows whose user or item has no factor ("cold") cannot be predicted: they are counted and reported, and the
errors are computed on the rest (MLlib's coldStartStrategy="nan", then an explicit filter).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_core import storage
from recsys_core.catalogue import is_als_name
from recsys_core.config import POSITIVE, Config, Rule, at_least, checked, number_in, unknown_keys
from recsys_core.ties import Ties
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.errors import RecsysError
from recsys_spark.schemas import ITEM_FACTORS, USER_FACTORS
from recsys_spark.als_topn import score_top_k

MODELS_DIR = "models"


@dataclass
class AlsConfig(Config):
    section = "als"

    rank: int = checked(64, POSITIVE)
    reg_param: float = checked(0.1, at_least(0))
    max_iter: int = checked(10, POSITIVE)
    alpha: float = checked(1.0, at_least(0))
    implicit_prefs: bool = False
    seed: int = 42
    # model name: recommendations/metrics key, models/<name>, <name>_*_factors
    name: str = checked("als", Rule(is_als_name, "`als` or als_<name> (lower-case letters, digits, _)"))
    checkpoint_interval: int = checked(5, POSITIVE)
    checkpoint_dir: str | None = None      # default <warehouse>/_checkpoints
    num_blocks: int | None = None          # user and item blocks; None = MLlib's default (10)
    tune: bool = False                     # fit every grid point on train, keep the best on validation
    grid: dict[str, list] = field(default_factory=dict)   # e.g. {"rank": [32, 64], "reg_param": [0.05, 0.1]}
    temporal: bool = False                 # explicit only: a second fit on temporal train, scored on temporal test
    random_split: bool = False             # explicit only: also the random 80/20 RMSE of all ratings
    random_split_train_fraction: float = checked(0.8, number_in(0, 1, low_open=True, high_open=True))
    topn_block_size: int = checked(256, POSITIVE)  # users scored per numpy matmul in the blocked top-N

    def validate(self) -> None:
        unknown_keys(self.grid, GRID_KEYS, "als.grid")  # the tunable keys

    def with_params(self, **params) -> "AlsConfig":
        return dataclasses.replace(self, **params)


GRID_KEYS = ("rank", "reg_param", "max_iter", "alpha")


def build_als(config: AlsConfig) -> ALS:
    als = ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", rank=config.rank,
              regParam=config.reg_param, maxIter=config.max_iter, alpha=config.alpha,
              implicitPrefs=config.implicit_prefs, seed=config.seed, coldStartStrategy="nan",
              checkpointInterval=config.checkpoint_interval)
    if config.num_blocks:
        als = als.setNumBlocks(config.num_blocks)
    return als


def ensure_checkpoint_dir(spark: SparkSession, configured: str | None, default: str | Path) -> None:
    """ALS truncates its lineage every `checkpointInterval` iterations only when a checkpoint dir is set.

    The configured dir always wins; otherwise a dir the session already has is kept, else `default`.
    """
    if configured is None and spark.sparkContext.getCheckpointDir() is not None:
        return
    directory = configured or str(default)
    if storage.is_local(directory):
        Path(storage.local_path(directory)).mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(storage.spark_path(directory))


def ratings(interactions: DataFrame) -> DataFrame:
    return interactions.select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"),
                               F.col("rating").cast("float"))


def fit(train: DataFrame, config: AlsConfig) -> ALSModel:
    return build_als(config).fit(train)


@dataclass
class RatingErrors:
    rmse: float | None       # None when every row is cold
    mae: float | None
    rows: int                # rows in the split
    cold_rows: int           # rows whose user or item has no factor: not predictable, not in rmse/mae

    @property
    def scored_rows(self) -> int:
        return self.rows - self.cold_rows


def rating_errors(model: ALSModel, rows: DataFrame) -> RatingErrors:
    """RMSE and MAE of the predicted ratings, on the rows whose user and item both have factors; one pass."""
    predicted = model.transform(ratings(rows))
    cold = F.isnan("prediction") | F.col("prediction").isNull()
    err = F.when(~cold, F.col("prediction") - F.col("rating"))
    out = predicted.agg(F.count(F.lit(1)).alias("rows"), F.sum(cold.cast("long")).alias("cold"),
                        F.avg(err * err).alias("mse"), F.avg(F.abs(err)).alias("mae")).first()
    rows = int(out["rows"])
    cold_rows = int(out["cold"] or 0)
    rmse = float(out["mse"]) ** 0.5 if out["mse"] is not None else None
    mae = float(out["mae"]) if out["mae"] is not None else None
    return RatingErrors(rmse=rmse, mae=mae, rows=rows, cold_rows=cold_rows)


def validation_score(model: ALSModel, config: AlsConfig, train: DataFrame, validation: DataFrame,
                     ties: Ties) -> float:
    """What the grid search maximises: -RMSE on validation (explicit), HR@10 on the validation item (implicit)."""
    if not config.implicit_prefs:
        errors = rating_errors(model, validation)
        if errors.rmse is None:
            raise RecsysError("als tuning: every validation row is cold (no factors): cannot tune")
        return -errors.rmse
    from recsys_spark.evaluate import ranking_metrics

    recs = score_top_k(model.userFactors.withColumnRenamed("id", "user_idx"),
                       model.itemFactors.withColumnRenamed("id", "item_idx"),
                       train.select("user_idx", "item_idx"), 10, ties, block_size=config.topn_block_size)
    # The evaluator's HR@10, with each user's validation item as the relevant one (indices stand in for the ids).
    lists = recs.select(F.lit(config.name).alias("model"), F.current_date().alias("run_date"),
                        F.lit("tune").alias("run_id"), F.col("user_idx").alias("userId"), "rank",
                        F.col("item_idx").alias("movieId"))
    relevant = validation.select(F.col("user_idx").alias("userId"), F.col("item_idx").alias("movieId"))
    return ranking_metrics(lists, relevant, catalogue_size=1, ks=[10]).where(F.col("metric") == "hr").first()["value"]


@dataclass
class GridPoint:
    params: dict
    score: float
    seconds: float


def grid_points(config: AlsConfig) -> list[dict]:
    keys = [k for k in GRID_KEYS if k in config.grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(list(config.grid[k]) for k in keys))]


def tune(train: DataFrame, validation: DataFrame, config: AlsConfig,
         ties: Ties) -> tuple[AlsConfig, list[GridPoint]]:
    """Fit every grid point on train, score it on validation, return the best config (no CrossValidator)."""
    points = grid_points(config)
    if not points:
        raise RecsysError("als.tune is true but als.grid is empty (e.g. als.grid={rank: [32, 64]})")
    results = []
    for params in points:
        start = time.perf_counter()
        candidate = config.with_params(**params)
        score = validation_score(fit(train, candidate), candidate, train, validation, ties)
        results.append(GridPoint(params, score, time.perf_counter() - start))
    best = max(results, key=lambda p: p.score)
    return config.with_params(**best.params), results


def random_split_errors(interactions: DataFrame, config: AlsConfig) -> RatingErrors:
    """Explicit RMSE/MAE on a random (train_fraction, rest) split of every rating: the literature's protocol."""
    explicit = config.with_params(implicit_prefs=False)
    fraction = config.random_split_train_fraction
    train, test = ratings(interactions).randomSplit([fraction, 1 - fraction], seed=config.seed)
    train = train.cache()
    try:
        return rating_errors(fit(train, explicit), test)
    finally:
        train.unpersist()


def save(model: ALSModel, warehouse: str | Path, name: str, users: DataFrame, items: DataFrame) -> dict[str, str]:
    """The MLlib model to <warehouse>/models/<name>, its factors to the <name>_user/item_factors Delta tables."""
    model_path = storage.join(str(warehouse), MODELS_DIR, name)
    model.write().overwrite().save(storage.spark_path(model_path))
    user_factors = (model.userFactors.withColumnRenamed("id", "user_idx")
                    .join(users.select("user_idx", "userId"), "user_idx")
                    .select(F.col("user_idx").cast("int"), F.col("userId").cast("long"), "features"))
    item_factors = (model.itemFactors.withColumnRenamed("id", "item_idx")
                    .join(items.where(F.col("item_idx").isNotNull()).select("item_idx", "movieId"), "item_idx")
                    .select(F.col("item_idx").cast("int"), F.col("movieId").cast("long"), "features"))
    paths = {"model": model_path,
             "user_factors": table_path(warehouse, f"{name}_user_factors"),
             "item_factors": table_path(warehouse, f"{name}_item_factors")}
    write_table(user_factors, paths["user_factors"], schema=USER_FACTORS)
    write_table(item_factors, paths["item_factors"], schema=ITEM_FACTORS)
    return paths


def load_model(warehouse: str | Path, name: str = "als") -> ALSModel:
    path = storage.join(str(warehouse), MODELS_DIR, name)
    if not storage.exists(storage.join(path, "metadata")):
        raise RecsysError(f"no ALS model at {path} (run `recsys als` first)")
    return ALSModel.load(storage.spark_path(path))


@dataclass
class AlsResult:
    config: AlsConfig
    model: ALSModel
    paths: dict[str, str]
    errors: dict[str, RatingErrors]          # split -> errors (explicit): test, validation, temporal_test, random_80_20
    grid: list[GridPoint]
    fit_seconds: float
    metric_rows: list[dict]


def run_als(spark: SparkSession, warehouse: str | Path, config: AlsConfig, run_date: dt.date,
            run_id: str) -> AlsResult:
    """Fit on train (after an optional grid search), save model and factors, write the RMSE/MAE rows to `metrics`."""
    from recsys_spark.evaluate import metric_row, read_interactions, write_metrics

    ensure_checkpoint_dir(spark, config.checkpoint_dir, storage.join(str(warehouse), "_checkpoints"))
    interactions, provenance = read_interactions(spark, warehouse)  # the version the RMSE rows record
    users = read_table(spark, table_path(warehouse, "users"))
    items = read_table(spark, table_path(warehouse, "items"))
    train = ratings(interactions.where(F.col("split") == "train")).cache()
    if train.isEmpty():
        raise RecsysError(f"interactions in {warehouse} has no `train` rows: nothing to fit ALS on")

    grid: list[GridPoint] = []
    if config.tune:
        validation = interactions.where(F.col("split") == "validation")
        config, grid = tune(train, validation, config, Ties.of_warehouse(warehouse))

    start = time.perf_counter()
    model = fit(train, config)
    model.userFactors.count()  # materialise the factors so the timing is the fit's
    fit_seconds = time.perf_counter() - start
    paths = save(model, warehouse, config.name, users, items)

    errors: dict[str, RatingErrors] = {}
    if not config.implicit_prefs:
        errors["test"] = rating_errors(model, interactions.where(F.col("split") == "test"))
        errors["validation"] = rating_errors(model, interactions.where(F.col("split") == "validation"))
        if config.temporal:
            temporal_train = ratings(interactions.where(F.col("temporal_split") == "train"))
            if not temporal_train.isEmpty():
                temporal_model = fit(temporal_train, config)
                errors["temporal_test"] = rating_errors(temporal_model,
                                                        interactions.where(F.col("temporal_split") == "test"))
        if config.random_split:
            train_pct = round(100 * config.random_split_train_fraction)
            errors[f"random_{train_pct}_{100 - train_pct}"] = random_split_errors(interactions, config)
    train.unpersist()

    rows = [metric_row(config.name, run_id, run_date, split, metric, None, value, provenance=provenance)
            for split, err in errors.items()
            for metric, value in (("rmse", err.rmse), ("mae", err.mae)) if value is not None]
    if rows:
        write_metrics(rows, warehouse)
    return AlsResult(config=config, model=model, paths=paths, errors=errors, grid=grid, fit_seconds=fit_seconds,
                     metric_rows=rows)
