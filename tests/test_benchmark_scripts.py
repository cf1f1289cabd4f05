"""The benchmark scripts that import library internals still run (train_throughput.py is also what a GPU check
runs first): a tiny CPU run of each, not a measurement."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_train_throughput_runs_both_models_on_cpu():
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cpu", "--n-items", "500",
                           "--seq-len", "20", "--batch-size", "4", "--steps", "1", "--warmup", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sasrec:" in proc.stdout and "ss4rec:" in proc.stdout and "SS4Rec / SASRec step time" in proc.stdout
