"""How a step of the plan starts (jobs/plan.py): here (`python jobs/<file>.py`) or with the cluster launchers.

The environment file says which (`launcher: local | cluster`, conf/local.yaml and conf/cluster.yaml). With the cluster
launchers a step starts by its runtime:

- spark: `spark-submit --master M --name recsys-<step> [--packages …] [--jars …] --py-files dist/recsys-<v>.zip
  --conf k=v … jobs/<file>.py …`. Every setting of the config's `spark:` section goes on the line: the static ones
  (jars, SQL extensions and catalog, driver memory) only take effect there, before spark-submit starts the JVM; an
  empty one (null or "") is left out, so a config can drop a packaged jar the cluster cannot fetch. The master is
  the config's spark.master, else $SPARK_MASTER, else yarn. The zip is the project's code for the executors
  (jobs/ship.py). The driver runs this interpreter (spark.pyspark.driver.python, unless the config names one); the
  executors run spark.pyspark.python when the config names one.
- torch: `torchrun <node and rendezvous flags> jobs/train.py …` from the train section (jobs/torchrun.py: one node
  standalone, several through the c10d rendezvous).
- python (a torch model's top-N, and any other step that needs neither Spark nor torchrun): `$PYTHON jobs/<file>.py …`
  ($PYTHON, else this interpreter).

A Spark step gets the warehouse as given, a URI Spark resolves itself (`s3://` as hadoop-aws's `s3a://`); the other
steps get its native form (`file:///x` as `/x`), which delta-rs, pyarrow and torch read.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from jobs.config import section
from jobs.steps import local_command
from recsys_core import storage
from recsys_core.errors import ConfigError

if TYPE_CHECKING:
    from jobs.plan import Step

LAUNCHERS = ("local", "cluster")
DEFAULT_MASTER = "yarn"
# spark-submit flags for settings that have their own (spark.submit.pyFiles joins the shipped zip in --py-files).
SUBMIT_FLAGS = {"spark.master": "--master", "spark.submit.deployMode": "--deploy-mode",
                "spark.jars.packages": "--packages", "spark.jars": "--jars",
                "spark.jars.repositories": "--repositories", "spark.archives": "--archives", "spark.files": "--files"}
# What every Spark step needs whatever the config says (a config value wins).
SUBMIT_DEFAULTS = {"spark.sql.session.timeZone": "UTC"}


def launcher_of(cfg: dict) -> str:
    """The config's `launcher:` (local unless the environment file says cluster)."""
    value = cfg.get("launcher") or "local"
    if value not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {value!r} (the environment file "
                          f"conf/<env>.yaml says how steps start)")
    return value


def _is_placeholder(value: str) -> bool:
    return value.startswith("$")


def with_warehouse(args: list[str], form: Callable[[str], str]) -> list[str]:
    """`args` with the --warehouse value in the form a runtime reads (a shell placeholder stays as it is)."""
    args = list(args)
    if "--warehouse" in args:
        at = args.index("--warehouse") + 1
        if not _is_placeholder(args[at]):
            args[at] = form(args[at])
    return args


def _spark_warehouse(location: str) -> str:
    return storage.spark_path(location)


def _native_warehouse(location: str) -> str:
    return storage.native_path(location)


def spark_settings(cfg: dict) -> dict[str, str]:
    """The spark section as submit-line settings: defaults, then the config's, empty ones dropped."""
    settings = dict(SUBMIT_DEFAULTS)
    for key, value in section(cfg, "spark").items():
        if value is None or value == "":
            settings.pop(key, None)
            continue
        settings[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return settings


def tool(name: str) -> str:
    """A launcher program: spark-submit from $SPARK_HOME when set, else the one beside this interpreter (the pyspark
    and torch installs put theirs there), else whatever the PATH has."""
    if name == "spark-submit" and os.environ.get("SPARK_HOME"):
        return str(Path(os.environ["SPARK_HOME"]) / "bin" / name)
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def spark_submit(step: Step, cfg: dict, shipped: str) -> list[str]:
    settings = spark_settings(cfg)
    master = settings.pop("spark.master", None) or os.environ.get("SPARK_MASTER") or DEFAULT_MASTER
    settings.setdefault("spark.pyspark.driver.python", sys.executable)
    line = [tool("spark-submit"), "--master", master, "--name", f"recsys-{step.name}"]
    py_files = [shipped, *filter(None, settings.pop("spark.submit.pyFiles", "").split(","))]
    for key, flag in SUBMIT_FLAGS.items():
        if key in settings:
            line += [flag, settings.pop(key)]
    line += ["--py-files", ",".join(py_files)]
    for key, value in settings.items():
        line += ["--conf", f"{key}={value}"]
    return [*line, step.script, *with_warehouse(step.args, _spark_warehouse)]


def torchrun(step: Step, cfg: dict, run_date: str | None, printing: bool) -> list[str]:
    """`[env NAME=VALUE …] torchrun <node and rendezvous flags> jobs/train.py …` (jobs/torchrun.py: one node
    standalone, several through the c10d rendezvous; `train.launch_env` as the env prefix). Printed, a `${NAME}` in
    the rendezvous endpoint stays for the node's shell to fill."""
    from jobs.torchrun import torchrun_args, torchrun_env

    train = section(cfg, "train")
    model = step.args[step.args.index("--model") + 1] if "--model" in step.args else None
    env = torchrun_env(train, expand_env=not printing)
    prefix = ["env", *(f"{name}={value}" for name, value in env.items())] if env else []
    return [*prefix, tool("torchrun"), *torchrun_args(train, model=model, run_date=run_date, expand_env=not printing),
            step.script, *with_warehouse(step.args, _native_warehouse)]


def python(step: Step) -> list[str]:
    return [os.environ.get("PYTHON") or sys.executable, step.script, *with_warehouse(step.args, _native_warehouse)]


def cluster_command(resolve: Callable[[list[str]], dict], shipped: str, run_date: str | None = None,
                    printing: bool = False) -> Callable[[Step], list[str]]:
    """step -> its cluster command; `resolve(sections)` is the configuration the step resolves, `shipped` the zip of
    the executors' code (jobs/ship.py), `run_date` the run's (it names the training's rendezvous); `printing`: for
    a printed plan (environment references left to the shell)."""
    def command(step: Step) -> list[str]:
        if step.runtime == "spark":
            return spark_submit(step, resolve(step.sections), shipped)
        if step.runtime == "torch":
            return torchrun(step, resolve(step.sections), run_date, printing)
        return python(step)

    return command


def step_command(launcher: str, resolve: Callable[[list[str]], dict], shipped: str, run_date: str | None = None,
                 printing: bool = False) -> Callable[[Step], list[str]]:
    """What starts each step with `launcher` (local or cluster)."""
    return local_command if launcher == "local" else cluster_command(resolve, shipped, run_date, printing)
