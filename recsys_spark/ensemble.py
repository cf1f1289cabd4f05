"""A learned ensemble: weighted reciprocal-rank fusion of other models' top-N, weights chosen on validation.

Each member m's list gives an item at rank r the reciprocal-rank score 1 / (rrf_k + r) (Cormack et al., 2009);
the blend scores

    score(u, i) = sum over members m of w_m / (rrf_k + rank_m(u, i))      (0 where i is not in m's top `depth`)

and ranks by score (equal scores by the tie key of recsys_core.ties, as every list). The weights are a point of the simplex grid {w_m = n_m / steps, sum = 1}:
the one with the best NDCG@10 of the blended *validation-time* lists (`recommendations_validation`: history =
train only) against each user's validation item. Choosing reads nothing else — not the `recommendations` table,
not a test row — so the test figure of the chosen blend is an honest held-out number. The chosen weights then
blend the members' test-time lists into `recommendations` (evaluated once, by the one evaluator, like any model),
and the validation-time lists into `recommendations_validation`.

NDCG@10 with one relevant item is the evaluator's own definition (1 / log2(r + 1) for a hit at rank r <= 10,
averaged over all validation users); the search computes it for every grid point at once in numpy over the
candidates of (a seeded sample of at most `max_users`) users, because a Spark job per grid point would cost more
than the lists did.
"""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys_core import catalogue
from recsys_core.config import POSITIVE, Config, at_least, checked
from recsys_core.ties import Ties
from recsys_spark.delta import read_table, table_exists, table_path, write_table
from recsys_spark.errors import ConfigError, RecsysError
from recsys_spark.recommendations import PARTITION_BY, list_table
from recsys_spark.schemas import RECOMMENDATIONS

NAME = "ensemble"
CHOICE_K = 10  # the weights maximise validation NDCG@10


@dataclass(frozen=True)
class EnsembleConfig(Config):
    section = "ensemble"

    models: list[str] = field(default_factory=catalogue.ensemble_members)  # the members
    depth: int = checked(100, POSITIVE)               # each member's top `depth` items enter the blend
    rrf_k: float = checked(60.0, at_least(0))         # the reciprocal-rank constant: larger flattens the discount
    weight_steps: int = checked(10, POSITIVE)         # weights are multiples of 1 / weight_steps summing to 1
    max_users: int | None = checked(20000, POSITIVE)  # validation users the weights are chosen on (seeded); null: all
    seed: int = 0

    def validate(self) -> None:
        if len(self.models) < 2 or len(set(self.models)) != len(self.models):
            raise ConfigError(f"ensemble.models must name at least two distinct models, got {self.models!r}")
        if NAME in self.models:
            raise ConfigError("ensemble.models cannot contain the ensemble itself")
        if self.depth < CHOICE_K:
            raise ConfigError(f"ensemble.depth must be at least {CHOICE_K}, got {self.depth!r}")


@dataclass(frozen=True)
class Choice:
    weights: dict[str, float]     # member -> weight (sum 1)
    ndcg: float                   # validation NDCG@10 of the blend with these weights (over the chosen users)
    users: int                    # validation users the choice was made on
    run_dates: dict[str, dt.date]  # member -> the run date of its lists that were blended


def member_run_dates(spark: SparkSession, warehouse: str | Path, config: EnsembleConfig,
                     run_date: dt.date) -> dict[str, dt.date]:
    """Each member's latest run date on or before `run_date` in recommendations_validation."""
    path = table_path(warehouse, list_table("validation"))
    if not table_exists(path):
        raise RecsysError(f"Delta table not found: {path} (the members' validation-time lists: run `recsys topn "
                          f"--model NAME` for each of ensemble.models first)")
    latest = (read_table(spark, path).where(F.col("model").isin(*config.models)
                                           & (F.col("run_date") <= F.lit(run_date)))
              .groupBy("model").agg(F.max("run_date").alias("run_date")).collect())
    found = {r.model: r.run_date for r in latest}
    missing = [m for m in config.models if m not in found]
    if missing:
        raise RecsysError(f"ensemble.models: no lists of {missing} on or before {run_date} in {path} "
                          f"(run `recsys topn --model NAME` for them first)")
    return found


