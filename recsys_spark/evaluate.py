"""The one evaluator: every model's `recommendations` against each user's leave-last-out `test` item.

Every user has exactly one relevant item (their test item), and lists are full rankings over the catalogue with the
user's train/validation items already excluded. With r = the rank of the test item in the user's list (no hit when
it is absent from the first K, the user has no list, or its row's score is NaN or infinite: a diverged model's
list never scores), the metrics at K are, per user:

    hr@K        = 1 if r <= K else 0
    recall@K    = |top K ∩ relevant| / |relevant|                      = hr@K
    precision@K = |top K ∩ relevant| / K                               = hr@K / K
    ndcg@K      = DCG@K / IDCG@K = (1 / log2(r + 1)) / 1                (0 without a hit)
    mrr@K       = 1 / r                                                 (0 without a hit)
    map@K       = AP@K = (1 / min(|relevant|, K)) * sum_{i<=K} P@i * rel_i = 1 / r   (0 without a hit)

each averaged over ALL test users (users without recommendations count as zeros), and

    coverage@K  = distinct items recommended in anyone's top K / catalogue size (items with an item_idx).

The means are summed in Spark over the hits only (a user without a hit adds 0). Their intervals (`ci_low`,
`ci_high`) come from a seeded bootstrap over the test users (recsys_spark.intervals), for which the rank of each hit
(one small row per user and model) is collected; the same resamples give each model's paired difference to
`evaluate.reference_model` (AR(2) by default): rows `<metric>_minus_<reference>` with their own interval.
The same evaluator scores the validation-time lists (`recommendations_validation`, split `validation`) against
each user's validation item: what the ensemble and `recsys tune` choose on.
RMSE/MAE are written by the models that predict ratings (ALS explicit) through `write_metrics`; the comparison of
models (recsys_spark.report.comparison_table) shows both.

Every row records what produced it (`PROVENANCE`): the tie policy and the input from `<warehouse>/etl_report.json`,
and the version of `interactions` it was scored on (read at that very version: `read_interactions`). A list is
scored only against the split it was made from: one written while `interactions` stood at another version (made
before a re-ETL) is refused, one line naming it and both versions (`refuse_stale`).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from recsys_core import catalogue, storage
from recsys_core.config import Config, Rule, checked, number_in
from recsys_spark.delta import (partition_commits, partition_times, read_arrow, read_table, rows_version_at,
                                table_exists, table_path, table_version, write_arrow)
from recsys_spark.errors import RecsysError
from recsys_spark.intervals import intervals
from recsys_spark.recommendations import LIST_SPLITS, list_table
from recsys_spark.schemas import METRICS as METRICS_SCHEMA

METRICS_TABLE = "metrics"
RANKING_METRICS = ("hr", "ndcg", "mrr", "recall", "precision", "map")
# What produced a metric row (docs/SCHEMAS.md, `metrics`): null where it is not known (no etl_report.json).
PROVENANCE = ("tie_break", "tie_seed", "input_path", "input_format", "interactions_version")


KS = Rule(lambda v: isinstance(v, (list, tuple)) and len(v) > 0
          and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v) and len(set(v)) == len(v),
          "a non-empty list of distinct positive integers")


@dataclass
class EvaluateConfig(Config):
    section = "evaluate"

    ks: list[int] = checked(rule=KS, default_factory=lambda: [5, 10, 20])  # the cutoffs of every metric
    # resamples of the test users for the intervals (0: no intervals)
    bootstrap_resamples: int = checked(1000, Rule(lambda v: v == 0 or v >= 100, "0 (off) or at least 100"))
    ci_level: float = checked(0.95, number_in(0.5, 1, high_open=True))
    seed: int = 42
    reference_model: str | None = catalogue.REFERENCE_MODEL  # every other model's paired difference to it (null: none)


# ---------------------------------------------------------------------------------------------------------------
# The metrics table


def metric_row(model: str, run_id: str, run_date: dt.date, split: str, metric: str, k: int | None,
               value: float, ci_low: float | None = None, ci_high: float | None = None,
               provenance: Mapping[str, object] | None = None) -> dict:
    """One `metrics` row; `provenance` (`read_interactions`'s) fills the PROVENANCE columns, null without it."""
    return {"model": model, "run_id": run_id, "run_date": run_date, "split": split, "metric": metric,
            "k": k, "value": float(value), "ci_low": ci_low, "ci_high": ci_high,
            **{key: (provenance or {}).get(key) for key in PROVENANCE}}


def etl_inputs(warehouse: str | Path) -> dict:
    """The tie policy (`tie_break`, `tie_seed`) and the input (`input_path`, `input_format`) of the ETL that wrote
    the warehouse, from <warehouse>/etl_report.json; all null when there is none. A report from before `format`
    was recorded read MovieLens."""
    path = storage.join(str(warehouse), "etl_report.json")
    text = storage.read_bytes(path)
    if text is None:
        return {key: None for key in ("tie_break", "tie_seed", "input_path", "input_format")}
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecsysError(f"{path}: not valid JSON ({exc})") from None
    config = report.get("config") if isinstance(report.get("config"), dict) else {}  # an older report's layout
    seed = report.get("seed", config.get("seed"))
    data = report.get("data")
    return {"tie_break": report.get("tie_break", config.get("tie_break")),
            "tie_seed": int(seed) if seed is not None else None,
            "input_path": str(data) if data is not None else None,
            "input_format": report.get("format", "movielens")}


def read_interactions(spark: SparkSession, warehouse: str | Path) -> tuple[DataFrame, dict]:
    """`interactions` as of its current version, and the provenance of what is scored on it: that version (the
    frame is read at exactly it, so a later ETL commit cannot slip in between) and `etl_inputs`."""
    path = table_path(warehouse, "interactions")
    version = table_version(path)
    return read_table(spark, path, version), {**etl_inputs(warehouse), "interactions_version": version}


def write_metrics(rows: Sequence[dict], warehouse: str | Path) -> str:
    """Write metric rows, replacing each (model, run_date) partition they touch in one commit per partition.

    Rows already in a partition survive unless the new rows carry the same (split, metric, k): so the ALS job's
    RMSE rows and the evaluator's ranking rows for one (model, run_date) live side by side, and re-running either
    replaces only its own rows, never duplicating them.
    """
    path = table_path(warehouse, METRICS_TABLE)
    new = pa.Table.from_pylist([{**dict.fromkeys(METRICS_SCHEMA.names), **r} for r in rows], schema=METRICS_SCHEMA)
    existing = _with_current_schema(read_arrow(path), path) if table_exists(path) else None
    for model, run_date in sorted({(r["model"], r["run_date"]) for r in rows}):
        part = new.filter(pc.and_(pc.equal(new["model"], model), pc.equal(new["run_date"], run_date)))
        keep = _kept_rows(existing, model, run_date, part)
        write_arrow(pa.concat_tables([keep, part]) if keep is not None else part, path,
                    replace={"model": model, "run_date": run_date})
    return path


def _with_current_schema(existing: pa.Table, path: str) -> pa.Table:
    """A metrics table written before the interval or provenance columns existed gets them (null), in one commit."""
    if all(name in existing.column_names for name in METRICS_SCHEMA.names):
        return existing
    existing = _conformed(existing)
    write_arrow(existing, path)
    return existing


def _conformed(table: pa.Table) -> pa.Table:
    """`table` in METRICS_SCHEMA's columns and types; a column an older table lacks is null."""
    for f in METRICS_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


def _kept_rows(existing: pa.Table | None, model: str, run_date: dt.date, new_part: pa.Table) -> pa.Table | None:
    if existing is None or existing.num_rows == 0:
        return None
    existing = existing.select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)
    same = existing.filter(pc.and_(pc.equal(existing["model"], model), pc.equal(existing["run_date"], run_date)))
    replaced = {(r["split"], r["metric"], r["k"]) for r in new_part.select(["split", "metric", "k"]).to_pylist()}
    mask = [(r["split"], r["metric"], r["k"]) not in replaced
            for r in same.select(["split", "metric", "k"]).to_pylist()]
    return same.filter(pa.array(mask, pa.bool_()))


