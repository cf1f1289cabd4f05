"""The study behind `recsys tune` (the command: jobs/tune.py): Optuna (TPE, seeded) over one catalogue model's
search space.

The space is declared beside the model's config, under `tune.<model>` in the model's own conf file (e.g.
conf/baselines.yaml holds `tune.itemcf`): a mapping from a dotted config key to its range,

    baselines.itemcf.neighbors: {type: int, low: 10, high: 200, log: true}
    sasrec.dropout: {type: float, low: 0.0, high: 0.5}
    train.loss: {type: categorical, choices: [sampled_ce, bce]}

A trial is the model's own nightly steps (jobs/plan.py: its fit and top-N, nothing else) run with the trial's
values as a config layer, in a scratch warehouse under <warehouse>/_tune/<model>/ that links the input tables
(interactions, items, users, sequences/), so a trial never touches the nightly's tables or models. Its objective is
the validation NDCG@10 of its validation-time list (recommendations_validation) from the one evaluator
(`evaluate(split="validation")`): no test item is read. Spark steps run in this process (one JVM for the study);
torch training runs under torchrun as a child, and each validation it records (history.json) is reported to the
pruner, which may stop the trial early (Optuna's median rule).

The study lives in <warehouse>/_tune/optuna.db (SQLite): `--trials N` asks for N finished trials in all, so a
killed study resumes where it stopped (the trial it was running is marked failed and tried again). Every trial is
an MLflow run nested in the study's run, and the steps' own runs nest in their trial's. The best values are written
as a config layer file (<warehouse>/_tune/<model>/best.yaml) that `recsys pipeline --config` accepts.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from jobs import catalogue
from jobs.config import ConfigError, merge
from recsys_core.config import BOOLEAN, Config, build, checked, one_of
from jobs.plan import PipelineConfig, Run, Step, plan
from jobs.steps import run_child, run_in_process
from jobs.tracking import PARENT_ENV, export_env

LINKED = ("interactions", "items", "users", "sequences")  # the inputs every trial reads, never writes
PREPARE_STEPS = ("etl", "export-sequences", "evaluate")    # the plan's steps a trial does not run
RUN_DATE = dt.date(2000, 1, 1)                            # the trial warehouses' list partition
TYPES = ("int", "float", "categorical")


@dataclass(frozen=True)
class Param:
    key: str             # dotted config key
    type: str            # int | float | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()


@dataclass(frozen=True)
class SearchRange(Config):
    """What tune.<model>.<key> may say, built by recsys_core.config (unknown keys and wrong types named)."""

    type: str = checked(rule=one_of(*TYPES))  # int | float | categorical
    low: float | None = None
    high: float | None = None
    log: bool = checked(False, BOOLEAN)
    choices: list | None = None


def search_space(cfg: dict, model: str) -> list[Param]:
    """tune.<model> of the resolved config, checked: one ConfigError naming the key for anything wrong."""
    where = f"tune.{model}"
    space = (cfg.get("tune") or {}).get(model)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: no search space declared (add it beside the model's config in conf/)")
    params = []
    for key, spec in space.items():
        name = f"{where}.{key}"
        r = build(SearchRange, spec, name)
        if r.type == "categorical":
            if not r.choices:
                raise ConfigError(f"{name}.choices must be a non-empty list, got {r.choices!r}")
            params.append(Param(key, "categorical", choices=tuple(r.choices)))
            continue
        number = int if r.type == "int" else (int, float)
        if not all(isinstance(v, number) and not isinstance(v, bool) for v in (r.low, r.high)) or not r.low < r.high:
            raise ConfigError(f"{name}: low and high must be {r.type}s with low < high, got {r.low!r}, {r.high!r}")
        if r.log and r.low <= 0:
            raise ConfigError(f"{name}.log must be true or false, and true only with low > 0")
        params.append(Param(key, r.type, r.low, r.high, r.log))
    return params


def suggest(trial, space: list[Param]) -> dict:
    values = {}
    for p in space:
        if p.type == "int":
            values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        elif p.type == "float":
            values[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
        else:
            values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
    return values


def as_layer(values: dict) -> dict:
    """{"a.b.c": 1} -> {"a": {"b": {"c": 1}}}: a config layer file's shape."""
    layer: dict = {}
    for key, value in values.items():
        node = layer
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return layer


