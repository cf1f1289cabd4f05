"""The read-only side of the warehouse: `recsys serve` (a FastAPI app and a web page) over the Delta tables the
nightly run writes. Imports neither Spark nor torch."""
