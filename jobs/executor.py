"""Running the nightly plan (jobs/plan.py), step by step, in order.

A step is skipped when its content fingerprint (jobs/fingerprints.py) equals the one recorded by its last successful
run in <warehouse>/_pipeline/state.json.

A failed step stops only what depends on it. A model's step failing (its fit, training or top-N) marks that model
failed; the steps that gather every model's lists (the ensemble, over the surviving members, and the evaluation) still
run, and so does the publish, which holds the failed models back. A shared step failing (the ETL, the sequence
export) leaves everything downstream of it not run: nothing is published that night. The state
records the failure, so the next run retries the failed step and what it blocked; everything else still matches.
A training step that started with the same fingerprint and did not finish (killed, or failed) is resumed from its
checkpoint (`recsys train --resume`) instead of starting over.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

from jobs import catalogue
from jobs.fingerprints import fingerprint
from jobs.plan import PipelineConfig, Run, Step, input_source, plan
from jobs.steps import StepOutcome, run_child

log = logging.getLogger("recsys.pipeline")


class State:
    """What the last run of each step was, in <warehouse>/_pipeline/state.json."""

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


@dataclass
class StepResult:
    name: str
    status: str  # ran | skipped | failed | not run
    seconds: float
    fingerprint: str
    exit_code: int | None = None
    log: Path | None = None
    blocked_by: str | None = None  # not run: the failed step it depends on
    peak_rss_mb: float | None = None
    rows: dict[str, int] | None = None  # table -> rows the step's commits wrote (recsys_spark.delta.rows_committed)


class RunLog:
    """<warehouse>/_pipeline/<run_date>/run.jsonl: a JSON line per step of every run on that date (docs/SCHEMAS.md)."""

    def __init__(self, path: Path, run_date: dt.date):
        self.path = path
        self.common = {"run_date": run_date.isoformat(), "run_started": _now(), "pid": os.getpid()}

    def write(self, result: StepResult) -> None:
        line = {**self.common, "step": result.name, "status": result.status, "seconds": round(result.seconds, 3),
                "exit_code": result.exit_code, "peak_rss_mb": None if result.peak_rss_mb is None
                else round(result.peak_rss_mb, 1), "fingerprint": result.fingerprint,
                "blocked_by": result.blocked_by, "rows": None if result.rows is None else sum(result.rows.values()),
                "rows_by_table": result.rows, "log": str(result.log) if result.log else None, "at": _now()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def summary(results: Sequence[StepResult]) -> list[str]:
    """The run on one screen: a line per step (status, seconds), then what failed, its log, and what it blocked."""
    lines = [f"{r.status:>8}  {r.name:<22} {r.seconds:8.1f}s" + (f"  (after {r.blocked_by} failed)"
                                                                  if r.blocked_by else "") for r in results]
    for r in results:
        if r.status == "failed":
            lines.append(f"FAILED {r.name} (exit {r.exit_code}); log: {r.log}. The next run retries it.")
    return lines


def resumed(step: Step, last: dict | None, fp: str, warehouse: Path) -> Step:
    """A training step that started with this same fingerprint and did not finish (killed: still `started`; or
    `failed`) continues from its checkpoint: `recsys train --resume`. Any other step, or a changed fingerprint, or
    no checkpoint: the step as planned (a new training starts over)."""
    if step.command != "train" or not last or last.get("fingerprint") != fp \
            or last.get("status") not in ("started", "failed"):
        return step
    at = step.args.index("--model") + 2
    if not (warehouse / "models" / step.args[at - 1] / "checkpoint.pt").is_file():
        return step
    return dataclasses.replace(step, args=[*step.args[:at], "--resume", *step.args[at:]])


def over_survivors(step: Step, missing: list[str], by_name: dict[str, Step],
                   resolve: Callable[[list[str]], dict]) -> Step | None:
    """A gathering step whose upstream steps in `missing` failed or did not run: the ensemble blends the members that
    survived (an ensemble.models override; None when fewer than two are left), the evaluation reads what was written."""
    (section,) = catalogue.ENSEMBLE.sections
    if section not in step.sections:
        return step
    lost = {model for name in missing for model in by_name[name].lists_of}
    members = list((resolve([section]).get(section) or {}).get("models") or [])
    if not lost & set(members):
        return step
    survivors = [m for m in members if m not in lost]
    if len(survivors) < 2:
        return None
    override = f"{section}.models=[{','.join(survivors)}]"
    return dataclasses.replace(step, args=[*step.args, override], overrides=[*step.overrides, override])


def run_dir(warehouse: Path, run_date: dt.date) -> Path:
    """A run's own folder: config.yaml (what the run added on top of conf/: its --config file and key=value
    overrides, merged; a record, the steps read the file and overrides themselves) and logs/<step>.log."""
    return warehouse / "_pipeline" / run_date.isoformat()


@dataclass(frozen=True)
class RunSpec:
    """What one run of the plan is: its input, warehouse and date, and the configuration its steps resolve.

    `run_layer`: this run's own configuration (its --config file, absolute, and key=value `overrides`, merged),
    saved as the run's record; every step's command carries the file and the overrides, so each step resolves
    exactly what its line in `recsys pipeline --print-plan` resolves when a user runs it by hand. `resolve(sections)`
    returns the configuration a step with those sections resolves. `warehouse_uri`: the warehouse as the steps'
    commands name it (a `file://` URI; default: `warehouse`), while the state and logs use `warehouse`."""

    data: Path
    warehouse: Path
    run_date: dt.date
    run_layer: dict
    resolve: Callable[[list[str]], dict]
    config_file: Path | None = None
    overrides: Sequence[str] = ()
    env_name: str = "local"
    warehouse_uri: str | None = None

    def run(self) -> Run:
        return Run(str(self.data), self.warehouse_uri or str(self.warehouse), self.run_date.isoformat(),
                   self.env_name, str(self.config_file) if self.config_file else None, tuple(self.overrides))


def run_pipeline(spec: RunSpec, runner: Callable[[Step, Path, Mapping[str, str]], StepOutcome] = run_child, *,
                 env_for_steps: Mapping[str, str] | None = None, force: bool = False, only: str | None = None,
                 on_step: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run every step of `spec`'s plan in order, skipping the unchanged ones and those that depend on a failure
    (module docstring); the results say which ran, were skipped, failed or did not run. `runner(step, log, env)`
    runs one step (jobs/steps.py; the default starts its local command) with `env_for_steps` added to its
    environment; `force` runs every step again.

    `only`: run that one step of the plan (a scheduler's task): the other steps are not started; each counts as
    succeeded when the state records its success with the fingerprint it has now, else as failed, so the step is
    skipped, resumed, blocked or run over the survivors exactly as in a whole run.
    """
    data, warehouse, run_date, resolve = spec.data, spec.warehouse, spec.run_date, spec.resolve
    folder = run_dir(warehouse, run_date)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(spec.run_layer, sort_keys=True))
    pipe, left_out = PipelineConfig.from_dict(resolve(["pipeline"]).get("pipeline")).for_input(
        input_source(resolve(["etl"]), data).features())
    for line in left_out:
        log.warning(line)
    run = spec.run()

    from recsys_spark.delta import remove_stale_staging

    for leftover in remove_stale_staging(warehouse):  # a killed writer's; this run holds the warehouse's lock
        log.warning("removed the staging leftover %s", leftover)
    nightly = Nightly(data, warehouse, run_date, resolve, State(warehouse), folder / "logs", env_for_steps or {},
                      runner, force)
    steps = plan(pipe, run)
    by_name = {step.name: step for step in steps}
    if only:
        steps = steps[:[s.name for s in steps].index(only) + 1]
    run_log, results = RunLog(folder / "run.jsonl", run_date), []
    for planned in steps:
        if only and planned.name != only:  # run earlier (another task): what the state says of it
            nightly.recall(planned)
            continue
        result = nightly.step(planned, by_name)
        results.append(result)
        run_log.write(result)
        announce(result)
        if on_step:
            on_step(result)
    return results


