"""Thin entry points: parse flags and config, call recsys_spark / recsys_torch, log to MLflow."""