def tunable(name: str) -> catalogue.Model:
    model = catalogue.find(name)
    if model.family is catalogue.ENSEMBLE:
        raise ConfigError("the ensemble chooses its own weights on validation: tune its members instead")
    return model


def trial_steps(model: catalogue.Model, warehouse: Path, layer_file: Path, env: str) -> list[Step]:
    """The model's fit and top-N steps of the nightly plan, pointed at a trial warehouse."""
    key = model.family.pipeline_key
    pipe = PipelineConfig(spark_models=(model.name,) if key == "spark_models" else (),
                          torch_models=(model.name,) if key == "torch_models" else ())
    run = Run(data="-", warehouse=str(warehouse), run_date=RUN_DATE.isoformat(), env=env,
              config_file=str(layer_file))
    return [s for s in plan(pipe, run) if s.name not in PREPARE_STEPS]


def link_inputs(source: Path, trial_dir: Path) -> None:
    trial_dir.mkdir(parents=True)
    for name in LINKED:
        if (source / name).exists():
            (trial_dir / name).symlink_to((source / name).resolve(), target_is_directory=True)


class Pruned(Exception):
    pass


def read_history(path: Path) -> list[dict]:
    try:
        return yaml.safe_load(path.read_text()) or []  # JSON is YAML; a half-written file reads as nothing new
    except (OSError, yaml.YAMLError):
        return []


def history_watch(history: Path, report):
    """A `stop_when` for the step runner: passes each new validation record of `history` to `report(step, value)`,
    which returns True to stop the trial."""
    seen = 0

    def stop() -> bool:
        nonlocal seen
        records = read_history(history)
        for record in records[seen:]:
            seen += 1
            if report(record["step"], record["val_ndcg@10"]):
                return True
        return False

    return stop


def run_trial_step(step: Step, trial_dir: Path, env: dict, history: Path | None, report) -> None:
    """A Spark step in this process (the study's one JVM); a torch or python step as a child process whose
    validations (`history`) go to `report`. Raises Pruned when the pruner stopped it, RuntimeError when it failed."""
    if step.runtime == "spark":
        outcome = run_in_process(step, env)
    else:
        outcome = run_child(step, trial_dir / f"{step.name}.log", env, echo=False,
                            stop_when=history_watch(history, report) if history else None)
    if outcome.stopped:
        raise Pruned
    if outcome.exit_code != 0:
        log = f"; log: {outcome.log}" if outcome.log else ""
        raise RuntimeError(f"trial step {step.name} failed (exit {outcome.exit_code}){log}")


@dataclass
class TuneResult:
    best_value: float
    best_params: dict
    best_file: Path
    complete: int
    pruned: int
    failed: int


def tune(warehouse: str | Path, model_name: str, trials: int, timeout: float | None, cfg: dict, run_layer: dict,
         env_name: str = "local", seed: int = 0, out: str | Path | None = None) -> TuneResult:
    """Run (or resume) the study of `model_name` until it holds `trials` finished trials or `timeout` seconds
    pass; write the best values as a config layer file and return them."""
    import optuna
    from mlflow.tracking import MlflowClient

    from recsys_spark.evaluate import EvaluateConfig
    from recsys_spark.session import get_spark

    model = tunable(model_name)
    space = search_space(cfg, model.name)
    if trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials}")
    warehouse = Path(warehouse).resolve()
    root = warehouse / "_tune"
    root.mkdir(parents=True, exist_ok=True)
    tracking = export_env(cfg, warehouse)
    os.environ.update(tracking)  # the steps log into the warehouse's store, not their trial warehouse's
    client = MlflowClient(tracking["MLFLOW_TRACKING_URI"])
    spark = get_spark(f"recsys-tune-{model.name}", conf=cfg.get("spark") or {})
    evaluate_config = EvaluateConfig(ks=[10], bootstrap_resamples=0)

    study = open_study(root, model.name, seed)
    parent_id = study_run_id(study, client, tracking["MLFLOW_EXPERIMENT_ID"], model.name)
    runner = TrialRunner(model, space, warehouse, root, run_layer, env_name, client, tracking, parent_id, spark,
                         evaluate_config)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        study.optimize(runner.objective, n_trials=remaining, timeout=timeout, catch=())
    return write_best(study, model.name, Path(out) if out else root / model.name / "best.yaml", client, parent_id)