def read_metrics(warehouse: str | Path) -> pa.Table:
    path = table_path(warehouse, METRICS_TABLE)
    if not table_exists(path):
        return METRICS_SCHEMA.empty_table()
    return _conformed(read_arrow(path))  # an older table (no interval or provenance columns) reads as null


# ---------------------------------------------------------------------------------------------------------------
# Ranking metrics


def select_runs(recs: DataFrame, commits: Mapping[tuple[str, dt.date], int], model: str | None = None,
                run_date: dt.date | None = None) -> list:
    """The (model, run_date, run_id) partitions to evaluate: the given date, or each model's latest, i.e. the list
    written last (`commits`: delta.partition_commits), the later run date among lists written by one commit."""
    if model:
        recs = recs.where(F.col("model") == model)
    if run_date is not None:
        recs = recs.where(F.col("run_date") == F.lit(run_date).cast("date"))
    runs = recs.groupBy("model", "run_date").agg(F.collect_set("run_id").alias("run_ids")).collect()
    for r in runs:
        if len(r.run_ids) != 1:  # a write replaces the whole partition: one run's rows, never two
            raise RecsysError(f"the ({r.model}, {r.run_date}) lists hold rows of {len(r.run_ids)} runs "
                              f"{sorted(r.run_ids)}: re-run that model's top-N")
    runs = [Row(model=r.model, run_date=r.run_date, run_id=r.run_ids[0]) for r in runs]
    if run_date is None:
        latest = {}
        for r in runs:
            order = (commits.get((r.model, r.run_date), -1), r.run_date)
            if r.model not in latest or order > latest[r.model][0]:
                latest[r.model] = (order, r)
        runs = [r for _, r in latest.values()]
    return sorted(runs, key=lambda r: (r.model, r.run_date))


