"""Retention through the real CLI (`recsys retention`): old files go, the window's versions and the published ones
still read by time travel. Commits are made "ten days old" by rewriting their timestamps in the Delta log (what a
table written ten days ago holds), so the test needs no clock."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import deltalake
import pyarrow as pa
import pytest

from recsys_spark.delta import read_arrow, table_version
from recsys_spark.retention import RetentionConfig, published_versions
from recsys_core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DAYS_AGO = 10 * 24 * 3600 * 1000  # ms


def age_commits(table: Path, versions: range) -> None:
    """Move the given commits (and the files they added, the removals they made) ten days into the past."""
    for version in versions:
        log = table / "_delta_log" / f"{version:020d}.json"
        lines = []
        for line in log.read_text().splitlines():
            action = json.loads(line)
            for kind, key in (("commitInfo", "timestamp"), ("remove", "deletionTimestamp"),
                              ("add", "modificationTime")):
                if kind in action and action[kind].get(key):
                    action[kind][key] -= DAYS_AGO
            if "add" in action:
                old = time.time() - DAYS_AGO / 1000
                os.utime(table / action["add"]["path"], (old, old))
            lines.append(json.dumps(action))
        log.write_text("\n".join(lines) + "\n")


def five_versions(table: Path) -> None:
    """v0..v4, each a whole overwrite with the rows [v, v]; v0..v3 committed ten days ago."""
    for version in range(5):
        deltalake.write_deltalake(str(table), pa.table({"user_id": [version, version]}), mode="overwrite")
    age_commits(table, range(4))


def write_runs(warehouse: Path, rows: list[dict]) -> None:
    """The `runs` table as the publish step writes it (docs/SCHEMAS.md)."""
    from recsys_spark.schemas import RUNS

    deltalake.write_deltalake(str(warehouse / "runs"), pa.Table.from_pylist(rows, schema=RUNS))


def retention(warehouse: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", "retention", "--warehouse", str(warehouse), *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def reads(table: Path, version: int) -> list[int] | str:
    try:
        return read_arrow(table, version=version).column("user_id").to_pylist()
    except Exception as exc:  # noqa: BLE001 - a vacuumed version fails in pyarrow or delta-rs
        return type(exc).__name__


def test_retention_removes_old_files_and_keeps_the_window_and_the_published_versions(tmp_path):
    warehouse = tmp_path / "wh"
    recs = warehouse / "recommendations"
    five_versions(recs)
    five_versions(warehouse / "items")
    orphan = recs / "part-killed-writer.parquet"  # a write killed before its commit, ten days ago
    orphan.write_bytes(b"PAR1")
    os.utime(orphan, (time.time() - DAYS_AGO / 1000,) * 2)
    now = dt.datetime.now(dt.timezone.utc)
    published = {"run_id": "new", "run_date": dt.date(2026, 11, 20), "published_at": now - dt.timedelta(days=9),
                 "tables": {"recommendations": 0, "items": 4},
                 "models": [{"model": "sasrec", "published": False, "reason": "regressed", "run_date":
                             dt.date(2026, 11, 19), "recommendations_version": 1, "ndcg_at_10": 0.1}]}
    older = {**published, "run_id": "old", "published_at": now - dt.timedelta(days=12), "tables": {"items": 2},
             "models": []}
    write_runs(warehouse, [older, published])
    assert published_versions(warehouse) == {"recommendations": {0, 1}, "items": {4}}

    proc = retention(warehouse, "retention.days=7")
    assert proc.returncode == 0, proc.stderr
    assert "recommendations: removed 2 file(s)" in proc.stdout and "kept published version(s) [0, 1]" in proc.stdout
    assert not orphan.exists()
    # v2's files were replaced ten days ago and nothing published names it: gone. v3 was replaced today (inside the
    # window), v0 and v1 are published (the newest runs row's table version and a model's last good list).
    assert {v: reads(recs, v) for v in range(5)} == {0: [0, 0], 1: [1, 1], 2: reads(recs, 2), 3: [3, 3], 4: [4, 4]}
    assert isinstance(reads(recs, 2), str)
    # items: only the latest is published; the older runs row's version 2 is not protected
    assert [isinstance(reads(warehouse / "items", v), str) for v in range(5)] == [True, True, True, False, False]

    version = table_version(recs)
    again = retention(warehouse, "retention.days=7")  # nothing left to remove: no new (vacuum) commit
    assert again.returncode == 0 and "recommendations: removed 0 file(s)" in again.stdout
    assert table_version(recs) == version

    assert retention(warehouse, "retention.days=0").returncode == 0  # the window shrinks to now: v3 goes too
    assert isinstance(reads(recs, 3), str) and reads(recs, 0) == [0, 0] and reads(recs, 1) == [1, 1]
    assert reads(recs, table_version(recs)) == [4, 4]


def test_without_a_runs_table_only_the_window_is_kept_and_a_running_nightly_blocks_it(tmp_path):
    warehouse = tmp_path / "wh"
    five_versions(warehouse / "recommendations")
    proc = retention(warehouse)  # conf/retention.yaml: 7 days
    assert proc.returncode == 0, proc.stderr
    assert [isinstance(reads(warehouse / "recommendations", v), str) for v in range(5)] == [True] * 3 + [False] * 2
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock = warehouse / "_pipeline" / "run.lock"
        lock.parent.mkdir(exist_ok=True)  # the standalone run above took and released the lock here
        import socket

        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}))
        proc = retention(warehouse)
        assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr.strip().splitlines()[-1]
    finally:
        holder.kill()
        holder.wait()


def test_retention_days_is_checked():
    with pytest.raises(ConfigError, match="retention.days must be an integer >= 0, got -1"):
        RetentionConfig.from_dict({"days": -1})
