"""Memory of a real `recsys train` run: the peak of the whole process tree (launcher + torchrun + every rank).

    .venv/bin/python benchmarks/train_memory.py WAREHOUSE --model ss4rec --nproc 2 -- train.max_steps=40

Runs `recsys train --warehouse WAREHOUSE --model M --nproc N [key=value ...]` (MLflow off, models written under
--out) and samples every 0.2 s the resident memory of each process in its tree. Prints the peak of the tree's
total (what the machine must hold at once), the peak of the largest single process (one rank), and the wall time.
The warehouse needs its sequence shards (`recsys export-sequences`).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine  # noqa: E402


def tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("warehouse", type=Path)
    p.add_argument("--model", default="ss4rec")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="model folder (default: a temporary one)")
    p.add_argument("overrides", nargs="*", help="key=value for recsys train (after --)")
    args = p.parse_intermixed_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="train-memory-"))
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--warehouse", str(args.warehouse), "--model", args.model,
           "--nproc", str(args.nproc), "mlflow.enabled=false", f"train.output={out}", *args.overrides]
    print(machine())
    print("$ " + " ".join(cmd[2:]))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    total_peak = single_peak = 0.0
    while proc.poll() is None:
        sizes = [rss_gb(pid) for pid in tree(proc.pid)]
        total_peak, single_peak = max(total_peak, sum(sizes)), max([single_peak, *sizes])
        time.sleep(0.2)
    wall = time.perf_counter() - start
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        print(output[-3000:])
        return proc.returncode
    print(output.strip().splitlines()[-1] if output.strip() else "")
    print(f"{args.model} --nproc {args.nproc}: peak RSS of the process tree {total_peak:.2f} GB, of the largest "
          f"process {single_peak:.2f} GB; wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
