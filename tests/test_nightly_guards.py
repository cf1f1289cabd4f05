"""The nightly run's guarantees through the real CLI (`recsys pipeline`): one run per warehouse (the run lock),
a failing model step that stops only that model."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from one_rating import make_data

REPO = Path(__file__).resolve().parent.parent


def recsys(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def write_lock(warehouse: Path, pid: int, host: str | None = None) -> Path:
    path = warehouse / "_pipeline" / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": "2026-11-23T02:15:00+00:00"}))
    return path


def test_a_second_pipeline_on_a_locked_warehouse_exits_2_naming_the_holder(tmp_path):
    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = write_lock(warehouse, holder.pid)
        before = lock.read_text()
        proc = recsys("pipeline", "--data", str(data), "--warehouse", str(warehouse))
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert f"pid {holder.pid} on host {socket.gethostname()}, started 2026-11-23T02:15:00+00:00" in line
        assert lock.read_text() == before  # the holder's lock is left alone
        assert sorted(p.name for p in (warehouse / "_pipeline").iterdir()) == ["run.lock"]  # nothing else made
        # --print-plan takes no lock
        assert recsys("pipeline", "--data", str(data), "--warehouse", str(warehouse), "--print-plan").returncode == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    write_lock(warehouse, 1, host="other-node")
    proc = recsys("pipeline", "--data", str(data), "--warehouse", str(warehouse))
    assert proc.returncode == 2 and "pid 1 on host other-node" in proc.stderr


def test_the_lock_is_atomic_released_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    from jobs.runlock import LockHeld, RunLock

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = write_lock(tmp_path, dead.pid)
    with RunLock(tmp_path) as held:
        assert json.loads(lock.read_text())["pid"] == held.holder["pid"]
        try:
            RunLock(tmp_path).acquire()  # this very process is alive: refused
            raise AssertionError("a second lock was taken")
        except LockHeld as exc:
            assert f"pid {held.holder['pid']}" in str(exc)
    assert not lock.exists()
    assert f"taking over the run lock of a run that is gone (pid {dead.pid}" in caplog.text
    try:
        with RunLock(tmp_path):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert not lock.exists()


@pytest.mark.slow
def test_a_failing_model_step_still_evaluates_and_publishes_the_others_and_its_last_list_stays_served(
        spark, tmp_path, capsys):
    """Two small nightlies. Night 1, with its steps in this process (on the tests' JVM): a training step that fails
    when it starts (train.sequences names a folder that holds no shards, which only the run can find out: a config
    mistake such as sasrec.hidden=63 stops the whole run before its first step, tests/test_pipeline_checks.py): the
    other models are evaluated and published, and the run exits 1. Night 2, the suite's one whole run of the real
    `recsys pipeline` CLI in its own process (each step a process of its own; the unchanged ETL and sequence export
    are skipped): a lock left by a dead process is taken over, the training fails again, and the ensemble's step
    fails too (a member, ar2, that no night fitted has no lists to blend): it is not published and the list it had
    published on night 1 stays the served one. (Night 1 in this process and night 2 through the CLI, not the other
    way round: the CLI night then starts no JVM for the two steps it skips.)"""
    from jobs.pipeline import main as pipeline
    from jobs.steps import run_in_process
    from recsys_core.published import latest_published
    from recsys_data.generate import generate
    from recsys_serve.reader import Warehouse
    from recsys_serve.store import Store
    from recsys_spark.delta import read_arrow

    generate(tmp_path / "data", n_users=60, n_items=200, n_ratings=2500, seed=4)
    warehouse = tmp_path / "wh"

    def argv(run_date: str, *extra: str) -> list[str]:
        return ["--data", str(tmp_path / "data"), "--warehouse", str(warehouse), "--reports",
                str(tmp_path / "reports"), "--run-date", run_date, "pipeline.spark_models=[popularity,markov,ensemble]",
                "ensemble.models=[popularity,markov]", "pipeline.torch_models=[sasrec]", "pipeline.k=20",
                "sequences.max_len=50", f"train.sequences={tmp_path / 'no-shards'}", *extra]

    def statuses(out: str) -> dict[str, str]:
        return {line.split()[1]: line.split()[0] for line in out.splitlines()
                if line.split()[:1] in (["ran"], ["failed"], ["skipped"])}

    capsys.readouterr()
    code = pipeline(argv("2026-11-23"), runner=lambda step, log, env: run_in_process(step, env))
    out, err = capsys.readouterr()
    assert code == 1, out[-3000:] + err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("FAILED ")][0].startswith("FAILED train-sasrec (exit ")
    assert len([line for line in err.splitlines() if line.startswith("FAILED ")]) == 1
    assert f"error: sequence shards not found: {tmp_path / 'no-shards' / 'meta.json'} is missing" in err
    summary = statuses(out)
    assert summary["train-sasrec"] == "failed"
    assert summary["evaluate"] == summary["baselines"] == summary["ensemble"] == summary["publish"] == "ran"
    assert "not run  topn-sasrec" in out and "(after train-sasrec failed)" in out
    metrics = read_arrow(warehouse / "metrics").to_pandas()
    assert set(metrics["model"]) == {"popularity", "markov", "ensemble"}  # the surviving models were evaluated
    state = json.loads((warehouse / "_pipeline" / "state.json").read_text())
    assert state["train-sasrec"]["status"] == "failed" and state["evaluate"]["status"] == "ok"
    assert not (warehouse / "_pipeline" / "run.lock").exists()  # released at the end
    night1 = latest_published(warehouse)
    assert {m.model: m.published for m in night1.models} == {"popularity": True, "markov": True, "ensemble": True,
                                                             "sasrec": False}
    assert night1.model("sasrec").reason == "not published: its step train-sasrec failed; nothing served for it"
    assert "HELD BACK  sasrec" in out and "published  ensemble" in out

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = write_lock(warehouse, dead.pid)
    proc = recsys("pipeline", *argv("2026-11-24", "ensemble.models=[popularity,markov,ar2]"), timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"taking over the run lock of a run that is gone (pid {dead.pid}" in proc.stderr
    logs = warehouse / "_pipeline" / "2026-11-24" / "logs"
    failures = [line for line in proc.stderr.splitlines() if line.startswith("FAILED ")]
    assert [line.split()[1] for line in failures] == ["train-sasrec", "ensemble"]
    for step, line in zip(["train-sasrec", "ensemble"], failures):
        assert line.startswith(f"FAILED {step} (exit ") and line.endswith(
            f"log: {logs / (step + '.log')}. The next run retries it."), line
    assert proc.stderr.strip().splitlines()[-1] == failures[-1]
    assert f"error: sequence shards not found: {tmp_path / 'no-shards' / 'meta.json'} is missing" in (
        logs / "train-sasrec.log").read_text()
    assert "error: ensemble.models: no lists of ['ar2'] on or before 2026-11-24" in (logs / "ensemble.log").read_text()
    summary = statuses(proc.stdout)
    assert summary["etl"] == summary["export-sequences"] == "skipped"  # unchanged: no process started for them
    assert summary["baselines"] == summary["evaluate"] == summary["publish"] == "ran"
    assert summary["train-sasrec"] == summary["ensemble"] == "failed"
    assert not lock.exists()  # released at the end
    night2 = latest_published(warehouse)
    assert night2.version == night1.version + 1 and night2.run_date.isoformat() == "2026-11-24"
    ensemble = night2.model("ensemble")
    assert not ensemble.published and ensemble.reason.startswith("not published: its step ensemble failed")
    assert (ensemble.run_date, ensemble.recommendations_version) == (night1.model("ensemble").run_date,
                                                                     night1.tables["recommendations"])
    assert night2.model("popularity").published and night2.model("markov").published  # same lists: no drop
    store = Store(Warehouse(warehouse))
    served = {model: lists.run_date.isoformat() for model, lists in store.load().latest.items()}
    store.warehouse.close()
    assert served == {"popularity": "2026-11-24", "markov": "2026-11-24", "ensemble": "2026-11-23"}
