"""MovieLens-shaped input data without Spark or torch: the synthetic generator behind `recsys generate`."""
