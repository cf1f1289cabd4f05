"""The nightly plan: ETL → each configured model's fit and top-N (jobs/catalogue.py) → evaluation → drift →
retention → publish (the regression gate and one `runs` commit naming the snapshot readers read; jobs/publish.py).

Every step is one `recsys` command run as its script, `jobs/<file>.py`, so the same plan is what `recsys pipeline`
runs on this machine (`python jobs/<file>.py …`, one child process per step, jobs/steps.py), what `recsys pipeline
--print-plan` prints, and what it runs with `--env cluster` (`spark-submit jobs/<file>.py …`, `torchrun …
jobs/train.py …`, `python jobs/topn.py …`; jobs/launchers.py), which the generated schedulers call
(jobs/schedules.py). Only the launcher differs.

A step is skipped when its content fingerprint (its config sections and own overrides, its run date where that
matters, the fingerprints of the steps it reads, and for the ETL the bytes of the input files) equals the one
recorded by its last successful run in <warehouse>/_pipeline/state.json. The fingerprint includes the step's code
too (code_fingerprint: the package version, the step's script and the jobs/ modules it imports, and the library
packages its runtime uses), so a deploy re-runs exactly the steps whose code changed.

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
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

from jobs import catalogue
from jobs.cli import COMMANDS
from jobs.steps import PROJECT_ROOT, StepOutcome, run_child
from recsys_core.config import POSITIVE, Config, checked
from recsys_core.errors import ConfigError

log = logging.getLogger("recsys.pipeline")


@dataclass(frozen=True)
class PipelineConfig(Config):
    """The `pipeline:` section: which catalogue models the nightly run fits, and the list length."""

    section = "pipeline"

    spark_models: tuple[str, ...] = tuple(catalogue.pipeline_choices("spark_models"))
    torch_models: tuple[str, ...] = tuple(catalogue.pipeline_choices("torch_models"))
    k: int = checked(100, POSITIVE)

    def validate(self) -> None:
        for key in ("spark_models", "torch_models"):
            known = catalogue.pipeline_choices(key)
            bad = [name for name in getattr(self, key) if name not in known]
            if bad:
                raise ConfigError(f"pipeline.{key} must be a list drawn from {known}, got {list(getattr(self, key))}: "
                                  f"{', '.join(map(repr, bad))} is not one of them")

    def models(self) -> list[catalogue.Model]:
        """The configured models, in catalogue order."""
        chosen = {*self.spark_models, *self.torch_models}
        return [model for name, model in catalogue.MODELS.items() if name in chosen]

    def for_input(self, has: dict[str, bool]) -> tuple[PipelineConfig, list[str]]:
        """These models less those the input cannot feed (catalogue.Model.requires), and a line for each saying
        why it was left out."""
        why = {m.name: catalogue.unmet(m, has) for m in self.models()}
        out = {name for name, missing in why.items() if missing}
        lines = [f"{name}: left out of the plan, the input has no {' and no '.join(why[name])}" for name in sorted(out)]
        kept = dataclasses.replace(self, spark_models=tuple(m for m in self.spark_models if m not in out),
                                   torch_models=tuple(m for m in self.torch_models if m not in out))
        return kept, lines


@dataclass(frozen=True)
class Run:
    """What one run's commands say: paths, date, environment, the run's config file and key=value overrides (or
    shell placeholders for them). Every step gets the same --config and overrides, before its own overrides (which
    win), so a step's line resolves on its own exactly what it resolves inside the run."""

    data: str
    warehouse: str
    run_date: str
    env: str
    config_file: str | None = None
    overrides: tuple[str, ...] = ()

    def common(self) -> list[str]:
        config = ["--config", self.config_file] if self.config_file else []
        return ["--warehouse", self.warehouse, *config, "--env", self.env, *self.overrides]


