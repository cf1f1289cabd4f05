"""MLflow for the jobs: one local SQLite store under the warehouse by default, one run per job.

Under `recsys pipeline` a job's run is nested in the pipeline's parent run: the pipeline passes the parent's id in
RECSYS_MLFLOW_PARENT_RUN_ID and every job tags its own run with it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from recsys_core.tracking import experiment_id, tracking_uri

# Nightly batch jobs send nothing home: MLflow's usage telemetry is off unless the user turned it on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PARENT_ENV = "RECSYS_MLFLOW_PARENT_RUN_ID"
STEP_ENV = "RECSYS_STEP_NAME"  # the pipeline's name for the step a job runs as


def export_env(cfg: dict, warehouse: str | Path) -> dict[str, str]:
    """Environment a child process (torchrun workers included) needs to log into the same store and experiment."""
    return {"MLFLOW_TRACKING_URI": tracking_uri(cfg, warehouse),
            "MLFLOW_EXPERIMENT_ID": experiment_id(cfg, warehouse)}


@contextlib.contextmanager
def job_run(cfg: dict, warehouse: str | Path, name: str, params: dict | None = None) -> Iterator[object]:
    """An MLflow run for one job; nested under the pipeline's run when there is one."""
    import mlflow

    exp = experiment_id(cfg, warehouse)
    tags = {"recsys.step": os.environ.get(STEP_ENV, name)}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    # nested: a step run in the pipeline's own process (jobs.steps.run_in_process) finds the parent run active
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=tags, nested=mlflow.active_run() is not None) as run:
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        yield run
