"""A real Spark standalone cluster on loopback: a Master and two Workers from the pyspark install, whose executors run
a Python that does not have the project: the code reaches them only through what the runner ships.

`recsys pipeline --env cluster` runs the steps of each launcher on it (spark-submit with the static settings and the
shipped zip, torchrun for the training, python for the torch top-N) and writes the lists the shared local nightly
(conftest's finished_nightly, same data and settings) wrote; with one Worker killed in the middle of its ETL step,
that step still finishes, with the tables the local nightly's ETL wrote.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest
import yaml

import pyspark
from recsys_spark.delta import read_arrow

REPO = Path(__file__).resolve().parent.parent
SPARK_HOME = Path(pyspark.__file__).resolve().parent
TABLES = {"interactions": ["userId", "movieId"], "items": ["movieId"], "users": ["userId"], "rejects": ["file", "line"]}
# What the cluster runs of the shared nightly's plan: two Spark baselines whose executors call recsys_spark (ItemCF's
# neighbour blocks), the sequence export (its executors write the shards), one torch model; the steps those need.
MODELS = ["pipeline.spark_models=[popularity,itemcf]", "pipeline.torch_models=[sasrec]"]
STEPS = ["etl", "baselines", "export-sequences", "train-sasrec", "topn-sasrec"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_env() -> dict:
    """The cluster's processes: nothing of the project on their path (the test runner's PYTHONPATH is dropped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    return {**env, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "RECSYS_DELTA_WRITER": "delta-rs",
            "SPARK_NO_DAEMONIZE": "1"}


def start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=spark_env(), cwd=cwd,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def master_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def executor_python(root: Path) -> Path:
    """A venv whose site-packages reach this venv's as a plain path entry: numpy, pandas, pyarrow, scipy import, but
    the project's editable install (a .pth *inside* that folder, processed only for a site dir) does not."""
    venv = root / "executor-venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "recsys_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("cluster-logs")  # also the daemons' working folder: outside the repository
    port, ui = free_port(), free_port()
    master = start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                    "--webui-port", str(ui)], logs / "master.log", logs)
    workers = []
    worker_args = [["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1", "--memory", "1536m",
                    "--webui-port", str(free_port()), "--work-dir", str(logs / f"work{n}"), f"spark://127.0.0.1:{port}"]
                   for n in range(2)]
    try:
        wait_for(lambda: master_state(ui)["status"] == "ALIVE", 60, "the Spark master")
        for n, args in enumerate(worker_args):
            workers.append(start(args, logs / f"worker{n}.log", logs))
        wait_for(lambda: sum(w["state"] == "ALIVE" for w in master_state(ui)["workers"]) == 2, 60, "two workers")
        yield {"url": f"spark://127.0.0.1:{port}", "ui": ui, "workers": workers, "worker_args": worker_args,
               "logs": logs, "python": executor_python(logs)}
    finally:
        for proc in [*workers, master]:
            stop(proc)


def test_the_executors_python_lacks_the_project(cluster):
    """The check that makes the pipeline test mean something: the executors' interpreter, in the workers'
    environment and folder, imports the libraries but not recsys_spark."""
    def run(code):
        return subprocess.run([str(cluster["python"]), "-c", code], env=spark_env(), cwd=cluster["logs"],
                              capture_output=True, text=True, timeout=120)

    assert run("import numpy, pandas, pyarrow, scipy").returncode == 0
    missing = run("import recsys_spark")
    assert missing.returncode != 0 and "No module named 'recsys_spark'" in missing.stderr


def recommendations(warehouse: Path) -> pa.Table:
    table = read_arrow(warehouse / "recommendations").drop_columns(["run_id"])
    return table.select(sorted(table.column_names)).sort_by([("model", "ascending"), ("userId", "ascending"),
                                                             ("rank", "ascending")])


