"""The nightly run: ETL → ALS + baselines → sequence export → torch training → top-N → evaluation → report.

Every step is the same `recsys <command>` a user can run alone, started here as a child process, so a Spark step
and a torchrun step never share a process, and a failed step can be re-run by hand. A step is skipped when its
content fingerprint (its config, its run date where that matters, the fingerprints of the steps it reads, and for
the ETL the bytes of the input files) equals the one recorded by its last successful run. A failed step stops the
run; the next run starts from it, because everything before it still matches.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from recsys_spark.errors import RecsysError
from recsys_spark.schemas import check_inputs

SPARK_MODELS = ("als", "als_implicit", "popularity", "genre", "markov", "ar2", "hybrid")
ALS_VARIANTS = {"als": [], "als_implicit": ["als.name=als_implicit", "als.implicit_prefs=true"]}
TORCH_MODELS = ("ncf", "sasrec", "ss4rec")
INPUT_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")


@dataclass
class Step:
    name: str
    argv: list[str]
    depends: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # config sections that change the step's output
    per_run_date: bool = False
    overrides: list[str] = field(default_factory=list)  # the step's own key=value, part of its fingerprint
    input_files: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class StepResult:
    name: str
    status: str  # ran | skipped | failed
    seconds: float
    fingerprint: str


def file_digest(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def configured_models(pipe: dict, key: str, known: tuple[str, ...]) -> list[str]:
    """pipeline.spark_models / pipeline.torch_models: a list of known names (a typo is an error, not a skip)."""
    names = pipe.get(key, list(known))
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or any(n not in known for n in names):
        raise RecsysError(f"pipeline.{key} must be a list drawn from {list(known)}, got {names!r}")
    return list(names)


def plan(data: Path, warehouse: Path, cfg: dict, config_file: Path, run_date: dt.date,
         env_name: str = "local") -> list[Step]:
    """The step graph for one run; which models run comes from the `pipeline:` config section."""
    pipe = cfg.get("pipeline") or {}
    spark_models = configured_models(pipe, "spark_models", SPARK_MODELS)
    torch_models = configured_models(pipe, "torch_models", TORCH_MODELS)
    k = pipe.get("k", 100)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise RecsysError(f"pipeline.k must be a positive integer, got {k!r}")
    k = str(k)
    nproc = str((cfg.get("train") or {}).get("nproc", 1))
    common = ["--warehouse", str(warehouse), "--config", str(config_file), "--env", env_name]
    date = ["--run-date", run_date.isoformat()]
    inputs = [data / name for name in INPUT_FILES if (data / name).exists()]

    steps = [Step("etl", ["etl", "--data", str(data), *common], sections=["etl"], input_files=inputs)]
    for als, extra in ALS_VARIANTS.items():
        if als in spark_models:
            steps.append(Step(als, ["als", *date, *common, *extra], ["etl"], ["als"], overrides=extra))
            steps.append(Step(f"topn-{als}", ["topn", "--model", als, "--k", k, *date, *common], [als],
                              per_run_date=True))
    baselines = [m for m in spark_models if m not in ALS_VARIANTS]
    if baselines:
        steps.append(Step("baselines", ["baselines", "--k", k, *date, *common,
                                        f"baselines.models={json.dumps(baselines)}"],
                          ["etl"], ["baselines"], per_run_date=True))
    if torch_models:
        steps.append(Step("export-sequences", ["export-sequences", *common], ["etl"], ["sequences"]))
        for model in torch_models:
            steps.append(Step(f"train-{model}", ["train", "--model", model, "--nproc", nproc, *common],
                              ["export-sequences"], ["train", model]))
            steps.append(Step(f"topn-{model}", ["topn", "--model", model, "--k", k, *date, *common],
                              [f"train-{model}"], per_run_date=True))
    producers = [s.name for s in steps if s.name.startswith("topn-") or s.name == "baselines"]
    steps.append(Step("evaluate", ["evaluate", *date, *common], producers, ["evaluate"], per_run_date=True))
    return steps


def fingerprint(step: Step, cfg: dict, run_date: dt.date, upstream: dict[str, str]) -> str:
    """`cfg` is the configuration the step itself resolves (environment < its sections < the run's layer)."""
    payload = {
        "step": step.name,
        "config": {s: cfg.get(s) for s in step.sections},
        "overrides": step.overrides,
        "run_date": run_date.isoformat() if step.per_run_date else None,
        "upstream": {d: upstream.get(d) for d in step.depends},
        "files": {p.name: file_digest(p) for p in step.input_files},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class State:
    """What the last successful run of each step was, in <warehouse>/_pipeline/state.json."""

    def __init__(self, warehouse: Path):
        self.path = warehouse / "_pipeline" / "state.json"
        self.steps: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def succeeded_with(self, name: str) -> str | None:
        entry = self.steps.get(name) or {}
        return entry.get("fingerprint") if entry.get("status") == "ok" else None

    def record(self, name: str, fingerprint_: str, status: str) -> None:
        self.steps[name] = {"fingerprint": fingerprint_, "status": status,
                            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.steps, indent=2, sort_keys=True))
        tmp.replace(self.path)


def run_step(step: Step, log_dir: Path, extra_env: dict[str, str]) -> int:
    """Run `recsys <step>` as a child process; its output goes to the console and to <log_dir>/<step>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **extra_env, **step.env, "RECSYS_STEP_NAME": step.name}
    cmd = [sys.executable, "-m", "jobs.cli", *step.argv]
    with open(log_dir / f"{step.name}.log", "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                cwd=Path(__file__).resolve().parent.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(f"  [{step.name}] {line}")
        return proc.wait()


def run_pipeline(
    data: Path,
    warehouse: Path,
    run_layer: dict,
    resolve: Callable[[list[str]], dict],
    run_date: dt.date,
    env_for_steps: dict[str, str] | None = None,
    force: bool = False,
    env_name: str = "local",
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run every step in order, skipping the unchanged ones; raise RecsysError naming the step that failed.

    `run_layer` is this run's own configuration (the --config file and key=value overrides): it is saved and handed
    to every step as its --config, so each step resolves exactly what a user running it by hand would get.
    `resolve(sections)` returns the configuration a step with those sections resolves.
    """
    check_inputs(data)  # a missing file or column: one line, and nothing created
    warehouse.mkdir(parents=True, exist_ok=True)
    run_dir = warehouse / "_pipeline" / run_date.isoformat()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(run_layer, sort_keys=True))
    cfg = resolve(["pipeline", "train"])

    state = State(warehouse)
    done: dict[str, str] = {}
    results: list[StepResult] = []
    for step in plan(data, warehouse, cfg, config_file, run_date, env_name):
        fp = fingerprint(step, resolve(step.sections), run_date, done)
        start = time.monotonic()
        if not force and state.succeeded_with(step.name) == fp:
            result = StepResult(step.name, "skipped", 0.0, fp)
        else:
            code = run_step(step, run_dir / "logs", env_for_steps or {})
            if code != 0:
                state.record(step.name, fp, "failed")
                result = StepResult(step.name, "failed", time.monotonic() - start, fp)
                if on_step:
                    on_step(result)
                raise RecsysError(
                    f"pipeline step '{step.name}' failed (exit {code}); log: {run_dir / 'logs' / (step.name + '.log')}."
                    f" The next run starts from '{step.name}'.")
            state.record(step.name, fp, "ok")
            result = StepResult(step.name, "ran", time.monotonic() - start, fp)
        done[step.name] = fp
        results.append(result)
        if on_step:
            on_step(result)
    return results