def finite_scores(recs: DataFrame) -> DataFrame:
    """The rows of `recs` whose score is finite (or null, or absent: lists without scores): a NaN or infinite
    score (a diverged model) is never a hit and never counts for coverage, whatever its rank."""
    if "score" not in recs.columns:
        return recs
    score = F.col("score")
    return recs.where(score.isNull() | (F.abs(score) < F.lit(float("inf"))))  # Spark orders NaN above +inf


def ranking_metrics(recs: DataFrame, test: DataFrame, catalogue_size: int, ks: Iterable[int]) -> DataFrame:
    """Long-format metrics (model, run_date, run_id, metric, k, value) for every (model, run_date) in `recs`.

    recs: model, run_date, run_id, userId, rank, movieId.  test: userId, movieId (one row per test user).
    """
    ks = sorted(set(ks))
    test = test.select("userId", "movieId").dropDuplicates(["userId"])
    n_users = test.count()
    if n_users == 0:
        raise RecsysError("interactions has no `test` rows: nothing to evaluate against (re-run the ETL)")
    runs = recs.select("model", "run_date", "run_id").distinct()
    recs = finite_scores(recs)  # after `runs`: a model whose every score is NaN still gets its (zero) rows

    hit_rank = (recs.join(test, ["userId", "movieId"])
                .groupBy("model", "run_date", "userId").agg(F.min("rank").alias("r")))
    r = F.col("r")
    sums = []
    for k in ks:
        hit = F.when(r <= k, 1.0).otherwise(0.0)
        sums += [F.sum(hit).alias(f"hr@{k}"),
                 F.sum(hit).alias(f"recall@{k}"),
                 (F.sum(hit) / k).alias(f"precision@{k}"),
                 F.sum(F.when(r <= k, 1.0 / F.log2(r + 1)).otherwise(0.0)).alias(f"ndcg@{k}"),
                 F.sum(F.when(r <= k, 1.0 / r).otherwise(0.0)).alias(f"mrr@{k}"),
                 F.sum(F.when(r <= k, 1.0 / r).otherwise(0.0)).alias(f"map@{k}")]
    per_run = runs.join(hit_rank.groupBy("model", "run_date").agg(*sums), ["model", "run_date"], "left")
    ranking_cols = [f"{m}@{k}" for k in ks for m in RANKING_METRICS]
    per_run = per_run.select("model", "run_date", "run_id",
                             *[(F.coalesce(F.col(f"`{c}`"), F.lit(0.0)) / n_users).alias(c) for c in ranking_cols])

    coverage = (recs.groupBy("model", "run_date")
                .agg(*[(F.countDistinct(F.when(F.col("rank") <= k, F.col("movieId"))) / catalogue_size)
                       .alias(f"coverage@{k}") for k in ks]))
    wide = per_run.join(coverage, ["model", "run_date"], "left")
    cols = ranking_cols + [f"coverage@{k}" for k in ks]
    stacked = F.explode(F.array(*[
        F.struct(F.lit(c.split("@")[0]).alias("metric"), F.lit(int(c.split("@")[1])).alias("k"),
                 F.coalesce(F.col(f"`{c}`").cast("double"), F.lit(0.0)).alias("value"))
        for c in cols]))
    return wide.select("model", "run_date", "run_id", stacked.alias("m")).select(
        "model", "run_date", "run_id", "m.metric", "m.k", "m.value")


