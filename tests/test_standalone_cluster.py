"""A real Spark standalone cluster on loopback: a Master and two Workers from the pyspark install.

The ETL submitted with `spark-submit --master spark://127.0.0.1:…` writes the same tables as local mode; with one
Worker killed mid-job the job still finishes, with identical output.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest

import pyspark
from recsys_spark.delta import read_arrow

REPO = Path(__file__).resolve().parent.parent
SPARK_HOME = Path(pyspark.__file__).resolve().parent
TABLES = {"interactions": ["userId", "movieId"], "items": ["movieId"], "users": ["userId"], "rejects": ["file", "line"]}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_env() -> dict:
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
            "RECSYS_DELTA_WRITER": "delta-rs", "SPARK_NO_DAEMONIZE": "1"}


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=spark_env(),
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("cluster-logs")
    port, ui = free_port(), free_port()
    master = start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                    "--webui-port", str(ui)], logs / "master.log")
    workers = []
    try:
        wait_for(lambda: master_state(ui)["status"] == "ALIVE", 60, "the Spark master")
        for n in range(2):
            workers.append(start(["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                                  "--memory", "1536m", "--webui-port", str(free_port()),
                                  "--work-dir", str(logs / f"work{n}"), f"spark://127.0.0.1:{port}"],
                                 logs / f"worker{n}.log"))
        wait_for(lambda: sum(w["state"] == "ALIVE" for w in master_state(ui)["workers"]) == 2, 60, "two workers")
        yield {"url": f"spark://127.0.0.1:{port}", "ui": ui, "workers": workers, "logs": logs}
    finally:
        for proc in [*workers, master]:
            stop(proc)


def submit(cluster, data: Path, warehouse: Path) -> subprocess.Popen:
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster["url"],
           "--conf", "spark.executor.memory=1g", "--conf", "spark.executor.cores=1",
           "--conf", "spark.task.maxFailures=8", "--conf", "spark.sql.shuffle.partitions=4",
           "--conf", f"spark.pyspark.python={sys.executable}",
           str(REPO / "jobs" / "etl.py"), "--data", str(data), "--warehouse", str(warehouse)]
    return subprocess.Popen(cmd, env=spark_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def sorted_table(warehouse: Path, name: str) -> pa.Table:
    table = read_arrow(warehouse / name)
    return table.select(sorted(table.column_names)).sort_by([(c, "ascending") for c in TABLES[name]])


def assert_same_tables(got: Path, expected: Path) -> None:
    for name in TABLES:
        left, right = sorted_table(got, name), sorted_table(expected, name)
        assert left.num_rows == right.num_rows, name
        assert left.equals(right), f"{name} differs between the cluster run and local mode"


def test_etl_on_standalone_cluster_equals_local_mode(cluster, ml_small, ml_small_warehouse, tmp_path):
    proc = submit(cluster, ml_small, tmp_path / "wh")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert_same_tables(tmp_path / "wh", ml_small_warehouse)


def test_etl_survives_a_worker_killed_mid_job(cluster, ml_small, ml_small_warehouse, tmp_path):
    proc = submit(cluster, ml_small, tmp_path / "wh")
    try:
        # Mid-job: the application has executors on both workers and is working.
        wait_for(lambda: any(a.get("state") == "RUNNING" for a in master_state(cluster["ui"])["activeapps"]),
                 120, "the application to start")
        time.sleep(6)
        assert proc.poll() is None, "the job ended before the worker could be killed mid-job"
        victim = cluster["workers"][0]
        os.killpg(victim.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        stop(proc)
    assert proc.returncode == 0, out[-3000:]
    assert_same_tables(tmp_path / "wh", ml_small_warehouse)
