"""Running one step of a plan (jobs/plan.py): the one runner `recsys pipeline` and `recsys tune` share.

A step runs as its local command, `python jobs/<file>.py …` from the project root (or as its cluster launcher's
command, jobs/launchers.py), in a child process whose output
goes to the step's log (and, when asked, to the console, each line prefixed with the step's name). The runner
returns what happened: the exit status, the seconds it took, the child's peak memory, the log, and whether the caller
stopped it (`stop_when`, polled while it runs: the tuner's pruner). `recsys tune` runs its Spark steps in its own
process instead (`run_in_process`, one JVM for the whole study); those report the same outcome.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from jobs.tracking import STEP_ENV

if TYPE_CHECKING:
    from jobs.plan import Step

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the folder holding jobs/: where `jobs/<file>.py` resolves


@dataclass(frozen=True)
class StepOutcome:
    name: str
    exit_code: int
    seconds: float
    log: Path | None      # the step's log file (None: it ran in this process)
    stopped: bool = False  # ended by the caller's stop_when, not by itself
    peak_rss_mb: float | None = None  # the child's peak resident memory, its own children included (None: unknown)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.stopped


def local_command(step: Step) -> list[str]:
    """What runs a step on this machine (from PROJECT_ROOT): the job's script in this Python. `python jobs/train.py`
    starts torchrun itself; Spark runs embedded (local mode)."""
    return [sys.executable, step.script, *step.args]


def run_child(step: Step, log: Path, env: Mapping[str, str], *, echo: bool = True,
              stop_when: Callable[[], bool] | None = None, poll_seconds: float = 1.0,
              command: Callable[[Step], list[str]] = local_command) -> StepOutcome:
    """Run the step's command (`command(step)`: its local command unless a launcher says otherwise,
    jobs/launchers.py) with `env` (the whole environment) added to this process's; its output goes to `log` (first
    line: the command) and, with `echo`, to the console. `stop_when()`, polled every `poll_seconds`, returns True to
    terminate the step (the outcome says `stopped`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = command(step)
    start = time.monotonic()
    stopped = False
    with open(log, "w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
                                env={**os.environ, **env, STEP_ENV: step.name})
        copier = threading.Thread(target=_copy_lines, args=(proc.stdout, out, f"  [{step.name}] " if echo else None),
                                  daemon=True)
        copier.start()
        # wait4 rather than Popen.wait: it also returns the child's resource use (its peak RSS).
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG if stop_when else 0)
                if pid:
                    break
                if stop_when():
                    stopped = True
                    proc.terminate()
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(poll_seconds)
        except BaseException:  # this process is being stopped (SIGTERM, Ctrl-C): the step does not outlive it
            proc.terminate()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        copier.join()
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    peak_mb = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return StepOutcome(step.name, proc.returncode, time.monotonic() - start, log, stopped, peak_mb)


def _copy_lines(source, log, console_prefix: str | None) -> None:
    for line in source:
        log.write(line)
        if console_prefix is not None:
            sys.stdout.write(console_prefix + line)
    source.close()


def run_in_process(step: Step, env: Mapping[str, str]) -> StepOutcome:
    """Run the step's `recsys` command in this process (for Spark steps: this process's JVM) with `env` set while it
    runs; its output is this process's."""
    from jobs.cli import main as recsys

    env = {**env, STEP_ENV: step.name}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.monotonic()
    try:
        code = recsys([step.command, *step.args])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return StepOutcome(step.name, code, time.monotonic() - start, None)
