"""The nightly plan (jobs/plan.py): its steps, and its skip/resume decisions asserted from its own state.

The decisions are exercised with a step runner that records which steps it was asked to run instead of starting
their jobs (the jobs themselves run in tests/test_pipeline_e2e.py): run_pipeline, the fingerprints and
<warehouse>/_pipeline/state.json are the real ones.
"""
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from one_rating import make_data

from jobs import catalogue
from jobs.config import load_config
from jobs.executor import RunSpec, State, run_pipeline, summary
from jobs.fingerprints import fingerprint
from jobs.plan import PipelineConfig, Run, plan
from jobs.steps import StepOutcome, local_command
from recsys_spark.errors import RecsysError

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 11, 23)
RUN = Run("data", "wh", DAY.isoformat(), "local", "c.yaml")
ALL_STEPS = [s.name for s in plan(PipelineConfig(), RUN)]


def test_plan_fits_and_ranks_every_catalogue_model_then_evaluates_measures_drift_and_ends_with_publish():
    configured = PipelineConfig.from_dict(load_config(["pipeline"])["pipeline"])  # conf/pipeline.yaml's lists
    steps = plan(configured, RUN)
    names = [s.name for s in steps]
    assert names[0] == "etl" and names[-4:] == ["evaluate", "drift", "retention", "publish"]
    assert len(names) == len(set(names))
    retention = steps[names.index("retention")]
    assert retention.depends == [] and retention.runtime == "python"  # housekeeping runs whatever failed
    assert names == ALL_STEPS  # the nightly configuration runs every catalogue model, as the defaults do
    for model in catalogue.MODELS.values():
        fit = model.family.fit_step.format(model=model.name)
        assert fit in names, model.name
        if model.family.topn_runtime:
            assert f"topn-{model.name}" in names and names.index(fit) < names.index(f"topn-{model.name}")
    list_writers = {n for n in names if n.startswith("topn-")} | {"baselines"}
    assert set(steps[names.index("evaluate")].depends) == list_writers | {"ensemble"}
    assert steps[names.index("drift")].depends == ["evaluate"] and steps[names.index("drift")].sections == ["drift"]
    assert set(steps[-1].depends) == list_writers | {"ensemble", "evaluate", "drift"} and steps[-1].gathers  # publish
    assert set(steps[names.index("ensemble")].depends) == list_writers  # it blends every other model's lists
    for step in steps:
        assert all(names.index(d) < names.index(step.name) for d in step.depends), step.name
    als, implicit = steps[names.index("als")], steps[names.index("als_implicit")]
    assert "--run-date" in als.args and implicit.args[-2:] == ["als.name=als_implicit", "als.implicit_prefs=true"]


def test_models_can_be_chosen():
    steps = plan(PipelineConfig(spark_models=("popularity",), torch_models=("sasrec",)), RUN)
    names = [s.name for s in steps]
    assert names == ["etl", "baselines", "export-sequences", "train-sasrec", "topn-sasrec", "evaluate", "drift",
                     "retention", "publish"]
    assert steps[1].args[-1] == "baselines.models=[popularity]"
    assert [s.name for s in plan(PipelineConfig(spark_models=("als",), torch_models=()), RUN)] == \
        ["etl", "als", "topn-als", "evaluate", "drift", "retention", "publish"]


@pytest.mark.parametrize("pipeline, message", [
    ({"torch_models": ["sasrec", "ss4recc"]}, "pipeline.torch_models must be a list drawn from .*'ss4recc' is not"),
    ({"spark_models": ["sasrec"]}, "pipeline.spark_models must be a list drawn from"),
    ({"spark_models": 5}, "pipeline.spark_models must be a list of str, got 5"),
    ({"k": "100"}, "pipeline.k must be a positive integer, got '100'"),
    ({"k": 0}, "pipeline.k must be a positive integer"),
    ({"models": ["als"]}, r"unknown config key\(s\) pipeline.models; known keys of pipeline: k, spark_models"),
])
def test_pipeline_section_mistakes_are_errors_not_silent_skips(pipeline, message):
    with pytest.raises(RecsysError, match=message):
        PipelineConfig.from_dict(pipeline)


