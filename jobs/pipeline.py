"""recsys pipeline: the nightly run (ETL → models → top-N → evaluation → report), one MLflow parent run.

The steps are the plan of jobs/plan.py, each started by the environment's launcher (jobs/launchers.py): here as
`python jobs/<file>.py …` (conf/local.yaml), or with `--env cluster` through spark-submit (the static Spark settings
and the shipped code on the submit line), torchrun (the rendezvous from the train section) and plain Python. Either
way the run skips unchanged steps, resumes a training, holds the warehouse's run lock, goes on past a failed model
step, registers the best torch model and writes the report. `--step NAME` runs one step of the plan the same way
(what a scheduler's task calls: the runner still decides skip/resume and records the state).

`--print-plan` prints the steps as the commands they run and runs nothing (`--print-plan local` / `cluster`: with
that launcher whatever the environment says). Every printed line runs as printed when pasted into a shell: each step's
command carries the run's --config file and key=value overrides itself. Without --data / --warehouse the plan names
them $DATA and $WAREHOUSE, set by its second line (which stops with a message while they are unset).

A run holds the warehouse's run lock (jobs/runlock.py; another run on it exits 2) and exits 1 when a step failed, with
a summary of every step and the failed step's log.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import shlex
import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script (`python jobs/pipeline.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import catalogue  # noqa: E402
from jobs.common import add_config_flags, comparison_view, guarded, parse_run_date  # noqa: E402
from jobs.config import ConfigError, check_steps, load_config, run_layer, section  # noqa: E402
from jobs.executor import RunSpec, run_pipeline, summary  # noqa: E402
from jobs.launchers import launcher_of, step_command  # noqa: E402
from jobs.plan import PipelineConfig, Run, config_sections, plan  # noqa: E402
from jobs.runlock import RunLock  # noqa: E402
from jobs.steps import PROJECT_ROOT, run_child  # noqa: E402
from recsys_core import storage  # noqa: E402

# What a printed plan says in place of a path it was not given: a shell variable its second line sets.
PLACEHOLDERS = {"--data": ("DATA", "the folder of ratings.csv and movies.csv"),
                "--warehouse": ("WAREHOUSE", "the folder of the Delta tables")}


def best_by_validation(warehouse: Path, models: list[str]) -> tuple[str, float] | None:
    """Of `models`, the trained one with the highest validation NDCG@10 (models/<model>/history.json)."""
    import json

    best = None
    for path in [warehouse / "models" / m / "history.json" for m in models]:
        if not path.is_file():
            continue
        scores = [h.get("val_ndcg@10", float("-inf")) for h in json.loads(path.read_text())]
        if scores and (best is None or max(scores) > best[1]):
            best = (path.parent.name, max(scores))
    return best


def register_best(warehouse: Path, cfg: dict, trained: set[str]) -> str | None:
    """Log the best configured torch model with mlflow.pytorch in a nested run and register it as
    `recsys-<model>`; a model not retrained tonight (`trained`) is already registered: no new version."""
    import mlflow
    import torch

    from recsys_torch.infer import load_best

    found = best_by_validation(warehouse, list(PipelineConfig.from_dict(section(cfg, "pipeline")).torch_models))
    if found is None:
        return None
    model_name, score = found
    registered = (cfg.get("mlflow") or {}).get("registered_model_prefix", "recsys-") + model_name
    if model_name not in trained:
        return f"{registered} unchanged (not retrained; validation NDCG@10 {score:.4f})"
    net, _ = load_best(warehouse, model_name, torch.device("cpu"), sequences=section(cfg, "train").get("sequences"))
    with mlflow.start_run(run_name=f"register {model_name}", nested=True,
                          tags={"recsys.step": "register"}) as run:
        mlflow.log_metric("val_ndcg_at_10", score)
        # Explicit requirements: inferring them loads the model again in a subprocess, which is slow.
        logged = mlflow.pytorch.log_model(net, name="model", serialization_format="pickle",
                                          pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        mlflow.register_model(logged.model_uri, registered)
    return f"{registered} (validation NDCG@10 {score:.4f})"


def gate_summary(warehouse: Path, run_date: dt.date, results) -> list[str]:
    """The regression gate's decision per model, when this run's publish step ran (or was skipped: published
    before with the same inputs); else why nothing was published."""
    from jobs.publish import decision_lines
    from recsys_core.published import latest_published

    status = next((r.status for r in results if r.name == "publish"), None)
    if status not in ("ran", "skipped"):
        return ["", f"not published ({status or 'no publish step'}): readers keep the last published run"]
    run = latest_published(warehouse)
    if run is None or run.run_date != run_date:
        return []
    return ["", f"published run {run.run_id}:", *decision_lines(run)]


def pipeline_run_of(experiment_id: str, run_date: dt.date) -> str | None:
    """The MLflow run of this run date's pipeline, when an earlier step's task made one: each scheduled step nests its
    run under the same parent."""
    import mlflow

    found = mlflow.search_runs([experiment_id], max_results=1, output_format="list", order_by=["start_time DESC"],
                               filter_string=f"tags.`recsys.step` = 'pipeline' and "
                                             f"tags.`recsys.run_date` = '{run_date}'")
    return found[0].info.run_id if found else None


def setup_logging() -> None:
    """Timestamped lines (UTC) for the runner's own messages (logger recsys.pipeline: lock, steps, leftovers), on
    stderr, unless the caller configured logging already."""
    import logging
    import time

    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root.addHandler(handler)
    logging.getLogger("recsys").setLevel(logging.INFO)


def parse(argv):
    p = argparse.ArgumentParser(prog="recsys pipeline", description=__doc__)
    p.add_argument("--data", help="a MovieLens folder, an events table (CSV, Parquet, Delta) or a sequences file "
                                  "(etl.format)")
    p.add_argument("--warehouse", help="folder of the Delta tables")
    p.add_argument("--run-date", help="YYYY-MM-DD (default: today)")
    p.add_argument("--reports", default="reports", help="where reports/<run_date>/report.md goes")
    p.add_argument("--force", action="store_true", help="re-run every step even when its inputs did not change")
    p.add_argument("--print-plan", nargs="?", const=True, choices=["local", "cluster"],
                   help="print the steps as the commands they run and stop (with the environment's launcher, or the "
                        "one named)")
    p.add_argument("--step", help="run only this step of the plan (a scheduler's task); the others as the state "
                                  "records them")
    add_config_flags(p)
    args = p.parse_intermixed_args(argv)
    missing = [flag for flag in ("--data", "--warehouse") if getattr(args, flag[2:]) is None]
    if missing and not args.print_plan:
        p.error(f"the following arguments are required: {', '.join(missing)} (only --print-plan runs without them)")
    # The steps run from the project root: the config file by its absolute path.
    args.config = str(Path(args.config).resolve()) if args.config else None
    args.overrides = [absolute_path_override(item) for item in args.overrides]
    bare = [item for item in args.overrides if "." not in item.split("=", 1)[0]]
    if bare:  # on a step's own line a bare key means that step's section: the run's overrides must say which
        raise ConfigError(f"override {bare[0]!r}: name its section (e.g. als.rank=20); every step of the run gets it")
    return args


PATH_KEYS = ("etl.items.path",)  # overrides naming a file: the steps run from the project root


def absolute_path_override(item: str) -> str:
    """`etl.items.path=items.csv` as the absolute path it names here (steps run from the project root)."""
    key, _, value = item.partition("=")
    if key in PATH_KEYS and value and value != "null" and storage.scheme(value) == "":
        return f"{key}={Path(value).resolve()}"
    return item


def given_or_placeholder(args: argparse.Namespace, flag: str) -> tuple[str, str | None]:
    """A path flag's absolute value (a URI as given), or its placeholder `$NAME` and the shell line that sets it."""
    value = getattr(args, flag[2:])
    if value is not None:
        return (str(Path(value).resolve()) if storage.scheme(value) == "" else storage.normalize(value)), None
    name, what = PLACEHOLDERS[flag]
    return f"${name}", f"{name}=${{{name}:?{what} ({flag}): set {name}, or pass {flag} to --print-plan}}"


