"""The nightly plan: ETL → each configured model's fit and top-N (jobs/catalogue.py) → evaluation → drift →
retention → publish (the regression gate and one `runs` commit naming the snapshot readers read; jobs/publish.py).

Every step is one `recsys` command run as its script, `jobs/<file>.py`, so the same plan is what `recsys pipeline`
runs on this machine (`python jobs/<file>.py …`, one child process per step, jobs/steps.py), what `recsys pipeline
--print-plan` prints, and what it runs with `--env cluster` (`spark-submit jobs/<file>.py …`, `torchrun …
jobs/train.py …`, `python jobs/topn.py …`; jobs/launchers.py), which the generated schedulers call
(jobs/schedules.py). Only the launcher differs. What a step's fingerprint holds: jobs/fingerprints.py; how a run
skips, resumes, blocks and survives: jobs/executor.py.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from jobs import catalogue
from jobs.cli import COMMANDS
from recsys_core.config import POSITIVE, Config, checked
from recsys_core.errors import ConfigError


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
