"""Publish a night: the regression gate per model, then one commit to the `runs` table (docs/SCHEMAS.md).

The row names the Delta version of every table in the warehouse as the run left it, so the readers (recsys_serve,
the report, the notebooks: recsys_core.published) read exactly that snapshot, never a half-written night. Per model
the gate decides whether tonight's list is published:

- its step failed (or did not run): not published;
- it has no list for the run date: not published;
- its NDCG@10 on the test users fell below that of its last published list by more than the paired interval (the
  upper end of the bootstrap interval of tonight - last is below zero; `publish.interval_gate`): held back.

The paired difference is measured on the same users: both lists are scored against tonight's test items, and the
same bootstrap draws of the users give both means (recsys_spark.intervals). A model not published keeps its last
published list served: its entry repeats that list's run date and `recommendations` version. The first publish
publishes every model that did not fail. A published torch model's checkpoint is copied to
<warehouse>/models/<model>/published.pt (what real-time serving loads), atomically.

No Spark: Arrow, delta-rs and numpy over the small parts read (the test items, one partition per list).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import deltalake
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core import catalogue, storage
from recsys_core.config import Config, Rule, checked, number_in
from recsys_core.published import RUNS_TABLE, PublishedModel, PublishedRun, has_commit, latest_published
from recsys_spark.delta import table_exists, table_path
from recsys_spark.errors import RecsysError
from recsys_spark.intervals import PER_USER, intervals
from recsys_spark.schemas import RUNS

GATE_K = 10


@dataclass(frozen=True)
class PublishConfig(Config):
    """The `publish:` section: the regression gate."""

    section = "publish"

    interval_gate: bool = True  # false: only a failed model (or one without a list) is held back
    bootstrap_resamples: int = checked(1000, Rule(lambda v: v >= 100, "at least 100"))
    ci_level: float = checked(0.95, number_in(0.5, 1, high_open=True))
    seed: int = 42


def produced_tables(warehouse: str | Path) -> dict[str, int]:
    """Every Delta table of the warehouse (but `runs`) -> its latest version: what this run leaves to be read."""
    root = Path(storage.local_path(str(warehouse)))
    return {p.name: deltalake.DeltaTable(str(p)).version() for p in sorted(root.iterdir())
            if p.is_dir() and p.name != RUNS_TABLE and not p.name.startswith(("_", ".")) and has_commit(p)}


def test_items(warehouse: str | Path, version: int) -> tuple[np.ndarray, np.ndarray]:
    """(userIds sorted, their test movieIds) of `interactions` at `version`."""
    rows = _at(table_path(warehouse, "interactions"), version).to_pyarrow_table(
        columns=["userId", "movieId"], filters=pc.field("split") == "test")
    users, first = np.unique(rows["userId"].to_numpy(), return_index=True)
    return users, rows["movieId"].to_numpy()[first]


def list_ranks(warehouse: str | Path, version: int, model: str, run_date: dt.date, users: np.ndarray,
               items: np.ndarray, max_k: int = GATE_K) -> np.ndarray | None:
    """The rank of each test user's item in the model's list of `run_date` at `recommendations` version `version`
    (np.inf when absent from the first max_k, or its score is not finite: as the evaluator counts it); None when
    that version has no such list."""
    table = _at(table_path(warehouse, "recommendations"), version)
    partition = [("model", "=", model), ("run_date", "=", run_date.isoformat())]
    if not table.file_uris(partition):
        return None
    rows = table.to_pyarrow_table(columns=["userId", "movieId", "rank", "score"], filters=(
        (pc.field("model") == model) & (pc.field("run_date") == run_date) & (pc.field("rank") <= max_k)))
    score = rows["score"].to_numpy(zero_copy_only=False)
    user, movie, rank = (rows[c].to_numpy() for c in ("userId", "movieId", "rank"))
    at = np.clip(np.searchsorted(users, user), 0, max(len(users) - 1, 0))
    hit = (len(users) > 0) & (users[at] == user) & (items[at] == movie) & np.isfinite(score)
    ranks = np.full(len(users), np.inf)
    np.minimum.at(ranks, at[hit], rank[hit].astype(np.float64))
    return ranks


def ndcg(ranks: np.ndarray, k: int = GATE_K) -> float:
    return float(PER_USER["ndcg"](ranks, k).mean()) if len(ranks) else 0.0


def gate(model: str, run_date: dt.date, failed: str | None, tonight: np.ndarray | None,
         last: PublishedModel | None, last_ranks: np.ndarray | None, config: PublishConfig,
         recommendations_version: int | None) -> PublishedModel:
    """One model's decision (module docstring). `last`: its entry in the last published run; `last_ranks`: that
    served list scored on tonight's test users (None when it cannot be read)."""
    value = None if tonight is None else ndcg(tonight)
    keep = (last.run_date, last.recommendations_version) if last is not None and last.served else (None, None)
    served_before = f"; still serving its list of {keep[0]}" if keep[0] else "; nothing served for it"

    def held(reason: str) -> PublishedModel:
        return PublishedModel(model, False, reason + served_before, keep[0], keep[1], value)

    def passed(reason: str) -> PublishedModel:
        return PublishedModel(model, True, reason, run_date, recommendations_version, value)

    if failed:
        return held(f"not published: {failed}")
    if tonight is None:
        return held(f"not published: no list for {run_date}")
    now = f"NDCG@{GATE_K} {value:.4f}"
    if keep[0] is None:
        return passed(f"published: first published list ({now})")
    if last_ranks is None:
        return passed(f"published: its last published list ({keep[0]}, version {keep[1]}) cannot be read, "
                      f"not compared ({now})")
    before = f"{ndcg(last_ranks):.4f} ({keep[0]})"
    if not config.interval_gate:
        return passed(f"published: interval gate off ({now}; last published {before})")
    _, paired = intervals({"tonight": tonight, "last": last_ranks}, [GATE_K], "last", config.bootstrap_resamples,
                          config.seed, config.ci_level)
    diff = paired["tonight"][("ndcg", GATE_K)]
    interval = f"paired difference {diff.value:+.4f}, {config.ci_level:.0%} interval [{diff.low:+.4f}, {diff.high:+.4f}]"
    if diff.high < 0:
        return held(f"held back: {now} fell below the last published {before} beyond its interval ({interval})")
    return passed(f"published: {now}, last published {before}, {interval}")


