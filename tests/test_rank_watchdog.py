"""A rank ends when its launcher dies (recsys_torch.runtime.exit_with_launcher): torchrun's elastic agent starts each
worker in a session of its own, so a SIGKILL to the launcher's process group reaches no rank, and a killed agent
cannot stop them."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from process_tree import cmdline, descendants, still_running
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]  # petastorm 0.12 on pyarrow 14's legacy API


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The processes of `pids` still running after `seconds`, killed then so that a failure leaves none training."""
    left = still_running(pids, within_s=seconds)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.parametrize("sigterm", [False, True], ids=["SIGKILL-to-the-launchers-group", "SIGTERM-to-the-launcher"])
def test_killing_the_launcher_ends_its_torchrun_rank(tmp_path, sigterm):
    seq_dir = write_shards(tmp_path / "shards", PlantedData(n_users=40))
    out = tmp_path / "models" / "sasrec"
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--warehouse", str(tmp_path), "--model", "sasrec",
           f"train.sequences={seq_dir}", "train.device=cpu", "train.batch_size=32", "train.min_steps_per_epoch=1",
           "train.shuffle_buffer=64", "mlflow.enabled=false", "train.max_steps=400", "train.eval_every=3",
           "train.patience=1000", "sasrec.hidden=16", "sasrec.n_layers=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    tree = []
    try:
        while not (out / "checkpoint.pt").is_file():  # the rank is training, well past its set-up
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        tree = descendants(proc.pid)  # the torchrun agent and its rank
        sessions = {os.getsid(pid) for pid in tree if "torch.distributed.run" not in cmdline(pid)}
        if sigterm:  # as a scheduler stops a job: the launcher passes it on to the agent, which stops its rank
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        left = still_running(tree, within_s=10)
    finally:  # a failure leaves nothing training
        for pid in still_running([proc.pid, *tree], within_s=0):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    assert len(tree) == 2 and len(sessions) == 1 and proc.pid not in sessions  # the rank: beyond the group's kill
    assert left == []
    assert proc.returncode == (1 if sigterm else -signal.SIGKILL)


# A stand-in for torchrun's agent: it starts the rank in a session of its own, as the agent does, and waits for it.
AGENT = ("import subprocess, sys; "
         "sys.exit(subprocess.Popen([sys.executable, '-c', sys.argv[1]], start_new_session=True).wait())")
RANK = """
import os, threading, time
parent = os.getppid()  # as jobs/train.py reads it, before the slow imports
from recsys_torch import runtime

def ready():
    print(os.getpid(), flush=True)

{arm}
time.sleep(120)
"""


@pytest.mark.parametrize("arm", [
    "runtime.exit_with_launcher(parent)\nready()",
    # where prctl is not available
    "threading.Thread(target=runtime._exit_when_parent_changes, args=(parent, 0.05), daemon=True).start()\nready()",
    # the agent died before the rank got as far as the call: no parent left to signal its death
    "ready()\nwhile os.getppid() == parent:\n    time.sleep(0.01)\nruntime.exit_with_launcher(parent)",
], ids=["prctl", "polling", "parent-gone-before-the-call"])
def test_a_rank_ends_when_its_agent_is_killed(arm):
    agent = subprocess.Popen([sys.executable, "-c", AGENT, RANK.format(arm=arm)], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    line = agent.stdout.readline()
    assert line.strip().isdigit(), "the rank did not start"
    rank = int(line)
    agent.kill()
    agent.wait()
    assert gone_within([rank], 5) == []
