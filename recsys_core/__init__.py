"""What recsys_spark, recsys_torch, recsys_serve and jobs share, with neither Spark nor torch nor pyarrow: the
model catalogue as data, the one config builder, the one error type, the names of the tables and shards, and
where MLflow tracks. Every package may import it; it imports none of them."""
