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
    database = root / "mlflow.db"
    if not database.exists():
        _create_store(database)
    return f"sqlite:///{database}"


def _create_store(database: Path) -> None:
    """Create the SQLite store beside its final name and link it into place once MLflow's schema migrations are
    done: they run as many transactions, and a process killed among them (the nightly, SIGKILLed at its start) left
    a half-made mlflow.db that failed every later run ("table ... already exists")."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for stale in database.parent.glob(f"{database.name}.init-*"):  # a killed creator's (its pid is gone)
        if not _alive(int(stale.name.rsplit("-", 1)[1])):
            stale.unlink(missing_ok=True)
    building = database.with_name(f"{database.name}.init-{os.getpid()}")
    store = SqlAlchemyStore(f"sqlite:///{building}", (database.parent / "artifacts").as_uri())
    store.engine.dispose()
    try:
        os.link(building, database)  # never over a store another process finished first
    except FileExistsError:
        pass
    finally:
        building.unlink(missing_ok=True)


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
