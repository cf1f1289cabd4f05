"""Retention: the warehouse stops growing. Every Delta table is vacuumed through delta-rs, keeping

- `retention.days` of history (every version committed since then stays readable by time travel), and
- every version the newest row of the `runs` table names (the published snapshot the server, the report and the
  notebooks read: its `tables` map and each model's `recommendations_version`), however old: delta-rs's
  `keep_versions` keeps the files those versions read.

The vacuum is `full`: data files no commit ever named (a write killed between its Parquet files and its commit)
go too, once older than the window. It runs while no writer runs (the nightly's step, or `recsys retention` holding
the run lock), so a window of 0 days never takes a file a write is about to commit.

Old log entries go with delta-rs's `cleanup_metadata` (a checkpoint first), which keeps the table's
`delta.logRetentionDuration` (30 days by default) of log; it is skipped for a table while a version the `runs`
table protects is older than that, so time travel to it keeps working.

Only deltalake and pyarrow: no Spark session is started.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from recsys_core.config import NON_NEGATIVE, Config, checked

RUNS_TABLE = "runs"
DEFAULT_LOG_RETENTION = dt.timedelta(days=30)  # Delta's default delta.logRetentionDuration


@dataclass(frozen=True)
class RetentionConfig(Config):
    """The `retention:` section."""

    section = "retention"

    days: int = checked(7, NON_NEGATIVE)  # history every table keeps; 0: only the current and the published versions


@dataclass
class TableRetention:
    table: str
    files_removed: int
    bytes_removed: int
    kept_versions: list[int]
    log_cleaned: bool  # log entries older than the table's delta.logRetentionDuration were removed


def delta_tables(warehouse: str | Path) -> list[Path]:
    """The Delta tables of a warehouse: its top-level folders that are one (not _pipeline, _staging-*, models/ or
    the MLflow store)."""
    from recsys_core.published import has_commit

    root = Path(warehouse)
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and has_commit(p))


def published_versions(warehouse: str | Path) -> dict[str, set[int]]:
    """Table -> the versions the newest row of the `runs` table reads (none when there is no `runs` table)."""
    from recsys_spark.delta import read_arrow, table_exists

    path = Path(warehouse) / RUNS_TABLE
    if not table_exists(path):
        return {}
    runs = read_arrow(path).to_pylist()
    if not runs:
        return {}
    newest = max(runs, key=lambda row: (row.get("published_at") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                                        row.get("run_date") or dt.date.min))
    tables = newest.get("tables") or []
    pairs = tables.items() if isinstance(tables, dict) else tables  # pyarrow gives a map as (key, value) pairs
    protected: dict[str, set[int]] = {}
    for table, version in pairs:
        if version is not None:
            protected.setdefault(table, set()).add(int(version))
    for model in newest.get("models") or []:
        if model.get("recommendations_version") is not None:
            protected.setdefault("recommendations", set()).add(int(model["recommendations_version"]))
    return protected


def _log_retention(configuration: dict) -> dt.timedelta | None:
    """The table's delta.logRetentionDuration ("interval 30 days"); None when it says something this cannot read."""
    text = (configuration or {}).get("delta.logRetentionDuration")
    if text is None:
        return DEFAULT_LOG_RETENTION
    found = re.fullmatch(r"\s*interval\s+(\d+)\s+(hour|day|week)s?\s*", text.lower())
    if not found:
        return None
    return dt.timedelta(**{found[2] + "s": int(found[1])})


def _commit_time(table, version: int) -> dt.datetime | None:
    for entry in table.history():
        if entry.get("version") == version and entry.get("timestamp") is not None:
            return dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc)
    return None


def _existing(table_dir: Path, names: list[str]) -> list[Path]:
    paths = [Path(n) if Path(n).is_absolute() else table_dir / n for n in names]
    return [p for p in paths if p.is_file()]


def vacuum_table(path: Path, days: int, keep: set[int], now: dt.datetime | None = None) -> TableRetention:
    import deltalake

    table = deltalake.DeltaTable(str(path))
    keep = sorted(v for v in keep if 0 <= v <= table.version())
    options = dict(retention_hours=days * 24, enforce_retention_duration=False, full=True,
                   keep_versions=keep or None)
    doomed = _existing(path, table.vacuum(dry_run=True, **options))
    removed = sum(p.stat().st_size for p in doomed)
    if doomed:  # a vacuum commits two log entries (start, end): none when there is nothing to remove
        table.vacuum(dry_run=False, **options)
    log_cleaned = False
    window = _log_retention(table.metadata().configuration)
    now = now or dt.datetime.now(dt.timezone.utc)
    oldest_kept = min((_commit_time(table, v) for v in keep), default=None, key=lambda t: t or now)
    history = table.history()
    oldest_commit = dt.datetime.fromtimestamp(min(h.get("timestamp") or 0 for h in history) / 1000, dt.timezone.utc)
    # a checkpoint (and a cleanup) only when some log entry is older than the log's window: nothing to clean else
    if window is not None and oldest_commit < now - window \
            and (not keep or (oldest_kept is not None and oldest_kept > now - window)):
        table = deltalake.DeltaTable(str(path))
        table.create_checkpoint()
        table.cleanup_metadata()
        log_cleaned = True
    return TableRetention(path.name, len(doomed), removed, keep, log_cleaned)


def apply_retention(warehouse: str | Path, config: RetentionConfig) -> list[TableRetention]:
    """Vacuum every Delta table of `warehouse` (module docstring); what each lost."""
    protected = published_versions(warehouse)
    return [vacuum_table(path, config.days, protected.get(path.name, set())) for path in delta_tables(warehouse)]


def folder_bytes(folder: str | Path) -> int:
    """The bytes of every file under `folder` (what the warehouse takes on disk, before block rounding)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())
