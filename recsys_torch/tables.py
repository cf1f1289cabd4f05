"""The torch side's Delta writes (delta-rs): the (model, run_date) partitions of `recommendations` (or
`recommendations_validation`, the validation-time lists) and `item_embeddings`."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import deltalake
import numpy as np
import pyarrow as pa

from recsys_core import storage
from recsys_core.published import has_commit
from recsys_torch.errors import RecsysError
from recsys_torch.schemas import ITEM_EMBEDDINGS as ITEM_EMBEDDINGS_SCHEMA
from recsys_torch.schemas import RECOMMENDATIONS as RECOMMENDATIONS_SCHEMA

PARTITION_BY = ["model", "run_date"]
TABLES = {"test": "recommendations", "validation": "recommendations_validation"}  # the lists of each split


class EmptyPartitionError(RecsysError):
    """A partition replace with no rows: it would wipe a good (model, run_date) partition."""


def recommendations_path(warehouse: str | Path, split: str = "test") -> str:
    return storage.join(str(warehouse), TABLES[split])


def item_embeddings_path(warehouse: str | Path) -> str:
    return storage.join(str(warehouse), "item_embeddings")


def _replace_partition(path: str, table: pa.Table, schema: pa.Schema, model: str, run_date: dt.date) -> int:
    """Replace the (model, run_date) partition of the Delta table at `path` with `table` in one commit.

    A re-run of the same date replaces its rows instead of appending; older versions stay readable by time travel.
    An empty `table` is refused (EmptyPartitionError): the partition keeps its rows. Returns the new table version.
    """
    if table.num_rows == 0:
        raise EmptyPartitionError(f"refusing to replace the (model={model}, run_date={run_date}) partition of {path} "
                                  f"with no rows: the step produced nothing for it; the partition keeps its current "
                                  f"rows")
    table = table.select(schema.names).cast(schema)
    options = storage.storage_options(path)
    kwargs: dict = {"mode": "overwrite", "partition_by": PARTITION_BY, "storage_options": options}
    if has_commit(path):
        model_sql = model.replace("'", "''")
        kwargs["predicate"] = f"model = '{model_sql}' AND run_date = '{run_date.isoformat()}'"
    deltalake.write_deltalake(storage.native_path(path), table, **kwargs)
    return deltalake.DeltaTable(storage.native_path(path), storage_options=options).version()


def write_recommendations(warehouse: str | Path, table: pa.Table, model: str, run_date: dt.date,
                          split: str = "test") -> int:
    """Replace the (model, run_date) partition of `<warehouse>/recommendations` (split test) or
    `recommendations_validation` (split validation) with `table`; the new version."""
    return _replace_partition(recommendations_path(warehouse, split), table, RECOMMENDATIONS_SCHEMA, model, run_date)


def write_item_embeddings(warehouse: str | Path, model: str, run_date: dt.date, movie_ids: np.ndarray,
                          vectors: np.ndarray) -> int:
    """Replace the (model, run_date) partition of `<warehouse>/item_embeddings`: one row per movie, its vector as
    float32 (`vectors[i]` belongs to `movie_ids[i]`). Returns the new table version."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(movie_ids):
        raise ValueError(f"item_embeddings: {len(movie_ids)} movieIds but vectors of shape {vectors.shape}")
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    table = pa.table({
        "model": pa.array([model] * n, pa.string()),
        "run_date": pa.array([run_date] * n, pa.date32()),
        "movieId": pa.array(np.asarray(movie_ids, np.int64)),
        "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
    })
    return _replace_partition(item_embeddings_path(warehouse), table, ITEM_EMBEDDINGS_SCHEMA, model, run_date)


def read_recommendations(warehouse: str | Path, version: int | None = None, split: str = "test") -> pa.Table:
    """The recommendations table (split validation: recommendations_validation), any version, as Arrow."""
    path = recommendations_path(warehouse, split)
    table = deltalake.DeltaTable(storage.native_path(path), version=version,
                                 storage_options=storage.storage_options(path))
    return table.to_pyarrow_table().select(RECOMMENDATIONS_SCHEMA.names).cast(RECOMMENDATIONS_SCHEMA)
