"""scripts/nightly.sh and deploy/airflow_dag.py are the nightly plan, generated: they cannot drift from it."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import schedules
from jobs.config import load_config
from jobs.plan import config_sections

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", [schedules.NIGHTLY, schedules.AIRFLOW])
def test_committed_scheduler_files_are_what_the_plan_generates(path):
    assert (REPO / path).read_text() == schedules.generated()[path], \
        f"{path} differs from the nightly plan: run `python -m jobs.schedules` and commit the result"


def cluster_steps():
    return schedules.cluster_plan(load_config(config_sections(), env="cluster"))


def test_nightly_sh_runs_every_step_of_the_cluster_plan_in_order():
    text = (REPO / schedules.NIGHTLY).read_text()
    assert subprocess.run(["bash", "-n", str(REPO / schedules.NIGHTLY)]).returncode == 0
    lines = [line for line in text.splitlines() if line.startswith("$")]
    assert lines == [schedules.shell_line(step) for step in cluster_steps()]
    assert "--config" not in text and all("--env cluster" in line for line in lines)  # conf/cluster.yaml once
    assert any(line.startswith("$SPARK_SUBMIT jobs/fit_als.py --run-date \"$RUN_DATE\"") and
               "als.name=als_implicit" in line for line in lines)
    assert any(line.startswith("$TORCHRUN jobs/train.py --model sasrec") for line in lines)
    assert any(line.startswith("$PYTHON jobs/topn.py --model sasrec") for line in lines)


def test_airflow_dag_has_one_task_per_step_with_the_plans_command_and_edges():
    tree = ast.parse((REPO / schedules.AIRFLOW).read_text())
    found = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name)}
    tasks = ast.literal_eval(found["STEPS"])
    steps = cluster_steps()
    assert [(task_id, command, upstream) for task_id, _, command, upstream in tasks] == [
        (s.name.replace("-", "_"), schedules.shell_line(s), [d.replace("-", "_") for d in s.depends]) for s in steps]
    queues = {task_id: queue for task_id, queue, _, _ in tasks}
    assert queues["train_sasrec"] == queues["topn_sasrec"] == "gpu" and queues["als"] == "default"
    als = next(command for task_id, _, command, _ in tasks if task_id == "als")
    assert '--run-date "$RUN_DATE"' in als and "als_implicit" in queues
    env = ast.literal_eval(found["ENV"])
    assert env["RUN_DATE"] == "{{ ds }}" and env["TORCHRUN"].endswith("--nproc_per_node=8")


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(schedules, "PROJECT_ROOT", tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "deploy").mkdir()
    assert schedules.main(["--check"]) == 1
    assert schedules.main([]) == 0 and schedules.main(["--check"]) == 0
    assert (tmp_path / schedules.NIGHTLY).read_text() == (REPO / schedules.NIGHTLY).read_text()


def test_the_generator_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "jobs.schedules", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_airflow_runs_one_nightly_at_a_time_and_times_out_each_task():
    tree = ast.parse((REPO / schedules.AIRFLOW).read_text())
    dag = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DAG")
    assert {kw.arg: ast.literal_eval(kw.value) for kw in dag.keywords if kw.arg == "max_active_runs"} == \
        {"max_active_runs": 1}
    operator = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", "") == "BashOperator")
    assert "execution_timeout" in {kw.arg for kw in operator.keywords}
    timeouts = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", "") == "TIMEOUT")
    assert sorted(ast.literal_eval(key) for key in timeouts.keys) == ["default", "gpu"]


def test_nightly_sh_refuses_a_warehouse_another_copy_holds(tmp_path):
    held = subprocess.Popen(["bash", "-c", f'mkdir -p "{tmp_path}/_pipeline"; exec 9>"{tmp_path}/_pipeline/'
                             'nightly.sh.lock"; flock -n 9; echo held; sleep 30'], stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "held"
        proc = subprocess.run(["bash", str(REPO / schedules.NIGHTLY), str(tmp_path / "data"), str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and f"another scripts/nightly.sh holds {tmp_path}" in proc.stderr
    finally:
        held.kill()
        held.wait()