def steps_warehouse(given: str, launcher: str) -> str:
    """The warehouse as the steps' commands name it: with the cluster launchers a file:// URI (a bare path would mean
    HDFS to Spark on YARN; the runner's warehouse is a folder every node mounts), here its absolute path (every step
    runs on this machine; `file:///x` and `/x` are the same folder)."""
    if given.startswith("$"):
        return given
    if storage.scheme(given) == "" or (launcher != "cluster" and storage.is_local(given)):
        given = str(Path(storage.local_path(given)).resolve())
        return "file://" + given if launcher == "cluster" else given
    return storage.normalize(given)


def print_plan(launcher: str, args: argparse.Namespace, run_date: dt.date, resolve, pipe: PipelineConfig) -> None:
    """The commands `recsys pipeline` runs for these flags with `launcher`; the cluster's start by building the
    shipped code (jobs/ship.py)."""
    from jobs.ship import archive_path

    (data, set_data), (warehouse, set_warehouse) = (given_or_placeholder(args, f) for f in ("--data", "--warehouse"))
    warehouse = steps_warehouse(warehouse, launcher)
    run = Run(data, warehouse, run_date.isoformat(), args.env, args.config, tuple(args.overrides))
    placeholders = {word for word, setter in ((data, set_data), (warehouse, set_warehouse)) if setter}

    def word(w: str) -> str:
        # a placeholder, or a ${NAME} the node's shell fills (a rendezvous endpoint): double quotes
        return f'"{w}"' if w in placeholders or ("${" in w and '"' not in w) else shlex.quote(w)

    print(f"cd {shlex.quote(str(PROJECT_ROOT))}")
    if set_data or set_warehouse:
        print("; ".join(line for line in (set_data, set_warehouse) if line))
    if launcher == "cluster":
        print(shlex.join([sys.executable, "jobs/ship.py"]))
    command = step_command(launcher, resolve, str(archive_path()), run_date.isoformat(), printing=True)
    for step in plan(pipe, run):
        print(" ".join(word(w) for w in command(step)))


