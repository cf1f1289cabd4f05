"""The names both halves of docs/SCHEMAS.md agree on, as plain data (the column types are pyarrow schemas, declared
by each side in recsys_spark/schemas.py and recsys_torch/schemas.py; tests/test_schemas.py checks them together).
"""
from __future__ import annotations

# The Delta tables under <warehouse>/ by name (an ALS model named <name> writes <name>_user_factors and
# <name>_item_factors: recsys_core.catalogue.factor_tables).
TABLES = ("interactions", "items", "users", "tags", "rejects", "etl_report", "recommendations",
          "recommendations_validation", "metrics", "drift", "transitions_ar1", "transitions_ar2", "item_neighbors",
          "als_user_factors", "als_item_factors", "item_embeddings", "runs")

# Sequence shards (<warehouse>/sequences): meta.json's keys, in the order the export writes them.
SHARD_SCHEMA_VERSION = 1
META_KEYS = ("schema_version", "n_items", "n_users", "max_len", "rows", "tie_break", "seed", "time", "last_gap",
             "created_at")
META_REQUIRED_KEYS = ("schema_version", "n_items", "n_users", "max_len")  # what a reader cannot do without
