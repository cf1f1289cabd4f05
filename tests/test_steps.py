"""The step runner (jobs/steps.py) on a real, fast step: `recsys generate` as a plan step."""
import os

from jobs.plan import Step
from jobs.steps import run_child, run_in_process
from jobs.tracking import STEP_ENV


def generate_step(out, *sizes: str) -> Step:
    return Step("make-data", "generate", ["--out", str(out), "--quiet", *sizes], "python")


def test_a_child_step_has_its_log_exit_status_and_time(tmp_path, capsys):
    outcome = run_child(generate_step(tmp_path / "data", "--users", "5", "--items", "20", "--ratings", "50"),
                        tmp_path / "logs" / "make-data.log", {})
    assert outcome.ok and outcome.exit_code == 0 and outcome.seconds > 0 and not outcome.stopped
    assert 10 < outcome.peak_rss_mb < 4096  # a Python process with numpy: tens to hundreds of MB
    assert (tmp_path / "data" / "ratings.csv").is_file()
    log = outcome.log.read_text().splitlines()
    assert log[0].startswith("$ ") and log[0].endswith("jobs/generate.py --out " + str(tmp_path / "data") +
                                                        " --quiet --users 5 --items 20 --ratings 50")
    assert any(line.startswith("  [make-data] ") for line in capsys.readouterr().out.splitlines())

    failed = run_child(generate_step(tmp_path / "bad", "--users", "10", "--ratings", "5"),
                       tmp_path / "logs" / "bad.log", {}, echo=False)
    assert failed.exit_code == 2 and not failed.ok
    assert "--ratings (5) must be at least --users (10)" in failed.log.read_text()
    assert capsys.readouterr().out == ""


def test_stop_when_terminates_a_running_step(tmp_path):
    polls = []

    def stop() -> bool:
        polls.append(1)
        return True

    outcome = run_child(generate_step(tmp_path / "data", "--users", "20000", "--ratings", "4000000"),
                        tmp_path / "big.log", {}, echo=False, stop_when=stop, poll_seconds=0.05)
    assert outcome.stopped and not outcome.ok and polls == [1]
    assert not (tmp_path / "data" / "SHA256SUMS").exists()


def test_an_in_process_step_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv(STEP_ENV, raising=False)
    outcome = run_in_process(generate_step(tmp_path / "data", "--users", "5", "--items", "20", "--ratings", "50"),
                             {"RECSYS_TEST_MARK": "1"})
    assert outcome.ok and outcome.log is None and (tmp_path / "data" / "ratings.csv").is_file()
    assert STEP_ENV not in os.environ and "RECSYS_TEST_MARK" not in os.environ


RUNNER = """\
import pathlib, signal, sys
sys.path.insert(0, {root!r})
import jobs.steps as steps
from jobs.plan import Step

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # what the pipeline's run lock installs
# a step that writes its pid and sleeps
sleeper = lambda step: [sys.executable, "-c", "import os, time; "
                        "open({pid!r}, 'w').write(str(os.getpid())); time.sleep(60)"]
steps.run_child(Step("sleep", "generate", [], "python"), pathlib.Path({log!r}), {{}}, echo=False, command=sleeper)
"""


def test_a_step_does_not_outlive_the_runner_that_is_stopped(tmp_path):
    """SIGTERM to the runner (cron's and Airflow's stop) ends the step it is running too: no orphan keeps writing
    after the run lock is released."""
    import signal
    import subprocess
    import sys
    import time

    from jobs.steps import PROJECT_ROOT

    pid_file = tmp_path / "pid"
    script = RUNNER.format(root=str(PROJECT_ROOT), pid=str(pid_file), log=str(tmp_path / "sleep.log"))
    runner = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120  # the runner's Python and its step start slowly on a loaded machine
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 143
    time.sleep(0.5)
    try:
        os.kill(child, 0)
        survived = True
    except ProcessLookupError:
        survived = False
    assert not survived
