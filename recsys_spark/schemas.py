"""The tables and shards recsys_spark writes, each declared once: the Spark side of docs/SCHEMAS.md.

recsys_torch declares what it reads and writes of the same contract in recsys_torch/schemas.py (the two libraries
never import each other); tests/test_schemas.py writes with one side, reads with the other and checks both
declarations against the document. Writers check their frames against these before anything is committed
(recsys_spark.delta.write_table's `schema`).
"""
from __future__ import annotations

import pyarrow as pa

from recsys_core.schemas import META_KEYS, SHARD_SCHEMA_VERSION  # noqa: F401 - the shards' plain-data part

# ---------------------------------------------------------------------------------------------------------------
# ETL outputs

INTERACTIONS = pa.schema([
    ("userId", pa.int64()), ("movieId", pa.int64()), ("rating", pa.float64()), ("timestamp", pa.int64()),
    ("user_idx", pa.int32()), ("item_idx", pa.int32()), ("seq", pa.int32()), ("split", pa.string()),
    ("temporal_split", pa.string()),
])
ITEMS = pa.schema([
    ("movieId", pa.int64()), ("item_idx", pa.int32()), ("title", pa.string()), ("year", pa.int32()),
    ("genres", pa.list_(pa.string())), ("imdbId", pa.string()), ("tmdbId", pa.int64()),
])
USERS = pa.schema([("userId", pa.int64()), ("user_idx", pa.int32()), ("n_interactions", pa.int64())])
TAGS = pa.schema([("userId", pa.int64()), ("movieId", pa.int64()), ("tag", pa.string()), ("timestamp", pa.int64())])
REJECTS = pa.schema([("file", pa.string()), ("line", pa.int64()), ("raw", pa.string()), ("reason", pa.string()),
                     ("field", pa.string())])
ETL_REPORT = pa.schema([("file", pa.string()), ("category", pa.string()), ("reason", pa.string()),
                        ("rows", pa.int64())])

# ---------------------------------------------------------------------------------------------------------------
# Model outputs

RECOMMENDATIONS = pa.schema([
    ("model", pa.string()), ("run_id", pa.string()), ("run_date", pa.date32()), ("userId", pa.int64()),
    ("rank", pa.int32()), ("movieId", pa.int64()), ("score", pa.float64()),
])
METRICS = pa.schema([
    ("model", pa.string()), ("run_id", pa.string()), ("run_date", pa.date32()), ("split", pa.string()),
    ("metric", pa.string()), ("k", pa.int32()), ("value", pa.float64()), ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    # what produced the row (recsys_spark.evaluate.PROVENANCE): the ETL's tie policy and input, the interactions
    # version scored
    ("tie_break", pa.string()), ("tie_seed", pa.int64()), ("input_path", pa.string()), ("input_format", pa.string()),
    ("interactions_version", pa.int64()),
])
DRIFT = pa.schema([  # recsys_spark.drift
    ("run_date", pa.date32()), ("kind", pa.string()), ("model", pa.string()), ("metric", pa.string()),
    ("k", pa.int32()), ("value", pa.float64()), ("previous", pa.float64()), ("ci_low", pa.float64()),
    ("ci_high", pa.float64()), ("compared_to", pa.string()), ("threshold", pa.float64()), ("warning", pa.string()),
])
TRANSITIONS_AR1 = pa.schema([("prev_item_idx", pa.int32()), ("next_item_idx", pa.int32()), ("count", pa.int64()),
                             ("prob", pa.float64()), ("rank", pa.int32())])
TRANSITIONS_AR2 = pa.schema([("prev2_item_idx", pa.int32()), *TRANSITIONS_AR1])
ITEM_NEIGHBORS = pa.schema([("item_idx", pa.int32()), ("neighbor_idx", pa.int32()), ("similarity", pa.float64()),
                            ("co_count", pa.int64()), ("rank", pa.int32())])
USER_FACTORS = pa.schema([("user_idx", pa.int32()), ("userId", pa.int64()), ("features", pa.list_(pa.float32()))])
ITEM_FACTORS = pa.schema([("item_idx", pa.int32()), ("movieId", pa.int64()), ("features", pa.list_(pa.float32()))])
ITEM_EMBEDDINGS = pa.schema([
    ("model", pa.string()), ("run_date", pa.date32()), ("movieId", pa.int64()), ("vector", pa.list_(pa.float32())),
])

# ---------------------------------------------------------------------------------------------------------------
# The published snapshot (`recsys publish`, recsys_spark/publish.py): one row per published night

PUBLISHED_MODEL = pa.struct([
    ("model", pa.string()), ("published", pa.bool_()), ("reason", pa.string()), ("run_date", pa.date32()),
    ("recommendations_version", pa.int64()), ("ndcg_at_10", pa.float64()),
])
RUNS = pa.schema([
    ("run_id", pa.string()), ("run_date", pa.date32()), ("published_at", pa.timestamp("us", tz="UTC")),
    ("tables", pa.map_(pa.string(), pa.int64())), ("models", pa.list_(PUBLISHED_MODEL)),
])

# ---------------------------------------------------------------------------------------------------------------
# Sequence shards (`recsys export-sequences` -> `recsys train`)

SEQUENCE_ROWS = pa.schema([  # train/, validation/, test/
    ("user_idx", pa.int32()), ("items", pa.list_(pa.int32())), ("timestamps", pa.list_(pa.int64())),
    ("targets", pa.list_(pa.int32())), ("target_item", pa.int32()), ("target_timestamp", pa.int64()),
    ("query_timestamp", pa.int64()), ("seen_items", pa.list_(pa.int32())),
])
NCF_ROWS = pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32())])  # ncf_train/
EDGE_ROWS = pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32())])  # edges/ (the train graph)
ITEM_MAP = pa.schema([("item_idx", pa.int32()), ("movieId", pa.int64())])  # item_map.parquet
USER_MAP = pa.schema([("user_idx", pa.int32()), ("userId", pa.int64())])  # user_map.parquet

# Delta tables by name (`<warehouse>/<name>`; `<name>_user_factors` for any ALS model name) and shards by path.
TABLES = {"interactions": INTERACTIONS, "items": ITEMS, "users": USERS, "tags": TAGS, "rejects": REJECTS,
          "etl_report": ETL_REPORT, "recommendations": RECOMMENDATIONS,
          "recommendations_validation": RECOMMENDATIONS, "metrics": METRICS, "drift": DRIFT,
          "transitions_ar1": TRANSITIONS_AR1, "transitions_ar2": TRANSITIONS_AR2, "item_neighbors": ITEM_NEIGHBORS,
          "als_user_factors": USER_FACTORS, "als_item_factors": ITEM_FACTORS}
# Written by recsys_torch's top-N step (no Spark code writes them), declared here too so that the contract is one.
WRITTEN_BY_TORCH = {"item_embeddings": ITEM_EMBEDDINGS}
TABLES.update(WRITTEN_BY_TORCH)
WRITTEN_BY_PUBLISH = {"runs": RUNS}  # by the nightly's last step, from the versions of the others
TABLES.update(WRITTEN_BY_PUBLISH)
SHARDS = {"train": SEQUENCE_ROWS, "validation": SEQUENCE_ROWS, "test": SEQUENCE_ROWS, "ncf_train": NCF_ROWS,
          "edges": EDGE_ROWS,
          "item_map.parquet": ITEM_MAP, "user_map.parquet": USER_MAP}
