"""What recsys_torch reads and writes of docs/SCHEMAS.md, each declared once: the torch side of the contract.

recsys_spark declares the same tables and shards in recsys_spark/schemas.py (the two libraries never import each
other); tests/test_schemas.py writes with one side, reads with the other and checks both against the document.
"""
from __future__ import annotations

import pyarrow as pa

# Sequence shards, read: train/, validation/, test/ (one schema), ncf_train/, edges/, item_map.parquet,
# user_map.parquet.
SHARD_SCHEMA_VERSION = 1
META_REQUIRED_KEYS = ("schema_version", "n_items", "n_users", "max_len")  # of meta.json
META_KEYS = ("schema_version", "n_items", "n_users", "max_len", "rows", "tie_break", "seed", "last_gap", "created_at")
SEQUENCE_ROWS = pa.schema([
    ("user_idx", pa.int32()), ("items", pa.list_(pa.int32())), ("timestamps", pa.list_(pa.int64())),
    ("targets", pa.list_(pa.int32())), ("target_item", pa.int32()), ("target_timestamp", pa.int64()),
    ("query_timestamp", pa.int64()), ("seen_items", pa.list_(pa.int32())),
])
NCF_ROWS = pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32())])
EDGE_ROWS = pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32())])  # the train graph (recsys_torch.graph)
ITEM_MAP = pa.schema([("item_idx", pa.int32()), ("movieId", pa.int64())])
USER_MAP = pa.schema([("user_idx", pa.int32()), ("userId", pa.int64())])

# Written: the (model, run_date) partitions of the one recommendations table, and of item_embeddings (the trained
# item vectors, for similar-item look-ups).
RECOMMENDATIONS = pa.schema([
    ("model", pa.string()), ("run_id", pa.string()), ("run_date", pa.date32()), ("userId", pa.int64()),
    ("rank", pa.int32()), ("movieId", pa.int64()), ("score", pa.float64()),
])
ITEM_EMBEDDINGS = pa.schema([
    ("model", pa.string()), ("run_date", pa.date32()), ("movieId", pa.int64()), ("vector", pa.list_(pa.float32())),
])
