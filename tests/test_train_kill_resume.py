"""A training killed with SIGKILL (the whole process group, as an OOM killer or a node loss leaves it) resumes through
the CLI from the step count of its last checkpoint, and never replaces a better best.pt (issue 19, item 5).

The pipeline's part, running `recsys train --resume` for a started-but-unfinished step with an unchanged fingerprint,
is tests/test_pipeline_plan.py's; this is the training's part, with real processes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from process_tree import descendants, still_running
from recsys_torch import checkpoint as ckpt_io
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API


def command(warehouse: Path, seq_dir: Path, max_steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "train", "--warehouse", str(warehouse), "--model", "sasrec", *extra,
            f"train.sequences={seq_dir}", "train.device=cpu", "train.batch_size=32", "train.min_steps_per_epoch=1",
            "train.shuffle_buffer=64", "mlflow.enabled=false", f"train.max_steps={max_steps}", "train.eval_every=3",
            "train.patience=1000", "sasrec.hidden=16", "sasrec.n_layers=1"]


def test_a_killed_training_resumes_from_its_checkpoint_and_keeps_a_better_best(tmp_path):
    seq_dir = write_shards(tmp_path / "shards", PlantedData(n_users=40))
    out = tmp_path / "models" / "sasrec"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a budget it cannot finish before the kill (about 2 steps an epoch: capped at 200 epochs)
    proc = subprocess.Popen(command(tmp_path, seq_dir, 400), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while not (out / "checkpoint.pt").is_file():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        tree = descendants(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the rank dies after its agent (tests/test_rank_watchdog.py): until then it may write another checkpoint
    assert still_running(tree, within_s=10) == []
    step = ckpt_io.load(out / "checkpoint.pt")["progress"]["step"]
    assert 3 <= step < 400 and step % 3 == 0

    # As if the kill came between a better validation's best.pt and its checkpoint.pt (written in that order):
    # best.pt is ahead of the checkpoint's best_metric. Nothing the resumed run validates may replace it.
    best = ckpt_io.load(out / "best.pt")
    best["metrics"]["ndcg@10"] = 1.0
    torch.save(best, out / "best.pt")
    best_bytes = (out / "best.pt").read_bytes()

    resumed = subprocess.run(command(tmp_path, seq_dir, step + 6, "--resume"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [int(s) for s in re.findall(r"sasrec step (\d+)/", resumed.stdout)]
    assert steps == [step + 3, step + 6], resumed.stdout[-2000:]  # from the checkpoint's step, not from 0
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(3, step + 7, 3))  # the killed run's validations kept
    assert ckpt_io.load(out / "checkpoint.pt")["progress"]["step"] == step + 6
    assert (out / "best.pt").read_bytes() == best_bytes
    assert ckpt_io.load(out / "checkpoint.pt")["progress"]["best_metric"] == 1.0