def open_study(root: Path, model_name: str, seed: int):
    """The model's study in <root>/optuna.db, created or resumed; a trial left running by a killed process is marked
    failed and queued again with its values."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=model_name, storage=f"sqlite:///{root / 'optuna.db'}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
        load_if_exists=True)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # its process was killed: try it again
        study.enqueue_trial(stale.params)
    return study


def study_run_id(study, client, experiment_id: str, model_name: str) -> str:
    """The study's MLflow run (the trials' parent), made the first time and remembered in the study."""
    parent_id = study.user_attrs.get("mlflow_run_id")
    if parent_id is None:
        parent_id = client.create_run(experiment_id, run_name=f"tune-{model_name}",
                                      tags={"recsys.step": "tune"}).info.run_id
        study.set_user_attr("mlflow_run_id", parent_id)
        client.log_param(parent_id, "model", model_name)
    return parent_id


@dataclass
class TrialRunner:
    """What every trial of one study shares; `objective` runs one trial."""

    model: catalogue.Model
    space: list[Param]
    warehouse: Path
    root: Path
    run_layer: dict
    env_name: str
    client: object  # mlflow's MlflowClient
    tracking: dict
    parent_id: str
    spark: object
    evaluate_config: object

    def objective(self, trial) -> float:
        import optuna

        values = suggest(trial, self.space)
        trial_dir = self.root / self.model.name / f"trial-{trial.number}"
        shutil.rmtree(trial_dir, ignore_errors=True)
        link_inputs(self.warehouse, trial_dir)
        layer_file = trial_dir / "trial.yaml"
        layer_file.write_text(yaml.safe_dump(merge(self.run_layer, as_layer(values)), sort_keys=True))
        run_id = self.trial_run_id(trial.number, values)

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            self.client.log_metric(run_id, "val_ndcg_10_trainer", value, step=step)
            return trial.should_prune()

        status = "FAILED"
        try:
            value = self.run_trial(trial_dir, layer_file, {**self.tracking, PARENT_ENV: run_id}, report)
            self.client.log_metric(run_id, "validation_ndcg_at_10", value)
            status = "FINISHED"
            return value
        except Pruned:
            status = "KILLED"
            raise optuna.TrialPruned() from None
        finally:
            self.client.set_terminated(run_id, status)
            shutil.rmtree(trial_dir, ignore_errors=True)

    def trial_run_id(self, number: int, values: dict) -> str:
        """A trial's MLflow run, nested in the study's, with the trial's values as its params."""
        run = self.client.create_run(self.tracking["MLFLOW_EXPERIMENT_ID"], run_name=f"trial-{number}",
                                     tags={"mlflow.parentRunId": self.parent_id, "recsys.step": "tune-trial"})
        for key, value in values.items():
            self.client.log_param(run.info.run_id, key, value)
        return run.info.run_id

    def run_trial(self, trial_dir: Path, layer_file: Path, env: dict, report) -> float:
        """The model's steps in the trial warehouse, then its validation NDCG@10."""
        from recsys_spark.evaluate import evaluate

        for step in trial_steps(self.model, trial_dir, layer_file, self.env_name):
            history = trial_dir / "models" / self.model.name / "history.json" if step.runtime == "torch" else None
            run_trial_step(step, trial_dir, env, history, report)
        return evaluate(self.spark, trial_dir, self.model.name, RUN_DATE, self.evaluate_config,
                        split="validation").value(self.model.name, "ndcg", 10, "validation")


def write_best(study, model_name: str, best_file: Path, client, parent_id: str) -> TuneResult:
    """The best values as a config layer file (logged to the study's run), and the study's counts."""
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if complete == 0:
        raise ConfigError(f"the study of {model_name} has no completed trial yet")
    best_file.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# recsys tune --model {model_name}: best of {complete} trials, validation NDCG@10 "
              f"{study.best_value:.4f} (trial {study.best_trial.number}); use: recsys pipeline --config {best_file}\n")
    best_file.write_text(header + yaml.safe_dump(as_layer(study.best_params), sort_keys=True))
    client.log_metric(parent_id, "best_validation_ndcg_at_10", study.best_value)
    client.log_artifact(parent_id, str(best_file))
    return TuneResult(study.best_value, study.best_params, best_file, complete,
                      states.count(optuna.trial.TrialState.PRUNED), states.count(optuna.trial.TrialState.FAIL))