def test_the_cluster_plan_on_a_standalone_cluster_writes_the_local_runs_lists(cluster, finished_nightly, tmp_path):
    nightly = finished_nightly
    cluster_conf = {"mlflow": {"tracking_uri": None, "experiment": "recsys"},
                    "train": {"nproc": 1, "device": "cpu", "nnodes": 1, "rdzv_endpoint": None},  # one node: standalone
                    "spark": {"spark.master": cluster["url"], "spark.pyspark.python": str(cluster["python"]),
                              # no Maven here: the Delta jars cannot be fetched, so delta-rs commits the tables
                              "spark.jars.packages": None, "spark.sql.extensions": None,
                              "spark.sql.catalog.spark_catalog": None,
                              "spark.executor.memory": "1g", "spark.executor.cores": 1, "spark.driver.memory": "1g",
                              "spark.task.maxFailures": 8,  # the ETL step loses a worker mid-job
                              "spark.sql.shuffle.partitions": 4, "spark.ui.enabled": False}}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster_conf))
    warehouse = tmp_path / "cluster-wh"
    # The runner from the repository, with nothing of the project on PYTHONPATH: no path reaches the executors but
    # the shipped zip.
    argv = [sys.executable, "-m", "jobs.cli", "pipeline", "--env", "cluster", "--config", str(tmp_path / "cluster.yaml"),
            "--data", str(nightly["data"]), "--warehouse", f"file://{warehouse}", "--run-date", nightly["run_date"],
            "--reports", str(tmp_path / "reports"), *nightly["overrides"], *MODELS]
    printed = subprocess.run([*argv, "--print-plan"], cwd=REPO, env=spark_env(), capture_output=True, text=True,
                             timeout=120)
    assert printed.returncode == 0, printed.stderr
    submits = [line for line in printed.stdout.splitlines() if "spark-submit" in line]
    assert submits and all(f"--master {cluster['url']}" in line and "--py-files" in line and "recsys-" in line
                           and "--packages" not in line and "spark.sql.extensions" not in line for line in submits)
    assert any("torchrun --standalone --nproc-per-node=1 jobs/train.py --model sasrec" in line
               for line in printed.stdout.splitlines())

    etl_survives_a_worker_killed_mid_job(cluster, [*argv, "--step", "etl"], warehouse, nightly["warehouse"])
    for step in STEPS[1:]:  # as a scheduler's tasks: one step each
        proc = subprocess.run([*argv, "--step", step], cwd=REPO, env={**spark_env(), "RECSYS_NET_IF": "lo"},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (step, proc.stdout[-4000:] + proc.stderr[-4000:])
    logs = warehouse / "_pipeline" / nightly["run_date"] / "logs"
    etl_log = (logs / "etl.log").read_text()
    assert etl_log.startswith("$ ") and "spark-submit" in etl_log.splitlines()[0]
    train_line = (logs / "train-sasrec.log").read_text().splitlines()[0].split()  # after train.launch_env's prefix
    assert any(word.endswith("/torchrun") for word in train_line) and "--standalone" in train_line
    state = json.loads((warehouse / "_pipeline" / "state.json").read_text())
    assert {name: entry["status"] for name, entry in state.items()} == {step: "ok" for step in STEPS}

    got = recommendations(warehouse)
    expected = recommendations(nightly["warehouse"])
    expected = expected.filter(pa.compute.is_in(expected["model"], pa.array(["popularity", "itemcf", "sasrec"])))
    assert set(got.column("model").to_pylist()) == {"popularity", "itemcf", "sasrec"}
    # by value: the two warehouses' Delta schemas may differ in a column's nullability
    assert got.drop_columns(["score"]).to_pydict() == expected.drop_columns(["score"]).to_pydict()

    # One step again, as a scheduler's task: unchanged, so the runner skips it and says so.
    again = subprocess.run([*argv, "--step", "baselines"], cwd=REPO, env={**spark_env(), "RECSYS_NET_IF": "lo"},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipped baselines" in " ".join(again.stdout.split())


def sorted_table(warehouse: Path, name: str) -> pa.Table:
    table = read_arrow(warehouse / name)
    return table.select(sorted(table.column_names)).sort_by([(c, "ascending") for c in TABLES[name]])


def assert_same_tables(got: Path, expected: Path) -> None:
    for name in TABLES:
        left, right = sorted_table(got, name), sorted_table(expected, name)
        assert left.num_rows == right.num_rows, name
        assert left.equals(right), f"{name} differs between the cluster run and local mode"


def etl_survives_a_worker_killed_mid_job(cluster, command: list[str], warehouse: Path, local: Path) -> None:
    """The plan's ETL step (spark-submit through the runner) with one Worker killed while the application runs on
    both: the step still succeeds and writes the tables the local nightly's ETL wrote. The Worker is started again
    for the steps after it."""
    proc = subprocess.Popen(command, cwd=REPO, env={**spark_env(), "RECSYS_NET_IF": "lo"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # Mid-job: the application has executors on both workers and is working.
        wait_for(lambda: any(a.get("state") == "RUNNING" for a in master_state(cluster["ui"])["activeapps"]),
                 120, "the application to start")
        time.sleep(6)
        assert proc.poll() is None, "the job ended before the worker could be killed mid-job"
        victim = cluster["workers"][0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        out, _ = proc.communicate(timeout=600)
    finally:
        stop(proc)
    assert proc.returncode == 0, out[-4000:]
    assert_same_tables(warehouse, local)
    cluster["workers"][0] = start(cluster["worker_args"][0], cluster["logs"] / "worker0-again.log", cluster["logs"])
    wait_for(lambda: sum(w["state"] == "ALIVE" for w in master_state(cluster["ui"])["workers"]) == 2, 60,
             "the killed worker back")