@guarded
def main(argv=None, runner: Callable | None = None) -> int:
    """`recsys pipeline`. `runner(step, log, env)` replaces how each step is started (default: its own process, as
    `--print-plan` prints it); the tests pass jobs.steps.run_in_process to run a whole nightly on their JVM."""
    args = parse(argv)
    args.runner = runner
    layer = run_layer(args.config, args.overrides)

    def resolve(sections):
        return load_config(sections, overrides=args.overrides, config_file=args.config, env=args.env)

    cfg = resolve(config_sections())
    pipe = PipelineConfig.from_dict(section(cfg, "pipeline"))  # pipeline.* mistakes: before anything is made
    run_date = parse_run_date(args.run_date)
    launcher = launcher_of(cfg)
    steps = plan(pipe, Run("", "", run_date.isoformat(), args.env))
    if args.step and args.step not in [step.name for step in steps]:
        raise ConfigError(f"--step {args.step!r} is not a step of this run's plan; its steps: "
                          f"{', '.join(step.name for step in steps)}")
    if args.print_plan:
        print_plan(launcher if args.print_plan is True else args.print_plan, args, run_date, resolve, pipe)
        return 0
    check_steps(steps, resolve)  # every section of every step, model sections too: before anything is made
    if not storage.is_local(args.warehouse):  # its lock, state and step logs are local files for now
        raise ConfigError(f"recsys pipeline needs a local or file:// warehouse, got {args.warehouse!r}: the run "
                          "lock, state.json and step logs live beside the tables (each job alone takes s3:// and "
                          "hdfs://; run the pipeline on a file:// warehouse, e.g. a shared mount)")
    warehouse = Path(storage.local_path(args.warehouse)).resolve()
    # With the cluster launchers the steps get it as a file:// URI: a bare path would mean HDFS to Spark on YARN
    # (a shared mount every node sees); here, as the user named it.
    args.warehouse_uri = steps_warehouse(args.warehouse, launcher)
    args.launcher = launcher
    # a file:// URI names a local path; any other URI is refused by the input check, naming it as given
    data = Path(storage.local_path(args.data)) if storage.is_local(args.data) else args.data
    setup_logging()

    from rich.console import Console

    from jobs.plan import input_source

    console = Console(width=None if sys.stdout.isatty() else 140)
    input_source(cfg, data)  # before any MLflow run or folder is made: a bad input or etl.* is one line
    with RunLock(warehouse):
        return run_nightly(args, cfg, layer, resolve, pipe, run_date, data, warehouse, console)