@dataclass
class Step:
    name: str
    command: str                 # the `recsys` command (jobs/cli.py)
    args: list[str]              # its flags and key=value overrides
    runtime: str                 # spark | torch | python: how a cluster launches it (LAUNCHERS)
    depends: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)   # config sections that change the step's output
    per_run_date: bool = False
    overrides: list[str] = field(default_factory=list)  # the step's own key=value, part of its fingerprint
    reads_data: bool = False     # the ETL: the input files' bytes are part of its fingerprint
    # What the step's output holds, when code can change it without config (the shard folders the export writes):
    # part of the fingerprint, so a warehouse made by older code is rebuilt instead of skipped.
    outputs: tuple[str, ...] = ()
    shared: bool = False         # prepares data for many models (etl, export-sequences): its failure stops them all
    gathers: bool = False        # reads every model's lists (ensemble, evaluate): runs over the models that survived
    lists_of: tuple[str, ...] = ()  # the models whose lists the step writes

    @property
    def script(self) -> str:
        return f"jobs/{COMMANDS[self.command][0].removeprefix('jobs.')}.py"


# The steps that prepare data for a family's fit (catalogue.Family.fit_after), besides the ETL.
PREPARE = {"export-sequences": dict(command="export-sequences", depends=["etl"], sections=["sequences"],
                                    outputs=("train", "validation", "test", "ncf_train", "edges"))}
EXTRA_SECTIONS = ["etl", "evaluate", "drift", "pipeline", "retention", "publish"]


def config_sections() -> list[str]:
    """Every config section a step of any plan reads (what the pipeline resolves and logs)."""
    sections = [*EXTRA_SECTIONS, *(s for spec in PREPARE.values() for s in spec["sections"])]
    for model in catalogue.MODELS.values():
        sections += [s for s in model.sections if s not in sections]
    return sections


def plan(pipe: PipelineConfig, run: Run) -> list[Step]:
    """The step graph of one run, in the order the steps run."""
    common, date = run.common(), ["--run-date", run.run_date]
    steps = [Step("etl", "etl", ["--data", run.data, *common], "spark", sections=["etl"], reads_data=True,
                  shared=True)]
    writes_lists = []  # the steps that write recommendations: what the evaluation reads
    models = pipe.models()
    for family in catalogue.FAMILIES:
        members = [m for m in models if m.family is family]
        if not members:
            continue
        if family.fit_after in PREPARE and family.fit_after not in {s.name for s in steps}:
            steps.append(Step(family.fit_after, runtime="spark", args=common, shared=True,
                              **PREPARE[family.fit_after]))
        one_fit_each = "{model}" in family.fit_step
        for group in ([[m] for m in members] if one_fit_each else [members]):
            fill = {"model": group[0].name, "k": str(pipe.k), "run_date": run.run_date,
                    "models": "[" + ",".join(m.name for m in group) + "]"}
            overrides = [o.format(**fill) for o in family.fit_overrides] + [o for m in group for o in m.fit_overrides]
            fit = Step(family.fit_step.format(**fill), family.fit_command,
                       [*(a.format(**fill) for a in family.fit_args), *common, *overrides], family.fit_runtime,
                       depends=list(writes_lists) if family.fit_after == catalogue.LISTS else [family.fit_after],
                       sections=group[0].sections, per_run_date=family.fit_per_run_date,
                       overrides=overrides, gathers=family.fit_after == catalogue.LISTS,
                       lists_of=tuple(m.name for m in group) if family.topn_runtime is None else ())
            steps.append(fit)
            if family.topn_runtime is None:
                writes_lists.append(fit.name)
                continue
            for model in group:
                steps.append(Step(f"topn-{model.name}", "topn",
                                  ["--model", model.name, "--k", str(pipe.k), *date, *common], family.topn_runtime,
                                  depends=[fit.name], per_run_date=True, lists_of=(model.name,)))
                writes_lists.append(steps[-1].name)
    steps.append(Step("evaluate", "evaluate", [*date, *common], "spark", writes_lists, ["evaluate"],
                      per_run_date=True, gathers=True))
    steps.append(Step("drift", "drift", [*date, *common], "spark", ["evaluate"], ["drift"], per_run_date=True))
    # Housekeeping once a night, after every write (recsys_spark/retention.py): it depends on nothing, so it runs
    # whatever failed.
    steps.append(Step("retention", "retention", common, "python", sections=["retention"], per_run_date=True))
    # Last: the regression gate and one `runs` commit over the models that survived (jobs/publish.py); after
    # drift, which compares tonight with the run published before it.
    steps.append(Step("publish", "publish", [*date, *common], "python", [*writes_lists, "evaluate", "drift"],
                      ["publish", "pipeline"], per_run_date=True, gathers=True))
    return steps


