"""Everything that runs in Spark: session, schemas, ETL, splits, ALS, baselines, sequence export, top-N, evaluator."""