@dataclass
class Nightly:
    """One run of the plan: where it runs, how a step is started, and which steps succeeded or failed so far."""

    data: Path
    warehouse: Path
    run_date: dt.date
    resolve: Callable[[list[str]], dict]
    state: State
    log_dir: Path
    env: Mapping[str, str]
    runner: Callable[[Step, Path, Mapping[str, str]], StepOutcome]
    force: bool
    done: dict[str, str] = field(default_factory=dict)    # the fingerprints of the steps that succeeded
    failed: dict[str, str] = field(default_factory=dict)  # a step that failed or did not run -> the failed root

    def fingerprint(self, step: Step) -> str:
        return fingerprint(step, self.resolve(step.sections), self.run_date, self.done, self.data)

    def recall(self, step: Step) -> None:
        """A step another task ran: succeeded when the state says so with the fingerprint it has now."""
        fp = self.fingerprint(step)
        if self.state.succeeded_with(step.name) == fp:
            self.done[step.name] = fp
        else:
            self.failed[step.name] = step.name

    def step(self, planned: Step, by_name: dict[str, Step]) -> StepResult:
        """The planned step run, skipped, blocked by a failure upstream, or run over the survivors of one."""
        step, blocked_by = planned, None
        missing = [d for d in planned.depends if d in self.failed]
        if missing:
            roots = [self.failed[d] for d in missing]
            survivable = planned.gathers and len(missing) < len(planned.depends) \
                and not any(by_name[root].shared for root in roots)
            step = over_survivors(planned, missing, by_name, self.resolve) if survivable else None
            if step is None:
                step, blocked_by = planned, roots[0]
        fp = self.fingerprint(step)
        if blocked_by:
            self.failed[step.name] = blocked_by
            self.state.record(step.name, fp, "not run")
            return StepResult(step.name, "not run", 0.0, fp, blocked_by=blocked_by)
        if not self.force and self.state.succeeded_with(step.name) == fp:
            result = StepResult(step.name, "skipped", 0.0, fp)
        else:
            result = self.execute(step if self.force else resumed(step, self.state.steps.get(step.name), fp,
                                                                  self.warehouse), fp)
        if result.status == "failed":
            self.failed[step.name] = step.name
        else:
            self.done[step.name] = fp
        return result

    def execute(self, step: Step, fp: str) -> StepResult:
        from recsys_spark.delta import log_versions, rows_committed

        self.state.record(step.name, fp, "started")  # still there after a kill: the next run resumes it
        log.info("step %s: started%s", step.name, " (resuming its training)" if "--resume" in step.args else "")
        versions = log_versions(self.warehouse)
        outcome = self.runner(step, self.log_dir / f"{step.name}.log", self.env)
        rows = rows_committed(self.warehouse, versions)
        self.state.record(step.name, fp, "ok" if outcome.ok else "failed")
        return StepResult(step.name, "ran" if outcome.ok else "failed", outcome.seconds, fp, outcome.exit_code,
                          outcome.log, peak_rss_mb=outcome.peak_rss_mb, rows=rows)


def announce(result: StepResult) -> None:
    if result.status == "failed":
        log.error("step %s: failed (exit %s) after %.1fs; log: %s", result.name, result.exit_code,
                  result.seconds, result.log)
    else:
        log.info("step %s: %s%s", result.name, result.status,
                 f" (after {result.blocked_by} failed)" if result.blocked_by else f" in {result.seconds:.1f}s")