@dataclass
class EvaluationResult:
    rows: list[dict]
    path: str
    provenance: dict = field(default_factory=dict)  # the PROVENANCE columns every row carries

    def value(self, model: str, metric: str, k: int | None = None, split: str = "test") -> float:
        for row in self.rows:
            if (row["model"], row["metric"], row["k"], row["split"]) == (model, metric, k, split):
                return row["value"]
        raise KeyError((model, metric, k, split))


def evaluate(spark: SparkSession, warehouse: str | Path, model: str | None = None,
             run_date: dt.date | None = None, config: EvaluateConfig | None = None,
             split: str = "test") -> EvaluationResult:
    """Evaluate the chosen recommendation partitions and write their rows to `metrics`.

    split: `test` evaluates `recommendations` against each user's test item; `validation` evaluates
    `recommendations_validation` against the validation item (metric rows filed under split `validation`): what
    the ensemble and `recsys tune` choose on, never reading a test item."""
    config = config or EvaluateConfig()
    if split not in LIST_SPLITS:
        raise RecsysError(f"evaluate: split must be one of {LIST_SPLITS}, got {split!r}")
    table = list_table(split)
    path = table_path(warehouse, table)
    recs = read_table(spark, path)
    runs = select_runs(recs, partition_commits(path), model, run_date)
    if not runs:
        what = f"model {model!r}" if model else "any model"
        when = f" on {run_date.isoformat()}" if run_date else ""
        raise RecsysError(f"no recommendations for {what}{when} in {table_path(warehouse, table)} "
                          "(run `recsys topn` first)")
    chosen = spark.createDataFrame([(r.model, r.run_date) for r in runs], "model string, run_date date")
    recs = recs.join(F.broadcast(chosen), ["model", "run_date"])

    interactions, provenance = read_interactions(spark, warehouse)
    refuse_stale(warehouse, runs, partition_times(path))
    test = interactions.where(F.col("split") == split)  # the target of each list
    items = read_table(spark, table_path(warehouse, "items"))
    catalogue_size = items.where(F.col("item_idx").isNotNull()).count()
    if catalogue_size == 0:
        raise RecsysError("items has no item with an item_idx: the catalogue is empty (re-run the ETL)")

    rows = [metric_row(r.model, r.run_id, r.run_date, split, r.metric, r.k, r.value)
            for r in ranking_metrics(recs, test, catalogue_size, config.ks).collect()]
    if config.bootstrap_resamples:
        reference = _reference_recs(spark, warehouse, config.reference_model, run_date, {r.model for r in runs},
                                    table)
        ranks = per_user_ranks(recs if reference is None else recs.unionByName(reference), test, max(config.ks))
        rows = add_intervals(rows, ranks, config, split)
    rows = [{**row, **{key: provenance[key] for key in PROVENANCE}} for row in rows]
    path = write_metrics(rows, warehouse)
    return EvaluationResult(rows=rows, path=path, provenance=provenance)