def file_digest(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# The library packages whose whole source a step's code fingerprint hashes, by how the step runs: Spark steps use
# recsys_spark (and recsys_core under it), training recsys_torch, a torch model's top-N both (it reads the model with
# recsys_torch and writes Delta with recsys_spark).
CODE_PACKAGES = {"spark": ("recsys_core", "recsys_spark"), "torch": ("recsys_core", "recsys_torch"),
                 "python": ("recsys_core", "recsys_spark", "recsys_torch")}
_digests: dict[tuple[Path, int, int], str] = {}
_imports: dict[tuple[Path, int, int], tuple[str, ...]] = {}


def _source_digest(path: Path) -> str:
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _digests:
        _digests[key] = file_digest(path)
    return _digests[key]


def _imported_jobs_modules(path: Path) -> tuple[str, ...]:
    """The `jobs.…` modules one file imports (by the file's stat: parsed once while it is unchanged)."""
    import ast

    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _imports:
        names = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "jobs":
                names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names += [alias.name for alias in node.names if alias.name.split(".")[0] == "jobs"]
        _imports[key] = tuple(name for name in names if name != "jobs")
    return _imports[key]


def job_modules(script: Path, root: Path) -> list[Path]:
    """The script and every module of jobs/ it imports, directly or through another (read from their imports)."""
    found, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        todo += [root.joinpath(*name.split(".")).with_suffix(".py") for name in _imported_jobs_modules(path)]
    return sorted(found)


def code_fingerprint(step: Step, root: Path = PROJECT_ROOT) -> dict:
    """What code the step runs: the package version, its script with the jobs/ modules it imports, and the whole
    source of the library packages its runtime uses (CODE_PACKAGES). A deploy that changes any of them re-runs the
    step (and, through the upstream fingerprints, what reads its output); one that does not, skips it."""
    from jobs.cli import version

    files = job_modules(root / step.script, root)
    files += sorted(p for package in CODE_PACKAGES[step.runtime] for p in (root / package).rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root)}\0{_source_digest(path)}\n".encode())
    return {"version": version(), "source": digest.hexdigest()[:16]}


def input_source(cfg: dict, data: Path):
    """The ETL's checked input (recsys_spark.inputs.Source) for a config holding the etl section."""
    from recsys_spark.etl import EtlConfig

    return EtlConfig.from_dict(cfg.get("etl")).source(data)


def loaded_features(warehouse: Path) -> dict[str, bool]:
    """What the warehouse's last load held (etl_report.json; a report from before the formats: everything)."""
    path = Path(warehouse) / "etl_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    return {"ratings": report.get("explicit", True), "genres": report.get("genres", True)}


def input_files(cfg: dict, data: Path) -> list[Path]:
    """The files whose bytes the ETL reads, for the run's etl config (a MovieLens folder's, a log's, a table's)."""
    return input_source(cfg, data).fingerprint_files()


