"""MLflow and the progress bar for training: rank 0 logs, every other rank is silent."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from recsys_core.tracking import experiment_id, tracking_uri


def flatten(prefix: str, values: Any) -> dict[str, Any]:
    if isinstance(values, dict):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: values}


class MlflowLogger:
    """MLflow from rank 0 only; a no-op elsewhere or when `mlflow.enabled: false`.

    Store and experiment: recsys_core.tracking's (as for the jobs), the experiment given by $MLFLOW_EXPERIMENT_ID
    when `recsys train` set it for its workers. Under `recsys pipeline` the run is tagged with the pipeline's parent
    run.
    """

    def __init__(self, cfg: dict, warehouse: Path, active: bool):
        section = cfg.get("mlflow") or {}
        self.active = active and section.get("enabled", True)
        self.run_id: str | None = None
        if not self.active:
            return
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri(cfg, warehouse))
        self.experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or experiment_id(cfg, warehouse)

    def start(self, run_name: str, params: dict, resume_run_id: str | None) -> None:
        if not self.active:
            return
        run = None
        if resume_run_id:
            try:
                run = self.mlflow.start_run(run_id=resume_run_id)
            except Exception:  # noqa: BLE001 - the old run is gone (store moved): start a new one
                run = None
        if run is None:
            tags = {"recsys.step": os.environ.get("RECSYS_STEP_NAME", "train")}
            if os.environ.get("RECSYS_MLFLOW_PARENT_RUN_ID"):
                tags["mlflow.parentRunId"] = os.environ["RECSYS_MLFLOW_PARENT_RUN_ID"]
            run = self.mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, tags=tags)
            self.mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        self.run_id = run.info.run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.active:
            self.mlflow.log_metrics(values, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        if self.active:
            for path in paths:
                if path.exists():
                    self.mlflow.log_artifact(str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self.active and self.mlflow.active_run() is not None:
            self.mlflow.end_run(status=status)


def progress_bar(active: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                    transient=True, disable=not (active and sys.stdout.isatty()))
