"""Everything that runs under torch: shard reading, models, DDP training, full-ranking inference, checkpoints.

Never imports Spark or recsys_spark: it meets the Spark side only through the files in docs/SCHEMAS.md. Its
modules import only torch and numpy at module level (pyarrow, Petastorm, deltalake and MLflow when a file is read
or written), so the models and the trainer run on a machine that has nothing else (docs/GPU.md).
"""