def test_pipeline_job_refuses_a_typo_before_creating_anything(tmp_path, capsys):
    from jobs.pipeline import main

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    assert main(["--data", str(data), "--warehouse", str(warehouse), "pipeline.torch_models=[sasrecc]"]) == 2
    assert "pipeline.torch_models" in capsys.readouterr().err and not warehouse.exists()
    (data / "movies.csv").write_text("movieId,name\n1,A\n")
    assert main(["--data", str(data), "--warehouse", str(warehouse)]) == 2
    assert "movies.csv" in capsys.readouterr().err and not warehouse.exists()


def test_print_plan_prints_the_commands_it_runs_and_makes_nothing(tmp_path):
    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    (tmp_path / "tuned.yaml").write_text("als:\n  rank: 12\n")
    code = ("import sys\nfrom jobs.pipeline import main\n"
            f"code = main(['--data', 'data', '--warehouse', 'wh', '--run-date', '2026-11-23', '--config', "
            f"'tuned.yaml', 'pipeline.torch_models=[sasrec]', '--print-plan'])\n"
            "print('heavy', sorted(m for m in ('pyspark', 'torch', 'mlflow') if m in sys.modules))\n"
            "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "heavy []" and not warehouse.exists()
    # Relative paths are made absolute (the steps run from the project root); the run's --config file and
    # overrides are on every line, before the step's own.
    run = Run(str(data), str(warehouse), "2026-11-23", "local", str(tmp_path / "tuned.yaml"),
              ("pipeline.torch_models=[sasrec]",))
    steps = plan(PipelineConfig(torch_models=("sasrec",)), run)
    assert lines[0] == f"cd {REPO}"
    assert [shlex.split(line) for line in lines[1:-1]] == [local_command(s) for s in steps]
    assert lines[1].endswith(f"jobs/etl.py --data {data} --warehouse {warehouse} --config {tmp_path / 'tuned.yaml'} "
                             "--env local 'pipeline.torch_models=[sasrec]'")
    implicit = next(line for line in lines if "als.name=als_implicit" in line)
    assert implicit.endswith("'pipeline.torch_models=[sasrec]' als.name=als_implicit als.implicit_prefs=true")


def test_print_plan_needs_no_paths_and_names_them_as_shell_variables(capsys):
    from jobs.pipeline import main

    assert main(["--run-date", "2026-11-23", "--print-plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cd {REPO}" and lines[1].startswith("DATA=${DATA:?") and "; WAREHOUSE=${WAREHOUSE:?" in lines[1]
    run = Run("$DATA", "$WAREHOUSE", "2026-11-23", "local")
    assert [shlex.split(line) for line in lines[2:]] == [local_command(s) for s in plan(PipelineConfig(), run)]
    assert lines[2].endswith('jobs/etl.py --data "$DATA" --warehouse "$WAREHOUSE" --env local')  # the shell expands
    assert main(["--print-plan", "cluster"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("DATA=${DATA:?") and lines[2].endswith("jobs/ship.py")
    assert 'jobs/etl.py --data "$DATA" --warehouse "$WAREHOUSE" --env local' in lines[3]
    with pytest.raises(SystemExit, match="2"):  # argparse's usage error
        main(["--warehouse", "wh"])
    assert "required: --data" in capsys.readouterr().err
    assert main(["rank=5", "--print-plan"]) == 2
    assert "override 'rank=5': name its section" in capsys.readouterr().err


def test_print_plan_at_env_cluster_prints_the_cluster_launchers_lines(tmp_path, capsys):
    """spark-submit with the static settings of conf/cluster.yaml on the line (--packages, the SQL extension as
    --conf) and the shipped zip; torchrun with its node flags; python for a torch model's top-N. A null setting in a
    --config file is left off, and a file:// warehouse reaches Spark as the URI, the others as its path."""
    from jobs.pipeline import main
    from jobs.ship import archive_path

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    argv = ["--data", str(data), "--warehouse", f"file://{warehouse}", "--run-date", "2026-11-23", "--env", "cluster",
            "pipeline.spark_models=[popularity]", "pipeline.torch_models=[sasrec]"]
    assert main([*argv, "--print-plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cd {REPO}" and lines[1] == shlex.join([sys.executable, "jobs/ship.py"])
    etl = shlex.split(lines[2])
    assert etl[0].endswith("spark-submit") and etl[etl.index("--master") + 1] == "yarn"
    assert etl[etl.index("--packages") + 1] == "io.delta:delta-spark_2.13:4.0.0"
    assert etl[etl.index("--py-files") + 1] == str(archive_path())
    confs = [etl[i + 1] for i, word in enumerate(etl) if word == "--conf"]
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in confs
    assert "spark.executor.memory=16g" in confs and f"spark.pyspark.driver.python={sys.executable}" in confs
    assert etl[etl.index("jobs/etl.py"):etl.index("jobs/etl.py") + 5] == \
        ["jobs/etl.py", "--data", str(data), "--warehouse", f"file://{warehouse}"]
    train = shlex.split(next(line for line in lines if "jobs/train.py" in line))
    launcher = next(w for w in train if w.endswith("torchrun"))  # after the env prefix of train.launch_env
    assert train.index(launcher) < train.index("jobs/train.py") and "--rdzv-backend=c10d" in train  # two nodes
    assert train[train.index("--warehouse") + 1] == str(warehouse)
    topn = shlex.split(next(line for line in lines if "jobs/topn.py --model sasrec" in line))
    assert topn[0] == sys.executable and topn[topn.index("--warehouse") + 1] == str(warehouse)
    assert len([line for line in lines if "spark-submit" in line]) == 5  # etl, baselines, export, evaluate, drift

    (tmp_path / "nojars.yaml").write_text("spark:\n  spark.jars.packages: null\n  spark.sql.extensions: ''\n"
                                          "  spark.master: spark://h:7077\n")
    assert main([*argv, "--config", str(tmp_path / "nojars.yaml"), "--print-plan"]) == 0
    etl = shlex.split(capsys.readouterr().out.splitlines()[2])
    assert "--packages" not in etl and not any(w.startswith("spark.sql.extensions") for w in etl)
    assert etl[etl.index("--master") + 1] == "spark://h:7077"
    assert main([*argv, "--print-plan", "local"]) == 0  # the local launcher whatever the environment
    assert "spark-submit" not in capsys.readouterr().out


def test_one_step_runs_alone_and_the_others_count_as_the_state_records_them(nightly):
    """--step NAME (a scheduler's task): the runner runs that step only, deciding skip and block from the state."""
    data, warehouse = nightly.data, nightly.data.parent / "wh"

    def step(name, fail=False):
        ran = []

        def runner(step_, log, env):
            ran.append(step_.name)
            return StepOutcome(step_.name, 3 if fail else 0, 0.0, log)

        results = run_pipeline(RunSpec(data, warehouse, DAY, {}, lambda sections: load_config(sections)), runner,
                               only=name)
        return ran, [(r.name, r.status, r.blocked_by) for r in results]

    assert step("topn-als") == ([], [("topn-als", "not run", "als")])  # als has not run yet
    assert step("etl") == (["etl"], [("etl", "ran", None)])
    assert step("als") == (["als"], [("als", "ran", None)])
    assert step("als") == ([], [("als", "skipped", None)])
    assert step("topn-als", fail=True) == (["topn-als"], [("topn-als", "failed", None)])
    assert step("evaluate") == ([], [("evaluate", "not run", "topn-als")])  # no model's lists yet
    assert step("baselines") == (["baselines"], [("baselines", "ran", None)])
    assert step("evaluate") == (["evaluate"], [("evaluate", "ran", None)])  # gathers: over what was written
    ran, _, _ = nightly()  # the whole run after the tasks: what they did counts
    assert not {"etl", "als", "baselines"} & set(ran) and {"topn-als", "evaluate"} <= set(ran)


def fingerprints(steps, cfg, day, data):
    done = {}
    for step in steps:
        done[step.name] = fingerprint(step, cfg, day, done, data)
    return done


def test_fingerprints_follow_inputs_config_and_run_date(tmp_path):
    data = make_data(tmp_path)
    steps = plan(PipelineConfig(), RUN)
    base = fingerprints(steps, {}, DAY, data)
    assert base == fingerprints(steps, {}, DAY, data)

    other_day = fingerprints(steps, {}, dt.date(2026, 11, 24), data)
    assert other_day["etl"] == base["etl"] and other_day["train-sasrec"] == base["train-sasrec"]
    assert other_day["topn-sasrec"] != base["topn-sasrec"] and other_day["evaluate"] != base["evaluate"]

    tuned = fingerprints(steps, {"als": {"rank": 50}}, DAY, data)
    assert tuned["als"] != base["als"] and tuned["topn-als"] != base["topn-als"]
    assert tuned["train-sasrec"] == base["train-sasrec"]

    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,5.0,1\n")
    changed = fingerprints(steps, {}, DAY, data)
    assert all(changed[name] != base[name] for name in base if name != "retention")  # it reads no step's output
    assert changed["retention"] == base["retention"] != other_day["retention"]  # once a night


def test_the_exports_fingerprint_names_every_shard_folder_it_writes(tmp_path):
    """A warehouse exported before a shard folder existed (edges/, before LightGCN) must be re-exported by the next
    nightly run, not skipped with unchanged config: the folders are part of the export step's fingerprint."""
    from dataclasses import replace

    from recsys_spark.sequences import DATASETS

    data = make_data(tmp_path)
    steps = plan(PipelineConfig(), RUN)
    export = next(s for s in steps if s.name == "export-sequences")
    assert set(export.outputs) == set(DATASETS)
    older = [replace(s, outputs=tuple(d for d in s.outputs if d != "edges")) for s in steps]
    base, before = fingerprints(steps, {}, DAY, data), fingerprints(older, {}, DAY, data)
    assert before["export-sequences"] != base["export-sequences"] and before["etl"] == base["etl"]
    assert before["train-lightgcn"] != base["train-lightgcn"]


def test_state_remembers_only_successes(tmp_path):
    state = State(tmp_path)
    state.record("etl", "abc", "ok")
    state.record("als", "def", "failed")
    again = State(tmp_path)
    assert again.succeeded_with("etl") == "abc"
    assert again.succeeded_with("als") is None


class StepRecorder:
    """Records the steps run_pipeline asks to run (exit 0), failing the one named `fail_at` (exit 3)."""

    def __init__(self, fail_at: str | None = None):
        self.ran: list[str] = []
        self.fail_at = fail_at

    def __call__(self, step, log, env) -> StepOutcome:
        self.ran.append(step.name)
        return StepOutcome(step.name, 3 if step.name == self.fail_at else 0, 0.0, log)


@pytest.fixture
def nightly(tmp_path):
    """run(*overrides, day=, fail_at=, force=) -> (steps the runner was asked to run, results, state.json)."""
    data, warehouse = make_data(tmp_path), tmp_path / "wh"

    def run(*overrides, day=DAY, fail_at=None, force=False):
        def resolve(sections):
            return load_config(sections, overrides=overrides)

        recorder = StepRecorder(fail_at)
        results = run_pipeline(RunSpec(data, warehouse, day, {}, resolve), recorder, force=force)
        return recorder.ran, results, json.loads((warehouse / "_pipeline" / "state.json").read_text())

    run.data = data
    return run


def test_an_unchanged_run_skips_every_step_and_a_changed_input_reruns_exactly_its_dependents(nightly):
    ran, results, state = nightly()
    assert ran == ALL_STEPS and [r.status for r in results] == ["ran"] * len(ALL_STEPS)
    assert {name: entry["status"] for name, entry in state.items()} == {name: "ok" for name in ALL_STEPS}
    fingerprints_before = {name: entry["fingerprint"] for name, entry in state.items()}

    ran, results, state = nightly()
    assert ran == [] and [r.status for r in results] == ["skipped"] * len(ALL_STEPS)
    assert {name: entry["fingerprint"] for name, entry in state.items()} == fingerprints_before

    ran, _, _ = nightly("als.rank=8")  # both ALS models read the als section
    assert ran == ["als", "topn-als", "als_implicit", "topn-als_implicit", "ensemble", "evaluate", "drift", "publish"]
    ran, _, _ = nightly("als.rank=8", "sasrec.hidden=32")
    assert ran == ["train-sasrec", "topn-sasrec", "ensemble", "evaluate", "drift", "publish"]  # the ensemble blends
    ran, _, _ = nightly("als.rank=8", "sasrec.hidden=32", "pipeline.spark_models=[als,als_implicit,popularity]")
    assert ran == ["baselines", "evaluate", "drift", "publish"]
    ran, _, _ = nightly("als.rank=8", "sasrec.hidden=32", "pipeline.spark_models=[als,als_implicit,popularity]",
                        "drift.max_psi=0.3")
    assert ran == ["drift", "publish"]
    ran, _, _ = nightly("als.rank=8", "sasrec.hidden=32", "pipeline.spark_models=[als,als_implicit,popularity]",
                        day=DAY + dt.timedelta(days=1))
    assert ran == ["topn-als", "topn-als_implicit", "baselines", "topn-ncf", "topn-sasrec", "topn-ss4rec",
                   "topn-lightgcn", "evaluate", "drift", "retention", "publish"]  # retention: once a night

    (nightly.data / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Comedy\n")
    ran, _, _ = nightly()
    assert ran == ALL_STEPS


def test_a_failed_model_step_stops_only_that_model_and_the_next_run_retries_it(nightly):
    ran, results, state = nightly(fail_at="train-sasrec")
    status = {r.name: r.status for r in results}
    assert status["train-sasrec"] == "failed" and status["topn-sasrec"] == "not run"
    assert ran == [name for name in ALL_STEPS if name != "topn-sasrec"]  # the others, ensemble and evaluation too
    assert {n for n, s in status.items() if s == "ran"} == set(ALL_STEPS) - {"train-sasrec", "topn-sasrec"}
    blocked = next(r for r in results if r.name == "topn-sasrec")
    assert blocked.blocked_by == "train-sasrec"
    assert state["train-sasrec"]["status"] == "failed" and state["topn-sasrec"]["status"] == "not run"
    assert any(line.startswith("FAILED train-sasrec (exit 3); log: ") for line in summary(results))

    assert status["publish"] == "ran"  # over the models that survived

    ran, results, state = nightly()  # retries the failure, what it blocked, and what reads their lists
    assert ran == ["train-sasrec", "topn-sasrec", "ensemble", "evaluate", "drift", "publish"]
    assert all(entry["status"] == "ok" for entry in state.values())


def test_a_failed_shared_step_stops_everything_downstream(nightly):
    ran, results, _ = nightly(fail_at="export-sequences")
    status = {r.name: r.status for r in results}
    torch_steps = [n for n in ALL_STEPS if n.startswith(("train-", "topn-")) and n not in ("topn-als",
                                                                                          "topn-als_implicit")]
    assert status["export-sequences"] == "failed"
    assert {n: status[n] for n in torch_steps + ["ensemble", "evaluate", "drift", "publish"]} == \
        {n: "not run" for n in torch_steps + ["ensemble", "evaluate", "drift", "publish"]}  # nothing published
    assert status["als"] == status["baselines"] == "ran"
    ran, results, _ = nightly(fail_at="etl", force=True)
    assert ran == ["etl", "retention"]  # retention depends on no step: it runs whatever failed
    assert [r.status for r in results] == ["failed"] + ["not run"] * (len(ALL_STEPS) - 3) + ["ran", "not run"]


def test_the_ensemble_blends_the_members_that_survived(nightly):
    seen = {}

    def record(fail_at):
        def runner(step, log, env):
            seen[step.name] = step.args
            return StepOutcome(step.name, 3 if step.name == fail_at else 0, 0.0, log)
        return runner

    def run(fail_at, *overrides):
        def resolve(sections):
            return load_config(sections, overrides=overrides)
        seen.clear()
        results = run_pipeline(RunSpec(nightly.data, nightly.data.parent / fail_at, DAY, {}, resolve), record(fail_at))
        return {r.name: r.status for r in results}

    status = run("baselines", "ensemble.models=[ar2,itemcf,als_implicit]")  # ar2, itemcf are baselines' lists
    assert status["ensemble"] == "not run" and status["evaluate"] == status["publish"] == "ran"
    status = run("topn-als", "ensemble.models=[als,itemcf,als_implicit]")
    assert status["ensemble"] == "ran" and seen["ensemble"][-1] == "ensemble.models=[itemcf,als_implicit]"


def test_printed_lines_run_when_pasted_into_a_shell(tmp_path):
    """The first step of `recsys pipeline --print-plan`, pasted as printed (cd, the paths' line, the ETL) into bash
    with DATA and WAREHOUSE set: it runs, with the run's --config file and override."""
    import deltalake

    from recsys_data.generate import generate

    generate(tmp_path / "data", n_users=30, n_items=80, n_ratings=900, seed=2)
    (tmp_path / "small.yaml").write_text("spark:\n  spark.master: local[1]\n  spark.driver.memory: 2g\n")
    printed = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "pipeline", "--print-plan", "--config", "small.yaml",
         "etl.tie_break=movieId"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert "jobs/etl.py" in lines[2]
    warehouse = tmp_path / "wh"
    pasted = subprocess.run(["bash", "-e", "-c", "\n".join(lines[:3])], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "DATA": str(tmp_path / "data"), "WAREHOUSE": str(warehouse)})
    assert pasted.returncode == 0, pasted.stderr[-3000:]
    report = json.loads((warehouse / "etl_report.json").read_text())
    assert report["tie_break"] == "movieId"  # the override reached the step (the default is hash)
    assert deltalake.DeltaTable(str(warehouse / "interactions")).version() == 0

    unset = subprocess.run(["bash", "-c", "\n".join(lines[:3])], capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k not in ("DATA", "WAREHOUSE")})
    assert unset.returncode != 0 and "set DATA, or pass --data" in unset.stderr


def test_every_step_run_carries_the_runs_config_file_and_overrides(tmp_path):
    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    (tmp_path / "tuned.yaml").write_text("als:\n  rank: 12\n")
    seen = []

    def runner(step, log, env):
        seen.append(step.args)
        return StepOutcome(step.name, 0, 0.0, log)

    def resolve(sections):
        return load_config(sections, config_file=tmp_path / "tuned.yaml", overrides=["als.max_iter=3"])

    run_pipeline(RunSpec(data, warehouse, DAY, {"als": {"rank": 12, "max_iter": 3}}, resolve,
                         config_file=tmp_path / "tuned.yaml", overrides=["als.max_iter=3"]), runner)
    assert len(seen) == len(ALL_STEPS)
    for args in seen:
        at = args.index("--config")
        assert args[at + 1] == str(tmp_path / "tuned.yaml") and "als.max_iter=3" in args
    implicit = seen[ALL_STEPS.index("als_implicit")]
    assert implicit.index("als.max_iter=3") < implicit.index("als.name=als_implicit")  # the step's own win
    record = warehouse / "_pipeline" / DAY.isoformat() / "config.yaml"
    assert load_config([], config_file=record)["als"] == {"rank": 12, "max_iter": 3}


def test_a_step_reruns_exactly_when_the_code_it_runs_changes(tmp_path, monkeypatch):
    """The fingerprint holds the step's code (jobs/fingerprints.py, code_fingerprint): in a copy of the project, changing one module
    changes the fingerprints of the steps that run it and of what reads their output, and of no other."""
    import shutil

    root = tmp_path / "project"
    for package in ("jobs", "recsys_core", "recsys_spark", "recsys_torch"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    data = make_data(tmp_path)
    steps = plan(PipelineConfig(), RUN)

    def prints():
        done = {}
        for step in steps:
            done[step.name] = fingerprint(step, {}, DAY, done, data, code_root=root)
        return done

    def changed_by(path: str) -> set[str]:
        before = prints()
        with open(root / path, "a") as module:
            module.write("\n# a deploy changed this module\n")
        after = prints()
        return {name for name in before if before[name] != after[name]}

    base = prints()
    assert base == prints()
    torch_lists = {n for n in ALL_STEPS if n.startswith(("train-", "topn-")) and n not in ("topn-als",
                                                                                         "topn-als_implicit")}
    # retention's and publish's runtime (python) is hashed with every package
    assert changed_by("recsys_torch/losses.py") == torch_lists | {"ensemble", "evaluate", "drift", "retention",
                                                                    "publish"}
    assert changed_by("jobs/fit_als.py") == {"als", "topn-als", "als_implicit", "topn-als_implicit", "ensemble",
                                             "evaluate", "drift", "publish"}
    assert changed_by("jobs/evaluate.py") == {"evaluate", "drift", "publish"}  # publish reads what they read
    assert changed_by("jobs/drift.py") == {"drift", "publish"}
    assert changed_by("recsys_spark/etl.py") == set(ALL_STEPS)  # the ETL's output feeds every step
    before = prints()
    monkeypatch.setattr("jobs.cli.version", lambda: "9.9.9")  # a new release
    after = prints()
    assert all(after[name] != before[name] for name in ALL_STEPS)


def test_a_training_that_did_not_finish_resumes_with_the_same_fingerprint(tmp_path):
    """`train-<model>` carries --resume exactly when the state says the same fingerprint started (a kill leaves
    `started`) or failed, and its checkpoint is there; a changed config, --force or no checkpoint start over."""
    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    state_file = warehouse / "_pipeline" / "state.json"

    def run(*overrides, fail_at=None, force=False):
        seen = {}

        def runner(step, log, env):
            seen[step.name] = step.args
            return StepOutcome(step.name, 3 if step.name == fail_at else 0, 0.0, log)

        def resolve(sections):
            return load_config(sections, overrides=overrides)

        run_pipeline(RunSpec(data, warehouse, DAY, {}, resolve), runner, force=force)
        return {name: "--resume" in args for name, args in seen.items() if name.startswith("train-")}

    assert run() == {f"train-{m}": False for m in ("ncf", "sasrec", "ss4rec", "lightgcn")}
    (warehouse / "models" / "sasrec").mkdir(parents=True)
    (warehouse / "models" / "sasrec" / "checkpoint.pt").write_bytes(b"step 1400")
    state = json.loads(state_file.read_text())
    state["train-sasrec"]["status"] = "started"  # what a SIGKILL during training leaves
    state_file.write_text(json.dumps(state))
    assert run(fail_at="train-sasrec") == {"train-sasrec": True}
    argv = local_command(next(s for s in plan(PipelineConfig(), RUN) if s.name == "train-sasrec"))
    assert argv[argv.index("--model") + 1] == "sasrec"
    assert run() == {"train-sasrec": True}  # failed with this fingerprint: resumed again, now it finished
    assert run() == {}                      # finished: skipped
    state = json.loads(state_file.read_text())
    state["train-sasrec"]["status"] = "started"
    state_file.write_text(json.dumps(state))
    assert run("sasrec.hidden=32") == {"train-sasrec": False}  # another fingerprint: a new training
    state = json.loads(state_file.read_text())
    state["train-sasrec"]["status"] = "started"
    state_file.write_text(json.dumps(state))
    assert run("sasrec.hidden=32", force=True)["train-sasrec"] is False
    state["train-sasrec"]["status"] = "started"
    state_file.write_text(json.dumps(state))
    (warehouse / "models" / "sasrec" / "checkpoint.pt").unlink()
    assert run("sasrec.hidden=32") == {"train-sasrec": False}  # nothing to resume from


def test_a_run_removes_staging_leftovers_and_logs_each_step_as_a_json_line(nightly, caplog):
    import logging

    from recsys_spark.delta import staging_dir

    warehouse = nightly.data.parent / "wh"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a writer that is gone: its staging folder is a leftover
    mine = Path(staging_dir(warehouse / "recommendations"))  # staging_dir gives a location string
    leftover = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    (leftover / "part").mkdir(parents=True)
    caplog.set_level(logging.INFO, logger="recsys.pipeline")
    nightly(fail_at="train-ncf")
    assert not leftover.exists() and f"removed the staging leftover {leftover}" in caplog.text
    assert "step train-ncf: failed (exit 3)" in caplog.text and "step etl: ran in " in caplog.text
    lines = [json.loads(line) for line in (warehouse / "_pipeline" / DAY.isoformat() / "run.jsonl").read_text()
             .splitlines()]
    assert [line["step"] for line in lines] == ALL_STEPS
    by_step = {line["step"]: line for line in lines}
    assert by_step["train-ncf"]["status"] == "failed" and by_step["train-ncf"]["exit_code"] == 3
    assert by_step["topn-ncf"] == {**by_step["topn-ncf"], "status": "not run", "blocked_by": "train-ncf"}
    assert set(lines[0]) == {"run_date", "run_started", "pid", "step", "status", "seconds", "exit_code", "peak_rss_mb",
                             "fingerprint", "blocked_by", "rows", "rows_by_table", "log", "at"}
    nightly()  # a second run on the date appends its own lines
    again = (warehouse / "_pipeline" / DAY.isoformat() / "run.jsonl").read_text().splitlines()
    assert len(again) == 2 * len(ALL_STEPS)
    assert {json.loads(line)["status"] for line in again[len(ALL_STEPS):]} == {"ran", "skipped"}


def test_a_remote_warehouse_is_refused_by_the_pipeline_in_one_line(tmp_path, ml_small):
    """The run's lock, state and logs are local files: an s3:// warehouse is one clear line, exit 2, nothing made."""
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "pipeline.py"), "--data", str(ml_small),
                           "--warehouse", "s3://bucket/wh"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "needs a local or file:// warehouse, got 's3://bucket/wh'" in proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_the_run_log_counts_the_rows_each_step_committed(tmp_path):
    """`rows` in run.jsonl: what the Delta commits a step made while it ran wrote (a replace: its partition's rows)."""
    import deltalake
    import pyarrow as pa

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    deltalake.write_deltalake(str(warehouse / "items"), pa.table({"movie_id": [1, 2]}))  # before the run: not counted

    def runner(step, log, env):
        if step.name == "etl":
            deltalake.write_deltalake(str(warehouse / "items"), pa.table({"movie_id": [1, 2, 3]}), mode="overwrite")
            deltalake.write_deltalake(str(warehouse / "users"), pa.table({"user_id": [7]}))
        if step.name == "evaluate":
            for rows in (4, 5):  # two commits in one step
                deltalake.write_deltalake(str(warehouse / "metrics"), pa.table({"v": [0.5] * rows}), mode="append")
        return StepOutcome(step.name, 0, 0.0, log)

    run_pipeline(RunSpec(data, warehouse, DAY, {}, lambda sections: load_config(sections)), runner)
    lines = {json.loads(line)["step"]: json.loads(line)
             for line in (warehouse / "_pipeline" / DAY.isoformat() / "run.jsonl").read_text().splitlines()}
    assert lines["etl"]["rows"] == 4 and lines["etl"]["rows_by_table"] == {"items": 3, "users": 1}
    assert lines["evaluate"]["rows"] == 9 and lines["evaluate"]["rows_by_table"] == {"metrics": 9}
    assert lines["als"]["rows"] == 0 and lines["als"]["rows_by_table"] == {}
