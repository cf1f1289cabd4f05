"""Drift between this load and the previous one (input) and between tonight's lists and the last published ones
(output), written to the `drift` table (docs/SCHEMAS.md), one partition per run date.

Input drift compares the `interactions` table now with the version the last published run read (the `runs` table's
`tables` map names it), else with the version before the latest, else (a first load) with the interactions older
than `drift.window_days` before the newest timestamp:

    psi_item_popularity, psi_rating  PSI = sum_i (p_i - q_i) ln(p_i / q_i) over the items' (ratings') shares of the
                                     interactions now (p) and before (q), each count + 0.5 so that an item new or
                                     gone adds a finite term
    new_user_share, new_item_share   users (items) with interactions now and none before / all of them now
    interactions_per_user            now (`value`) and before (`previous`); its relative change is what warns
    interactions                     the row count now and before (no threshold)

Output drift, per model with a list on this run date, against its list of the last published run (the `runs` table
names the run date and the `recommendations` Delta version), else its previous run date's partition:

    list_overlap@k   mean over the users in both lists of |top k now ∩ top k before| / k
    coverage@k       distinct movies in anyone's top k / the catalogue, now and before
    ndcg_change@k    NDCG@k of the list now minus that of the list before, both against today's test items, with the
                     paired bootstrap interval over the same users (recsys_spark.intervals)

A value beyond its `drift.*` threshold (conf/drift.yaml) gets the `warning` text: the line the step prints and the
pipeline's summary repeats.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_core.config import POSITIVE, Config, Rule, above, at_least, checked, number_in
from recsys_spark.delta import read_arrow, read_table, table_exists, table_path, table_version, write_arrow
from recsys_spark.errors import RecsysError
from recsys_spark.evaluate import finite_scores, per_user_ranks
from recsys_spark.intervals import intervals
from recsys_spark.schemas import DRIFT as DRIFT_SCHEMA

DRIFT_TABLE = "drift"
RUNS_TABLE = "runs"


@dataclass(frozen=True)
class DriftConfig(Config):
    """The `drift:` section: what is compared, and the thresholds beyond which a value warns."""

    section = "drift"

    k: int = checked(10, POSITIVE)
    window_days: int = checked(30, POSITIVE)  # a first load: the last window_days against what came before
    bootstrap_resamples: int = checked(500, Rule(lambda v: v == 0 or v >= 100, "0 (off) or at least 100"))
    seed: int = 42
    max_psi: float = checked(0.2, above(0))  # of item popularity and of the rating distribution
    max_new_user_share: float = checked(0.5, number_in(0, 1))
    max_new_item_share: float = checked(0.2, number_in(0, 1))
    max_activity_change: float = checked(0.5, above(0))  # |relative change| of interactions per user
    min_list_overlap: float = checked(0.3, number_in(0, 1))
    max_coverage_change: float = checked(0.5, above(0))  # |relative change| of coverage@k
    max_ndcg_drop: float = checked(0.01, at_least(0))  # a drop beyond it whose paired interval excludes zero


def row(run_date: dt.date, kind: str, metric: str, value: float | None, previous: float | None = None,
        compared_to: str | None = None, model: str | None = None, k: int | None = None,
        ci: tuple[float, float] | None = None, threshold: float | None = None, warning: str | None = None) -> dict:
    return {"run_date": run_date, "kind": kind, "model": model, "metric": metric, "k": k,
            "value": None if value is None else float(value), "previous": None if previous is None else float(previous),
            "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None, "compared_to": compared_to,
            "threshold": threshold, "warning": warning}


# ---------------------------------------------------------------------------------------------------------------
# What tonight is compared with


def as_date(value) -> dt.date | None:
    """A date read back from a Delta table: a partition column comes back from the hive-style paths as text."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def last_published_run(warehouse: str | Path, run_date: dt.date) -> dict | None:
    """The newest row of the `runs` table before `run_date` (None without the table or such a run)."""
    path = table_path(warehouse, RUNS_TABLE)
    if not table_exists(path):
        return None
    runs = [{**r, "run_date": as_date(r["run_date"])} for r in read_arrow(path).to_pylist()]
    runs = [r for r in runs if r["run_date"] is not None and r["run_date"] < run_date]
    if not runs:
        return None
    run = max(runs, key=lambda r: (r["run_date"], str(r.get("published_at") or "")))
    tables = run.get("tables") or {}
    run["tables"] = dict(tables) if not isinstance(tables, dict) else tables  # Arrow maps come as (key, value) pairs
    return run