def member_lists(spark: SparkSession, warehouse: str | Path, split: str, run_dates: dict[str, dt.date],
                 depth: int) -> DataFrame:
    """member, userId, movieId, rank, tie: the members' lists of `split` (test: recommendations; validation:
    recommendations_validation), each at its run date, cut to `depth`; tie: the pair's tie key (the warehouse's
    tie policy, over its user_idx and item_idx)."""
    path = table_path(warehouse, list_table(split))
    if not table_exists(path):
        raise RecsysError(f"Delta table not found: {path}")
    chosen = spark.createDataFrame(list(run_dates.items()), "model string, run_date date")
    users = read_table(spark, table_path(warehouse, "users")).select("userId", "user_idx")
    items = read_table(spark, table_path(warehouse, "items")).select("movieId", "item_idx")
    return (read_table(spark, path).join(F.broadcast(chosen), ["model", "run_date"])
            .where(F.col("rank") <= depth)
            .join(users, "userId").join(F.broadcast(items), "movieId")
            .select(F.col("model").alias("member"), "userId", "movieId", "rank",
                    Ties.of_warehouse(warehouse).column().alias("tie")))


def reciprocal_rank(rrf_k: float) -> F.Column:
    return F.lit(1.0) / (F.lit(float(rrf_k)) + F.col("rank"))


def blend(lists: DataFrame, weights: dict[str, float], rrf_k: float, k: int) -> DataFrame:
    """userId, movieId, score, rank: each user's top-k of the weighted reciprocal-rank fusion (lists: member_lists)."""
    spark = lists.sparkSession
    positive = {m: w for m, w in weights.items() if w > 0}
    weights_df = F.broadcast(spark.createDataFrame(list(positive.items()), "member string, weight double"))
    scored = (lists.join(weights_df, "member")
              .groupBy("userId", "movieId", "tie").agg(F.sum(F.col("weight") * reciprocal_rank(rrf_k)).alias("score")))
    best_first = Window.partitionBy("userId").orderBy(F.col("score").desc(), F.col("tie").asc())
    return scored.withColumn("rank", F.row_number().over(best_first)).where(F.col("rank") <= k)


def simplex_grid(n_members: int, steps: int) -> np.ndarray:
    """[points, n_members]: every weight vector with entries in {0, 1/steps, ..., 1} summing to 1."""
    points = [p for p in itertools.product(range(steps + 1), repeat=n_members) if sum(p) == steps]
    return np.array(points, dtype=np.float64) / steps


def validation_candidates(spark: SparkSession, warehouse: str | Path, config: EnsembleConfig,
                          run_dates: dict[str, dt.date]):
    """What the weights are chosen on, read from the validation-time lists and the validation rows only.

    Returns (user, tie, rr, is_target, n_users): per candidate row its user's position, tie key, the members'
    reciprocal ranks [rows, members] (0 where absent) and whether it is the user's validation item; n_users is the
    number of (sampled) validation users, the NDCG denominator."""
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    targets = interactions.where(F.col("split") == "validation").select("userId", F.col("movieId").alias("target"))
    targets = targets.dropDuplicates(["userId"])
    if config.max_users is not None:
        sampled = targets.orderBy(F.xxhash64("userId", F.lit(config.seed)), "userId").limit(config.max_users)
        targets = sampled.localCheckpoint()  # one sample, not one per action
    n_users = targets.count()
    if n_users == 0:
        raise RecsysError("interactions has no `validation` rows: the ensemble has nothing to choose its weights on")
    lists = member_lists(spark, warehouse, "validation", run_dates, config.depth)
    wide = (lists.join(targets.select("userId"), "userId")
            .groupBy("userId", "movieId", "tie").pivot("member", config.models)
            .agg(F.sum(reciprocal_rank(config.rrf_k)))
            .join(targets, "userId")
            .select("userId", "tie", *[F.coalesce(F.col(f"`{m}`"), F.lit(0.0)).alias(f"rr{i}")
                                           for i, m in enumerate(config.models)],
                    (F.col("movieId") == F.col("target")).alias("is_target")))
    frame = wide.toPandas()
    user = np.unique(frame["userId"].to_numpy(), return_inverse=True)[1]
    rr = frame[[f"rr{i}" for i in range(len(config.models))]].to_numpy(np.float64)
    return user, frame["tie"].to_numpy(np.int64), rr, frame["is_target"].to_numpy(bool), n_users


