"""scripts/nightly.sh and deploy/airflow_dag.py are the nightly plan, generated: they cannot drift from it."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import schedules
from jobs.config import load_config
from jobs.plan import config_sections

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", [schedules.NIGHTLY, schedules.AIRFLOW, schedules.CRONTAB])
def test_committed_scheduler_files_are_what_the_plan_generates(path):
    assert (REPO / path).read_text() == schedules.generated()[path], \
        f"{path} differs from the nightly plan: run `python -m jobs.schedules` and commit the result"


def cluster_steps():
    return schedules.cluster_plan(load_config(config_sections(), env="cluster"))


def test_nightly_sh_is_one_call_of_the_runner_at_env_cluster():
    text = (REPO / schedules.NIGHTLY).read_text()
    assert subprocess.run(["bash", "-n", str(REPO / schedules.NIGHTLY)]).returncode == 0
    commands = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == f'exec {schedules.RUNNER} "${{@:4}}"'
    assert not any("spark-submit" in line or "torchrun" in line for line in commands)  # the runner launches them


def test_airflow_dag_has_one_task_per_step_calling_the_runner_for_that_step():
    tree = ast.parse((REPO / schedules.AIRFLOW).read_text())
    found = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name)}
    tasks = ast.literal_eval(found["STEPS"])
    steps = cluster_steps()
    assert [(task_id, command, upstream, gathers) for task_id, _, command, upstream, gathers in tasks] == [
        (s.name.replace("-", "_"), f"{schedules.RUNNER} --step {s.name}", [d.replace("-", "_") for d in s.depends],
         s.gathers) for s in steps]
    queues = {task_id: queue for task_id, queue, _, _, _ in tasks}
    assert queues["train_sasrec"] == queues["topn_sasrec"] == "gpu" and queues["als"] == "default"
    gathering = {task_id for task_id, _, _, _, gathers in tasks if gathers}
    assert {"ensemble", "evaluate"} <= gathering and "etl" not in gathering
    env = ast.literal_eval(found["ENV"])
    assert env["RUN_DATE"] == "{{ ds }}" and env["RECSYS"].endswith("/bin/recsys")


def test_crontab_runs_the_generated_nightly_script():
    lines = [line for line in (REPO / schedules.CRONTAB).read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("15 2 * * * ") and " scripts/nightly.sh " in lines[0]


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(schedules, "PROJECT_ROOT", tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "deploy").mkdir()
    assert schedules.main(["--check"]) == 1
    assert schedules.main([]) == 0 and schedules.main(["--check"]) == 0
    assert (tmp_path / schedules.NIGHTLY).read_text() == (REPO / schedules.NIGHTLY).read_text()


def test_the_generator_runs_as_a_module(tmp_path):
    """`python -m jobs.schedules` in a copy of the project (its root is the folder holding jobs/): --check names the
    stale and the missing file and writes nothing; without it, it rewrites just those, byte for byte as committed."""
    for folder in ("jobs", "conf", "scripts", "deploy"):
        shutil.copytree(REPO / folder, tmp_path / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / schedules.CRONTAB).write_text("15 3 * * * scripts/nightly.sh\n")
    (tmp_path / schedules.NIGHTLY).unlink()

    def generator(*flags):
        return subprocess.run([sys.executable, "-m", "jobs.schedules", *flags], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    check = generator("--check")
    assert check.returncode == 1 and check.stderr.strip().endswith(f": {schedules.NIGHTLY}, {schedules.CRONTAB}")
    assert not (tmp_path / schedules.NIGHTLY).exists()
    write = generator()
    assert write.returncode == 0 and write.stdout.split("\n") == [
        f"wrote {schedules.NIGHTLY}", f"wrote {schedules.CRONTAB}", ""]
    for path in (schedules.NIGHTLY, schedules.AIRFLOW, schedules.CRONTAB):
        assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), path
    assert generator("--check").returncode == 0


def test_airflow_runs_one_step_at_a_time_and_times_out_each_task():
    tree = ast.parse((REPO / schedules.AIRFLOW).read_text())
    dag = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DAG")
    assert {kw.arg: ast.literal_eval(kw.value) for kw in dag.keywords
            if kw.arg in ("max_active_runs", "max_active_tasks")} == {"max_active_runs": 1, "max_active_tasks": 1}
    operator = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", "") == "BashOperator")
    assert {"execution_timeout", "trigger_rule"} <= {kw.arg for kw in operator.keywords}
    timeouts = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", "") == "TIMEOUT")
    assert sorted(ast.literal_eval(key) for key in timeouts.keys) == ["default", "gpu"]


def test_nightly_sh_refuses_a_warehouse_another_run_holds(tmp_path):
    """The runner's lock, through the script: a live run's lock on the warehouse makes it exit 2 naming the holder."""
    import json
    import os
    import socket

    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    (data / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
    lock = tmp_path / "wh" / "_pipeline" / "run.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-12-02T02:15:00"}))
    proc = subprocess.run(["bash", str(REPO / schedules.NIGHTLY), str(data), str(tmp_path / "wh")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RECSYS": str(Path(sys.executable).parent / "recsys")})
    assert proc.returncode == 2 and f"another nightly run holds this warehouse: pid {os.getpid()}" in proc.stderr