def run_nightly(args, cfg, layer, resolve, pipe, run_date, data, warehouse, console) -> int:
    """The run itself, while this process holds the warehouse's run lock."""
    import mlflow

    from jobs.tracking import PARENT_ENV, export_env

    env = export_env(cfg, warehouse)

    def show(result):
        style = {"ran": "green", "skipped": "dim", "failed": "red", "not run": "yellow"}[result.status]
        console.print(f"[{style}]{result.status:>7}[/] {result.name:<20} {result.seconds:7.1f}s")

    runner = args.runner or cluster_runner(args, resolve, pipe, run_date, data) or run_child
    tags = {"recsys.step": "pipeline", "recsys.run_date": str(run_date)}
    parent_id = pipeline_run_of(env["MLFLOW_EXPERIMENT_ID"], run_date) if args.step else None
    with mlflow.start_run(run_id=parent_id, experiment_id=env["MLFLOW_EXPERIMENT_ID"],
                          run_name=None if parent_id else f"pipeline {run_date}", tags=tags) as parent:
        if parent_id is None:
            mlflow.log_params({"data": str(data), "warehouse": str(warehouse), "run_date": str(run_date)})
            mlflow.log_dict(cfg, "resolved_config.yaml")
        spec = RunSpec(data, warehouse, run_date, layer, resolve, Path(args.config) if args.config else None,
                       args.overrides, args.env, args.warehouse_uri)
        results = run_pipeline(spec, runner, env_for_steps={**env, PARENT_ENV: parent.info.run_id},
                               force=args.force, only=args.step, on_step=show)
        night = night_outputs(args, cfg, pipe, warehouse, run_date, results)
    show_night(console, night, warehouse, run_date, results)
    failures = [line for line in summary(results) if line.startswith("FAILED ")]
    if args.step:  # a scheduler's task: a step its failed upstream kept from running is not a success either
        failures += [f"NOT RUN {r.name}: {r.blocked_by} failed" for r in results if r.status == "not run"]
    if failures:
        print("\n".join(failures), file=sys.stderr)
    return 1 if failures else 0


def cluster_runner(args, resolve, pipe, run_date, data):
    """With the cluster launchers, the step runner over the executors' code, built from these sources before the
    first step (a runner given by the caller starts the steps itself); None with the local launcher."""
    if args.launcher != "cluster" or args.runner is not None:
        return None
    from jobs.ship import build

    command = step_command("cluster", resolve, str(build()), run_date.isoformat())
    run = Run(str(data), args.warehouse_uri, run_date.isoformat(), args.env, args.config, tuple(args.overrides))
    for step in plan(pipe, run):  # a launch setting that cannot be used (an unset ${NAME}): before any step
        command(step)
    return functools.partial(run_child, command=command)


def night_outputs(args, cfg, pipe, warehouse, run_date, results) -> dict:
    """After the steps, in the pipeline's MLflow run: the best torch model registered, the report of the evaluated
    models and their metrics logged, the drift warnings, the failed steps tagged."""
    import mlflow

    from recsys_spark.report import comparison_table, load_metrics, write_report

    night = {"registered": None, "report": None, "table": None, "metrics": None, "drift_lines": []}
    status = {r.name: r.status for r in results}
    ran = {name for name, s in status.items() if s == "ran"}
    trained = {m for m in pipe.torch_models if catalogue.TORCH.fit_step.format(model=m) in ran}
    # One step alone (a scheduler's task): a training that ran registers its model when it is now the best.
    if not args.step or trained:
        night["registered"] = register_best(warehouse, cfg, trained)
    if status.get("evaluate") in ("ran", "skipped"):  # the report of the models that were evaluated
        night["report"] = write_report(warehouse, args.reports, run_date)
        mlflow.log_artifacts(str(night["report"].parent), "report")
        night["metrics"] = load_metrics(warehouse, run_date)
        night["table"] = comparison_table(night["metrics"])
        for model, row in night["table"].iterrows():
            for metric, value in row.dropna().items():
                mlflow.log_metric(f"{model}.{metric.replace('@', '_at_')}", float(value))
    if status.get("drift") in ("ran", "skipped"):  # its warnings, read back from the drift table
        from recsys_spark.drift import load_drift, warnings

        night["drift_lines"] = warnings(load_drift(warehouse, run_date))
    for result in results:
        mlflow.log_metric(f"step_seconds.{result.name}", result.seconds)
    if "failed" in status.values():
        mlflow.set_tag("recsys.failed_steps", ",".join(n for n, s in status.items() if s == "failed"))
    return night


def show_night(console, night: dict, warehouse, run_date, results) -> None:
    from recsys_spark.report import intervals_table

    if night["table"] is not None:
        console.print(comparison_view(night["table"], f"Comparison, run date {run_date} (test split, full ranking)"))
        intervals = intervals_table(night["metrics"])
        if not intervals.empty:
            console.print(comparison_view(intervals, "95% bootstrap intervals over users; paired differences, "
                                                     "(noise): the interval holds zero"))
    if night["registered"]:
        console.print(f"registered: {night['registered']}")
    if night["report"] is not None:
        console.print(f"report: {night['report']}")
    print("\n".join(["", f"nightly {run_date}:", *summary(results), *night["drift_lines"],
                      *gate_summary(warehouse, run_date, results)]))


if __name__ == "__main__":
    from jobs.common import exit_now

    exit_now(main())