def ndcg_at(weights: np.ndarray, user: np.ndarray, tie: np.ndarray, rr: np.ndarray, is_target: np.ndarray,
            n_users: int, k: int = CHOICE_K) -> np.ndarray:
    """[points]: NDCG@k of the blend for each weight vector of `weights` [points, members], as the evaluator
    defines it: the target's rank r = 1 + the user's items ranked before it (higher score, or equal score and a
    smaller tie key, blend's order; score 0 means not in the list), 1 / log2(r + 1) if r <= k, averaged over n_users."""
    out = np.zeros(len(weights))
    with_target = np.isin(user, user[is_target])  # a user whose target no member listed scores 0 everywhere
    if not with_target.any():
        return out
    user = np.unique(user[with_target], return_inverse=True)[1]
    tie, rr, is_target = tie[with_target], rr[with_target], is_target[with_target]
    target_row = np.empty(user.max() + 1, dtype=np.int64)
    target_row[user[is_target]] = np.flatnonzero(is_target)
    target_tie = tie[target_row][user]
    for p, w in enumerate(weights):
        score = rr @ w
        target_score = score[target_row]
        of_row = target_score[user]
        before = (score > 0) & ((score > of_row) | ((score == of_row) & (tie < target_tie)))
        rank = 1 + np.bincount(user, weights=before, minlength=len(target_row))
        hit = (target_score > 0) & (rank <= k)
        out[p] = float(np.sum(1.0 / np.log2(rank[hit] + 1))) / n_users
    return out


def choose_weights(spark: SparkSession, warehouse: str | Path, config: EnsembleConfig,
                   run_date: dt.date) -> Choice:
    """The grid point with the best validation NDCG@10 (the first in grid order among equals)."""
    run_dates = member_run_dates(spark, warehouse, config, run_date)
    user, tie, rr, is_target, n_users = validation_candidates(spark, warehouse, config, run_dates)
    grid = simplex_grid(len(config.models), config.weight_steps)
    scores = ndcg_at(grid, user, tie, rr, is_target, n_users)
    best = int(np.argmax(scores))
    return Choice(dict(zip(config.models, grid[best].tolist())), float(scores[best]), n_users, run_dates)


def write_lists(blended: DataFrame, warehouse: str | Path, split: str, run_date: dt.date, run_id: str) -> None:
    out = blended.select(F.lit(NAME).alias("model"), F.lit(run_id).alias("run_id"),
                         F.lit(run_date).cast("date").alias("run_date"), F.col("userId").cast("long"),
                         F.col("rank").cast("int"), F.col("movieId").cast("long"), F.col("score").cast("double"))
    write_table(out, table_path(warehouse, list_table(split)), partition_by=PARTITION_BY,
                replace={"model": NAME, "run_date": run_date}, schema=RECOMMENDATIONS)


def run_ensemble(spark: SparkSession, warehouse: str | Path, config: EnsembleConfig, k: int, run_date: dt.date,
                 run_id: str) -> Choice:
    """Choose the weights on the validation-time lists, then write the blend of both lists."""
    if k < CHOICE_K:
        raise RecsysError(f"--k must be at least {CHOICE_K} for the ensemble (its weights maximise NDCG@10)")
    choice = choose_weights(spark, warehouse, config, run_date)
    for split in ("validation", "test"):
        lists = member_lists(spark, warehouse, split, choice.run_dates, config.depth)
        write_lists(blend(lists, choice.weights, config.rrf_k, k), warehouse, split, run_date, run_id)
    return choice