def previous_interactions(spark: SparkSession, warehouse: str | Path, run_date: dt.date,
                          config: DriftConfig) -> tuple[DataFrame, DataFrame, str]:
    """(interactions now, the interactions compared with, what those are)."""
    path = table_path(warehouse, "interactions")
    now = read_table(spark, path)
    current = table_version(path)
    run = last_published_run(warehouse, run_date)
    version = run["tables"].get("interactions") if run else None
    if version is not None:
        return now, read_table(spark, path, version), f"interactions v{version} (run {run['run_id']}, " \
                                                      f"{run['run_date']})"
    if current > 0:
        return now, read_table(spark, path, current - 1), f"interactions v{current - 1} (the previous load)"
    newest = now.agg(F.max("timestamp")).first()[0] or 0
    cut = newest - config.window_days * 86400
    return now, now.where(F.col("timestamp") <= cut), f"interactions up to {config.window_days} days before the newest"


# ---------------------------------------------------------------------------------------------------------------
# Input drift


def psi(now: DataFrame, before: DataFrame, column: str) -> float:
    """The population stability index of the distribution of `column` over the rows (module docstring)."""
    counts = (now.groupBy(column).agg(F.count("*").alias("c"))
              .join(before.groupBy(column).agg(F.count("*").alias("b")), column, "full")
              .fillna(0, ["c", "b"]))
    totals = counts.agg(F.sum("c").alias("n"), F.sum("b").alias("m"), F.count("*").alias("bins"))
    p = (F.col("c") + 0.5) / (F.col("n") + 0.5 * F.col("bins"))
    q = (F.col("b") + 0.5) / (F.col("m") + 0.5 * F.col("bins"))
    return float(counts.crossJoin(totals).agg(F.sum((p - q) * F.log(p / q))).first()[0] or 0.0)


def new_share(now: DataFrame, before: DataFrame, column: str) -> float:
    ids = now.select(column).distinct()
    total = ids.count()
    return ids.join(before.select(column).distinct(), column, "left_anti").count() / total if total else 0.0


def input_drift(now: DataFrame, before: DataFrame, compared_to: str, run_date: dt.date,
                config: DriftConfig) -> list[dict]:
    def counts(df):
        got = df.agg(F.count("*").alias("n"), F.countDistinct("userId").alias("users")).first()
        return got.n, got.users

    (n_now, users_now), (n_before, users_before) = counts(now), counts(before)
    rows = [row(run_date, "input", "interactions", n_now, n_before, compared_to)]
    if n_before == 0 or n_now == 0:
        return rows  # nothing to compare with
    for metric, column in (("psi_item_popularity", "movieId"), ("psi_rating", "rating")):
        value = psi(now, before, column)
        rows.append(row(run_date, "input", metric, value, None, compared_to, threshold=config.max_psi,
                        warning=f"{metric} {value:.3f} > {config.max_psi:g}" if value > config.max_psi else None))
    for metric, column, limit in (("new_user_share", "userId", config.max_new_user_share),
                                  ("new_item_share", "movieId", config.max_new_item_share)):
        value = new_share(now, before, column)
        rows.append(row(run_date, "input", metric, value, None, compared_to, threshold=limit,
                        warning=f"{metric} {value:.3f} > {limit:g}" if value > limit else None))
    activity, before_activity = n_now / users_now, n_before / users_before
    change = activity / before_activity - 1.0
    rows.append(row(run_date, "input", "interactions_per_user", activity, before_activity, compared_to,
                    threshold=config.max_activity_change,
                    warning=f"interactions_per_user {before_activity:.1f} -> {activity:.1f} ({change:+.0%}, beyond "
                            f"±{config.max_activity_change:.0%})" if abs(change) > config.max_activity_change
                    else None))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Output drift


def previous_lists(spark: SparkSession, warehouse: str | Path, recs: DataFrame, model: str, run_date: dt.date,
                   run: dict | None) -> tuple[DataFrame, str] | None:
    """The model's list of the last published run (at the recommendations version it published), else of its
    previous run date; None when it has neither."""
    published = [m for m in (run or {}).get("models") or [] if m.get("model") == model and m.get("published")]
    if published and published[0].get("recommendations_version") is not None:
        entry = published[0]
        version, day = entry["recommendations_version"], entry.get("run_date") or run["run_date"]
        old = read_table(spark, table_path(warehouse, "recommendations"), version)
        return (old.where((F.col("model") == model) & (F.col("run_date") == F.lit(day).cast("date"))),
                f"run {run['run_id']} ({day}), recommendations v{version}")
    earlier = (recs.where((F.col("model") == model) & (F.col("run_date") < F.lit(run_date).cast("date")))
               .agg(F.max("run_date")).first()[0])
    if earlier is None:
        return None
    return (recs.where((F.col("model") == model) & (F.col("run_date") == F.lit(earlier))),
            f"run_date {earlier}")


def coverage(lists: DataFrame, k: int, catalogue_size: int) -> float:
    return lists.where(F.col("rank") <= k).select("movieId").distinct().count() / catalogue_size


def list_overlap(now: DataFrame, before: DataFrame, k: int) -> float | None:
    top_now, top_before = (df.where(F.col("rank") <= k).select("userId", "movieId") for df in (now, before))
    users = top_now.select("userId").distinct().join(top_before.select("userId").distinct(), "userId")
    n_users = users.count()
    if n_users == 0:
        return None
    shared = top_now.join(top_before, ["userId", "movieId"]).count()
    return shared / (k * n_users)