def publish(warehouse: str | Path, run_date: dt.date, models: Sequence[str], failed: Mapping[str, str],
            config: PublishConfig | None = None, run_id: str | None = None) -> PublishedRun:
    """Gate every model of `models` (`failed`: model -> why its step failed), copy the published torch models'
    checkpoints, and commit one `runs` row naming this snapshot. Returns that row."""
    config = config or PublishConfig()
    tables = produced_tables(warehouse)
    missing = [t for t in ("interactions", "recommendations") if t not in tables]
    if missing:
        raise RecsysError(f"nothing to publish: {warehouse} has no Delta table {', '.join(missing)} "
                          "(run the ETL and the models' top-N first)")
    last_run = latest_published(warehouse)
    users, items = test_items(warehouse, tables["interactions"])
    version = tables["recommendations"]
    decisions = []
    for model in models:
        last = last_run.model(model) if last_run else None
        tonight = None if model in failed else list_ranks(warehouse, version, model, run_date, users, items)
        last_ranks = None
        if tonight is not None and last is not None and last.served:
            try:
                last_ranks = list_ranks(warehouse, last.recommendations_version, model, last.run_date, users, items)
            except (OSError, deltalake.exceptions.DeltaError):  # vacuumed away: published, not compared
                last_ranks = None
        decisions.append(gate(model, run_date, failed.get(model), tonight, last, last_ranks, config, version))
    for decision in decisions:
        if decision.published and catalogue.find(decision.model).family is catalogue.TORCH:
            copy_checkpoint(warehouse, decision.model)
    published_at = dt.datetime.now(dt.timezone.utc)
    run_id = run_id or f"{run_date.isoformat()}@{published_at:%Y%m%dT%H%M%SZ}"
    row = {"run_id": run_id, "run_date": run_date, "published_at": published_at, "tables": list(tables.items()),
           "models": [{"model": d.model, "published": d.published, "reason": d.reason, "run_date": d.run_date,
                       "recommendations_version": d.recommendations_version, "ndcg_at_10": d.ndcg_at_10}
                      for d in decisions]}
    path = table_path(warehouse, RUNS_TABLE)
    deltalake.write_deltalake(storage.native_path(path), pa.Table.from_pylist([row], schema=RUNS), mode="append",
                              storage_options=storage.storage_options(path))
    return latest_published(warehouse)


def copy_checkpoint(warehouse: str | Path, model: str) -> Path | None:
    """models/<model>/best.pt -> models/<model>/published.pt, whole or not at all (tmp file, then os.replace)."""
    folder = Path(storage.local_path(str(warehouse))) / "models" / model
    source = folder / "best.pt"
    if not source.is_file():
        return None
    target = folder / "published.pt"
    tmp = folder / f".published.pt.{os.getpid()}.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def _at(path: str, version: int) -> deltalake.DeltaTable:
    if not table_exists(path):
        raise RecsysError(f"Delta table not found: {path}")
    return deltalake.DeltaTable(storage.native_path(path), version=version,
                                storage_options=storage.storage_options(path))
