"""Everything that runs under torch: shard reading, models, DDP training, full-ranking inference, checkpoints.

Never imports Spark or recsys_spark: it meets the Spark side only through the files in docs/SCHEMAS.md.
"""