def output_drift(spark: SparkSession, warehouse: str | Path, run_date: dt.date, config: DriftConfig,
                 run: dict | None) -> list[dict]:
    recs_path = table_path(warehouse, "recommendations")
    if not table_exists(recs_path):
        return []
    recs = finite_scores(read_table(spark, recs_path))
    models = [r.model for r in recs.where(F.col("run_date") == F.lit(run_date).cast("date"))
              .select("model").distinct().orderBy("model").collect()]
    if not models:
        return []
    items = read_table(spark, table_path(warehouse, "items"))
    catalogue_size = items.where(F.col("item_idx").isNotNull()).count() or 1
    test = read_table(spark, table_path(warehouse, "interactions")).where(F.col("split") == "test")
    k, rows = config.k, []
    for model in models:
        now = recs.where((F.col("model") == model) & (F.col("run_date") == F.lit(run_date).cast("date")))
        found = previous_lists(spark, warehouse, recs, model, run_date, run)
        cov_now = coverage(now, k, catalogue_size)
        if found is None:
            rows.append(row(run_date, "output", "coverage", cov_now, model=model, k=k))
            continue
        before, compared_to = found
        before = finite_scores(before)
        cov_before = coverage(before, k, catalogue_size)
        change = cov_now / cov_before - 1.0 if cov_before else 0.0
        rows.append(row(run_date, "output", "coverage", cov_now, cov_before, compared_to, model, k,
                        threshold=config.max_coverage_change,
                        warning=f"{model}: coverage@{k} {cov_before:.3f} -> {cov_now:.3f} ({change:+.0%}, beyond "
                                f"±{config.max_coverage_change:.0%})" if abs(change) > config.max_coverage_change
                        else None))
        overlap = list_overlap(now, before, k)
        if overlap is not None:
            rows.append(row(run_date, "output", "list_overlap", overlap, None, compared_to, model, k,
                            threshold=config.min_list_overlap,
                            warning=f"{model}: list_overlap@{k} {overlap:.3f} < {config.min_list_overlap:g}"
                            if overlap < config.min_list_overlap else None))
        if config.bootstrap_resamples:
            pair = now.select("userId", "rank", "movieId").withColumn("model", F.lit("now")).unionByName(
                before.select("userId", "rank", "movieId").withColumn("model", F.lit("before")))
            single, paired = intervals(per_user_ranks(pair, test, k), [k], "before", config.bootstrap_resamples,
                                       config.seed)
            diff = paired["now"]["ndcg", k]
            drop = diff.value < -config.max_ndcg_drop and diff.high < 0
            rows.append(row(run_date, "output", "ndcg_change", diff.value, single["before"]["ndcg", k].value,
                            compared_to, model, k, (diff.low, diff.high), config.max_ndcg_drop,
                            f"{model}: NDCG@{k} {diff.value:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] vs "
                            f"{compared_to}" if drop else None))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The table


def measure(spark: SparkSession, warehouse: str | Path, run_date: dt.date, config: DriftConfig | None = None) -> list[dict]:
    """Every drift row of `run_date` (module docstring), not yet written."""
    config = config or DriftConfig()
    if not table_exists(table_path(warehouse, "interactions")):
        raise RecsysError(f"{table_path(warehouse, 'interactions')}: no interactions table (run `recsys etl` first)")
    now, before, compared_to = previous_interactions(spark, warehouse, run_date, config)
    rows = input_drift(now, before, compared_to, run_date, config)
    return rows + output_drift(spark, warehouse, run_date, config, last_published_run(warehouse, run_date))


def write_drift(rows: list[dict], warehouse: str | Path, run_date: dt.date) -> str:
    """Replace the run date's partition of the `drift` table with `rows`."""
    path = table_path(warehouse, DRIFT_TABLE)
    write_arrow(pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA), path, partition_by=["run_date"],
                replace={"run_date": run_date})
    return path


def load_drift(warehouse: str | Path, run_date: dt.date | None = None) -> list[dict]:
    """The rows of `run_date` (default: the newest run date) of the drift table; [] without the table."""
    path = table_path(warehouse, DRIFT_TABLE)
    if not table_exists(path):
        return []
    rows = [{**r, "run_date": as_date(r["run_date"])} for r in read_arrow(path).to_pylist()]
    if run_date is None and rows:
        run_date = max(r["run_date"] for r in rows)
    order = {"input": 0, "output": 1}
    return sorted((r for r in rows if r["run_date"] == run_date),
                  key=lambda r: (order.get(r["kind"], 2), r["model"] or "", r["metric"]))


def warnings(rows: list[dict]) -> list[str]:
    """The warning lines of drift rows, as the step and the pipeline's summary print them."""
    return [f"WARNING drift {r['run_date']}: {r['warning']} (vs {r['compared_to']})" for r in rows if r["warning"]]
