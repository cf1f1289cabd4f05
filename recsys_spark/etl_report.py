"""What the ETL says of a load: the rejects table (every refused row, with its reason), the etl_report table
(per file: input, accepted, rejected by reason), etl_report.json, the check of the written row counts and the
printed report."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame

from recsys_spark import schemas
from recsys_spark.delta import table_path, table_rows, write_arrow
from recsys_spark.etl_config import EtlConfig
from recsys_spark.etl_read import EtlInputs
from recsys_spark.inputs import Source
from recsys_spark.row_checks import rejects_of
from recsys_spark.sources import EtlIdentityError, FileOutcome

REPORT_FILE = "etl_report.json"


@dataclass
class EtlResult:
    warehouse: Path
    report: list[tuple[str, str, str | None, int]]  # (file, category, reason, rows), as in etl_report
    summary: dict                                    # what etl_report.json holds
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


def report_rows(outcomes: list[FileOutcome]) -> list[tuple[str, str, str | None, int]]:
    rows = []
    for o in outcomes:
        rows += [(o.name, "input", None, o.input_rows), (o.name, "accepted", None, o.accepted)]
        rejected = o.rejected
        rows += [(o.name, "rejected", reason, count) for reason, count in rejected.items()] or \
            [(o.name, "rejected", None, 0)]
    return rows


def build_rejects(read: EtlInputs) -> DataFrame:
    rejects = rejects_of(read.ratings.rows, read.ratings.name)
    for other in (read.movies, read.tags, read.links):
        if other.present:
            rejects = rejects.unionByName(rejects_of(other.rows, other.name))
    return rejects.select(*schemas.REJECTS.names)


def write_report_table(warehouse: Path, report: list[tuple[str, str, str | None, int]]) -> None:
    rows = [dict(zip(schemas.ETL_REPORT.names, r)) for r in report]
    write_arrow(pa.Table.from_pylist(rows, schemas.ETL_REPORT), table_path(warehouse, "etl_report"))


def check_written(warehouse: Path, expected: dict[str, int]) -> None:
    for name, rows in expected.items():
        written = table_rows(table_path(warehouse, name))
        if written != rows:
            raise EtlIdentityError(f"{name}: wrote {written} rows, expected {rows}")


def etl_summary(source: Source, config: EtlConfig, read: EtlInputs, cutoff, tables: dict[str, int]) -> dict:
    """What etl_report.json holds; `tables`: the row count of each table written (and of the rated items)."""
    return {
        "schema_version": 1,
        "data": str(source.path),
        "format": source.format,
        "layout": source.layout,
        "time": "seconds" if source.time_known else "order",  # order: timestamp is the order key (sources.py)
        "explicit": source.explicit,  # ratings on a scale; false: implicit weights
        "genres": source.genres,
        "tie_break": config.tie_break,
        "seed": config.seed,
        "temporal": {"quantile": config.temporal_quantile, "cutoff_timestamp": cutoff},
        "kcore": read.kcore,
        "files": {o.name: {"input": o.input_rows, "accepted": o.accepted, "rejected": sum(o.rejected.values()),
                           "rejected_by_reason": o.rejected} for o in read.present},
        "files_missing": [o.name for o in (read.movies, read.tags, read.links) if not o.present],
        "tables": tables,
    }


def write_summary(warehouse: Path, summary: dict) -> None:
    (warehouse / REPORT_FILE).write_text(json.dumps(summary, indent=1) + "\n")


def print_report(result: EtlResult, console=None) -> None:
    """The etl_report table, as a rich table, and the settings that shaped the splits."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"ETL report ({result.warehouse})")
    for name, justify in (("file", "left"), ("category", "left"), ("reason", "left"), ("rows", "right")):
        table.add_column(name, justify=justify)
    for file, category, reason, rows in result.report:
        table.add_row(file, category, reason or "", f"{rows:,}")
    console.print(table)
    s = result.summary
    k = s["kcore"]
    kcore = ("off" if not (k["min_user_interactions"] or k["min_item_interactions"]) else
             f"users >= {k['min_user_interactions']}, items >= {k['min_item_interactions']}, "
             f"{k['iterations']} iterations{'' if k['converged'] else ' (not converged)'}")
    console.print(f"tie_break={s['tie_break']} seed={s['seed']} temporal cut-off={s['temporal']['cutoff_timestamp']} "
                  f"(quantile {s['temporal']['quantile']}) k-core: {kcore}")
    t = s["tables"]
    console.print(f"{t['interactions']:,} interactions, {t['users']:,} users, {t['rated_items']:,} rated of "
                  f"{t['items']:,} movies, {t['tags']:,} tags, {t['rejects']:,} rejects in {result.seconds:.1f}s "
                  f"({', '.join(f'{k} {v:.1f}s' for k, v in result.stage_seconds.items())})")
