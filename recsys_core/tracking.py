"""Where MLflow tracks, for the jobs and for the torch workers alike (one store, one experiment).

Store: `mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else SQLite under `<warehouse>/_mlflow`; experiment:
`mlflow.experiment` (default "recsys") by name, created with its artifacts under `<warehouse>/_mlflow/artifacts`.
A warehouse on object storage or HDFS has no place for the SQLite file: there the store must be configured.
"""
from __future__ import annotations

import os
from pathlib import Path

from recsys_core import storage
from recsys_core.errors import ConfigError


def tracking_uri(cfg: dict, warehouse: str | Path) -> str:
    configured = (cfg.get("mlflow") or {}).get("tracking_uri")
    if configured:
        return str(configured)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if not storage.is_local(str(warehouse)):
        raise ConfigError(f"the warehouse {warehouse} is not on a local disk: set mlflow.tracking_uri (or "
                          f"$MLFLOW_TRACKING_URI) to a tracking server or database for it")
    root = Path(storage.local_path(str(warehouse))) / "_mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def experiment_id(cfg: dict, warehouse: str | Path) -> str:
    """The id of the configured experiment in the configured store (set as MLflow's store), created if new."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg, warehouse))
    name = (cfg.get("mlflow") or {}).get("experiment") or "recsys"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if storage.is_local(str(warehouse)):
        artifacts = Path(storage.local_path(str(warehouse)), "_mlflow", "artifacts").as_uri()
    else:
        artifacts = storage.native_path(storage.join(str(warehouse), "_mlflow", "artifacts"))
    return mlflow.create_experiment(name, artifact_location=artifacts)