def fingerprint(step: Step, cfg: dict, run_date: dt.date, upstream: dict[str, str], data: Path,
                code_root: Path = PROJECT_ROOT) -> str:
    """`cfg` is the configuration the step itself resolves (environment < its sections < the run's layer);
    `code_root` the project whose source the step runs (code_fingerprint)."""
    files = input_files(cfg, data) if step.reads_data else []
    base = data if data.is_dir() else data.parent
    payload = {
        "code": code_fingerprint(step, code_root),
        "step": step.name,
        "config": {s: cfg.get(s) for s in step.sections},
        "overrides": step.overrides,
        "run_date": run_date.isoformat() if step.per_run_date else None,
        "upstream": {d: upstream.get(d) for d in step.depends},
        "files": {(str(p.relative_to(base)) if p.is_relative_to(base) else str(p)): file_digest(p)
                  for p in files if p.exists()},
    }
    if step.outputs:  # only where declared, so other steps keep the fingerprints older runs recorded
        payload["outputs"] = list(step.outputs)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    runner: Callable[[Step, Path, Mapping[str, str]], StepOutcome] = run_child,
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    only: str | None = None,
    warehouse_uri: str | None = None,
) -> list[StepResult]:
    """Run every step in order, skipping the unchanged ones and those that depend on a failure (module docstring);
    the results say which ran, were skipped, failed or did not run.

    `config_file` and `overrides` are this run's own configuration (the --config file, absolute, and key=value
    overrides): every step's command carries them, so each step resolves exactly what its line in `recsys pipeline
    --print-plan` resolves when a user runs it by hand. `run_layer` is the two merged, saved as the run's record.
    `resolve(sections)` returns the configuration a step with those sections resolves. `runner(step, log, env)`
    runs one step (jobs/steps.py; the default starts its local command).

    `only`: run that one step of the plan (a scheduler's task): the other steps are not started; each counts as
    succeeded when the state records its success with the fingerprint it has now, else as failed, so the step is
    skipped, resumed, blocked or run over the survivors exactly as in a whole run. `warehouse_uri`: the warehouse as
    the steps' commands name it (a `file://` URI; default: `warehouse`), while the state and logs use `warehouse`.
    """
    folder = run_dir(warehouse, run_date)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(run_layer, sort_keys=True))
    log_dir = folder / "logs"
    pipe, left_out = PipelineConfig.from_dict(resolve(["pipeline"]).get("pipeline")).for_input(
        input_source(resolve(["etl"]), data).features())
    for line in left_out:
        log.warning(line)
    run = Run(str(data), warehouse_uri or str(warehouse), run_date.isoformat(), env_name, str(config_file) if config_file else None,
              tuple(overrides))

    from recsys_spark.delta import log_versions, remove_stale_staging, rows_committed

    for leftover in remove_stale_staging(warehouse):  # a killed writer's; this run holds the warehouse's lock
        log.warning("removed the staging leftover %s", leftover)
    run_log = RunLog(folder / "run.jsonl", run_date)
    state = State(warehouse)
    done: dict[str, str] = {}     # the fingerprints of the steps that succeeded (ran or skipped)
    failed: dict[str, str] = {}   # a step that failed or did not run -> the failed step at its root
    results: list[StepResult] = []
    steps = plan(pipe, run)
    by_name = {step.name: step for step in steps}
    if only:
        steps = steps[:[s.name for s in steps].index(only) + 1]
    for planned in steps:
        if only and planned.name != only:  # run earlier (another task): what the state says of it
            fp = fingerprint(planned, resolve(planned.sections), run_date, done, data)
            if state.succeeded_with(planned.name) == fp:
                done[planned.name] = fp
            else:
                failed[planned.name] = planned.name
            continue
        step, blocked_by = planned, None
        missing = [d for d in planned.depends if d in failed]
        if missing:
            roots = [failed[d] for d in missing]
            survivable = planned.gathers and len(missing) < len(planned.depends) \
                and not any(by_name[root].shared for root in roots)
            step = over_survivors(planned, missing, by_name, resolve) if survivable else None
            if step is None:
                step, blocked_by = planned, roots[0]
        if blocked_by:
            fp = fingerprint(step, resolve(step.sections), run_date, done, data)
            failed[step.name] = blocked_by
            state.record(step.name, fp, "not run")
            result = StepResult(step.name, "not run", 0.0, fp, blocked_by=blocked_by)
        else:
            fp = fingerprint(step, resolve(step.sections), run_date, done, data)
            if not force and state.succeeded_with(step.name) == fp:
                result = StepResult(step.name, "skipped", 0.0, fp)
            else:
                if not force:
                    step = resumed(step, state.steps.get(step.name), fp, warehouse)
                state.record(step.name, fp, "started")  # still there after a kill: the next run resumes it
                log.info("step %s: started%s", step.name, " (resuming its training)" if "--resume" in step.args else "")
                versions = log_versions(warehouse)
                outcome = runner(step, log_dir / f"{step.name}.log", env_for_steps or {})
                rows = rows_committed(warehouse, versions)
                status = "ok" if outcome.ok else "failed"
                state.record(step.name, fp, status)
                result = StepResult(step.name, "ran" if outcome.ok else "failed", outcome.seconds, fp,
                                    outcome.exit_code, outcome.log, peak_rss_mb=outcome.peak_rss_mb, rows=rows)
            if result.status == "failed":
                failed[step.name] = step.name
            else:
                done[step.name] = fp
        results.append(result)
        run_log.write(result)
        if result.status == "failed":
            log.error("step %s: failed (exit %s) after %.1fs; log: %s", result.name, result.exit_code,
                      result.seconds, result.log)
        else:
            log.info("step %s: %s%s", result.name, result.status,
                     f" (after {result.blocked_by} failed)" if result.blocked_by else f" in {result.seconds:.1f}s")
        if on_step:
            on_step(result)
    return results
