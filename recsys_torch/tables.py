"""The torch side's Delta writes (delta-rs): the `recommendations` (or `recommendations_validation`) partition of
one (model, run_date)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import deltalake
import pyarrow as pa

from recsys_torch.schemas import RECOMMENDATIONS as RECOMMENDATIONS_SCHEMA


TABLES = {"test": "recommendations", "validation": "recommendations_validation"}  # the lists of each split


def recommendations_path(warehouse: str | Path, split: str = "test") -> Path:
    return Path(warehouse) / TABLES[split]


def write_recommendations(warehouse: str | Path, table: pa.Table, model: str, run_date: dt.date,
                          split: str = "test") -> int:
    """Replace the (model, run_date) partition of `<warehouse>/recommendations` (split test) or
    `recommendations_validation` (split validation) with `table` in one commit.

    A re-run of the same date replaces its rows instead of appending; older versions stay readable by time travel.
    Returns the new table version.
    """
    path = recommendations_path(warehouse, split)
    table = table.select(RECOMMENDATIONS_SCHEMA.names).cast(RECOMMENDATIONS_SCHEMA)
    kwargs: dict = {"mode": "overwrite", "partition_by": ["model", "run_date"]}
    if (path / "_delta_log").is_dir():
        model_sql = model.replace("'", "''")
        kwargs["predicate"] = f"model = '{model_sql}' AND run_date = '{run_date.isoformat()}'"
    deltalake.write_deltalake(str(path), table, **kwargs)
    return deltalake.DeltaTable(str(path)).version()


def read_recommendations(warehouse: str | Path, version: int | None = None) -> pa.Table:
    """The recommendations table (any version) as Arrow, partition columns restored from the hive-style paths."""
    import pyarrow.dataset as pads

    path = recommendations_path(warehouse)
    table = deltalake.DeltaTable(str(path), version=version)
    files = table.file_uris()
    if not files:
        return RECOMMENDATIONS_SCHEMA.empty_table()
    dataset = pads.dataset(files, format="parquet", partition_base_dir=str(path),
                           partitioning=pads.partitioning(pa.schema([("model", pa.string()),
                                                                     ("run_date", pa.date32())]), flavor="hive"))
    return dataset.to_table().select(RECOMMENDATIONS_SCHEMA.names)