def refuse_stale(warehouse, runs: Sequence, times: Mapping[tuple[str, dt.date], int]) -> None:
    """Refuse lists made before the split was last rewritten: the rows of `interactions` when a list was written
    (its commit time, `times`) must be the rows scored on, or its targets are not the ones the list was made for (a
    re-ETL moves test items and excludes other seen items). A vacuum or compaction since changes no row."""
    path = table_path(warehouse, "interactions")
    current = rows_version_at(path)
    stale = [(r, rows_version_at(path, times.get((r.model, r.run_date), 0))) for r in runs]
    # None: the log no longer reaches back that far (log retention): not provably stale, so not refused
    stale = [f"{r.model} ({r.run_date}) at version {made}" for r, made in stale
             if made is not None and current is not None and made != current]
    if stale:
        raise RecsysError(f"lists made from another interactions version than the current {current}: "
                          f"{', '.join(stale)}; re-run their top-N (`recsys topn --model NAME`) before evaluating")


def _reference_recs(spark: SparkSession, warehouse, reference: str | None, run_date: dt.date | None,
                    chosen: set[str], table: str) -> DataFrame | None:
    """The reference model's list, when it is not among the evaluated ones (for the paired differences only)."""
    if not reference or reference in chosen:
        return None
    path = table_path(warehouse, table)
    recs = read_table(spark, path)
    runs = select_runs(recs, partition_commits(path), reference, run_date)
    if not runs:
        return None
    return recs.where((F.col("model") == reference) & (F.col("run_date") == F.lit(runs[0].run_date)))


def per_user_ranks(recs: DataFrame, test: DataFrame, max_k: int) -> dict[str, np.ndarray]:
    """model -> the rank of each test user's item in that model's list (np.inf beyond max_k or absent), over the
    test users sorted by userId. Only the hits are collected: at most one small row per user and model."""
    users = np.array(sorted(r.userId for r in test.select("userId").distinct().collect()), dtype=np.int64)
    hits = (finite_scores(recs).where(F.col("rank") <= max_k)
            .join(test.select("userId", "movieId"), ["userId", "movieId"])
            .groupBy("model", "userId").agg(F.min("rank").alias("r")).collect())
    ranks = {m: np.full(len(users), np.inf) for m in {r.model for r in recs.select("model").distinct().collect()}}
    for row in hits:
        ranks[row.model][np.searchsorted(users, row.userId)] = float(row.r)
    return ranks


def add_intervals(rows: list[dict], ranks: dict[str, np.ndarray], config: EvaluateConfig,
                  split: str = "test") -> list[dict]:
    """The bootstrap intervals on the hr/ndcg/mrr rows (and recall = hr, precision = hr / k, map = mrr), plus one
    `<metric>_minus_<reference>` row per evaluated model, metric and k."""
    single, paired = intervals(ranks, config.ks, config.reference_model, config.bootstrap_resamples, config.seed,
                               config.ci_level)
    source = {"hr": ("hr", 1), "recall": ("hr", 1), "precision": ("hr", None), "ndcg": ("ndcg", 1),
              "mrr": ("mrr", 1), "map": ("mrr", 1)}
    evaluated = {(r["model"], r["run_id"], r["run_date"]) for r in rows}
    out = []
    for row in rows:
        if row["metric"] in source and row["model"] in single:
            metric, scale = source[row["metric"]]
            interval = single[row["model"]][metric, row["k"]]
            scale = scale or 1.0 / row["k"]
            row = {**row, "ci_low": interval.low * scale, "ci_high": interval.high * scale}
        out.append(row)
    for model, run_id, run_date in sorted(evaluated):
        for (metric, k), diff in paired.get(model, {}).items():
            out.append(metric_row(model, run_id, run_date, split, f"{metric}_minus_{config.reference_model}", k,
                                  diff.value, diff.low, diff.high))
    return out
