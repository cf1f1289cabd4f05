"""The GPU check runs where only torch and numpy are installed (the GPU machine has no registry and no pyarrow for
sure): scripts/gpu_check.sh --device cpu --tiny in a fresh venv that holds exactly torch, numpy and torch's own
requirements; recsys_torch imports there; and what travels to the machine stays under its 64 MiB.

The venv is built without pip: a `python -m venv --without-pip` whose site-packages links the files of exactly
those distributions from this environment (the same files `pip install --no-deps` of each would unpack, in about a
second instead of a minute of unpacking torch's 190 MB wheel)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
ABSENT = ("pyarrow", "petastorm", "pyspark", "deltalake", "mlflow", "pandas", "yaml", "pydantic")
# must import on the bare machine now; TRAINING_SIDE too once trainer.py/infer.py import their I/O libraries lazily
CORE_MODULES = ("recsys_torch.models", "recsys_torch.losses", "recsys_torch.runtime", "recsys_torch.metrics",
                "recsys_torch.evaluation", "recsys_torch.data", "recsys_torch.negatives", "recsys_torch.config",
                "recsys_torch.graph", "recsys_torch.checkpoint")
TRAINING_SIDE = ("recsys_torch.trainer", "recsys_torch.infer")


def requirement_closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need at run time (extras left out), roots included."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen[name] = dist = metadata.distribution(name)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    for dist in requirement_closure(("torch", "numpy")):
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (ours / top).exists() and not (site / top).exists():
                (site / top).symlink_to(ours / top)
    probe = subprocess.run([str(python), "-c", "import json, importlib.util as u; print(json.dumps("
                            f"[m for m in {ABSENT!r} if u.find_spec(m)]))"],
                           capture_output=True, text=True, timeout=60, env=_bare_env(python))
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert json.loads(probe.stdout) == [], "the bare venv must hold only torch, numpy and torch's requirements"
    return python


def _bare_env(python: Path) -> dict:
    return {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PYTHON": str(python)}


@pytest.fixture(scope="module")
def quality_set(tmp_path_factory) -> Path:
    """A small shard set in the exporter's layout (tests/torch_shards.py), prepared as the check carries it."""
    seq_dir = write_shards(tmp_path_factory.mktemp("wh"), PlantedData(n_users=240, rows_per_group=16))
    out = tmp_path_factory.mktemp("carry") / "planted"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--prepare-from", str(seq_dir), "--data",
                           str(out), "--source", "planted"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_gpu_check_runs_on_a_bare_torch_and_numpy_machine(bare_python, quality_set, tmp_path):
    figures = tmp_path / "figures.json"
    proc = subprocess.run(["scripts/gpu_check.sh", "--device", "cpu", "--tiny", "--data", str(quality_set),
                           "--json", str(figures)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=_bare_env(bare_python))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("#### GPU check: CPU"), out[:500]
    assert "CUDA none; NCCL none" in out and "pyarrow absent" in out
    assert "| model | width | layers | precision | seq/s | step ms | peak GPU memory GiB | MFU |" in out
    for model in ("sasrec", "ss4rec"):
        for width in (16, 32):
            assert re.search(rf"^\| {model} \| {width} \| 2 \| fp32 \| [\d,]+ \| [\d.]+ \| n/a \| [\d.]+% \|$", out,
                             re.M), f"no row for {model} width {width}"
    assert re.search(r"^\| sasrec \| 32 \| 3 \| fp32 BCE \|", out, re.M)
    assert "pmixer/SASRec.pytorch's 8,193 on one H100" in out
    assert "- DDP smoke: gloo, world 2: all_reduce ok, one DDP step, gradients identical on every rank" in out
    assert re.search(r"^- full-ranking top-100: sasrec width 16 [\d,]+ users/s, ss4rec width 16 [\d,]+ users/s",
                     out, re.M)
    before, after = map(float, re.search(r"validation NDCG@10 ([\d.]+) -> ([\d.]+) \(rose", out).groups())
    assert after > before
    assert "pyarrow reader vs carried arrays: skipped (pyarrow absent)" in out
    assert re.search(r"^- result: PASS in \d+ s$", out, re.M)
    saved = json.loads(figures.read_text())
    assert saved["passed"] and saved["quality"]["ndcg_after"] == pytest.approx(after, abs=1e-4)
    assert [r["config"]["hidden"] for r in saved["throughput"]] == [16, 32, 16, 32]


def test_recsys_torch_core_imports_without_pyarrow_spark_or_petastorm(bare_python):
    failed = _import_failures(bare_python, CORE_MODULES)
    assert failed == {}, failed


def test_trainer_and_inference_import_without_pyarrow_spark_or_petastorm(bare_python):
    """Issue 23: trainer and inference import only torch and numpy at module level (their Delta, Arrow and MLflow
    I/O at call time)."""
    failed = _import_failures(bare_python, TRAINING_SIDE)
    assert failed == {}, failed


def _import_failures(python: Path, modules: tuple[str, ...]) -> dict[str, str]:
    script = ("import importlib, json, sys\nfailed = {}\n"
              f"for name in {modules!r}:\n"
              "    try:\n        importlib.import_module(name)\n"
              "    except Exception as error:\n        failed[name] = f'{type(error).__name__}: {error}'\n"
              "print(json.dumps(failed))")
    proc = subprocess.run([str(python), "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**_bare_env(python), "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_what_travels_with_ml_latest_small_fits_in_64_mib(ml_small_warehouse, tmp_path):
    """The real carried set: ml-latest-small through the project's exporter, then the check's own preparation."""
    out = tmp_path / ".gpu_carry" / "ml-latest-small"
    proc = subprocess.run(["scripts/gpu_check.sh", "--prepare", "--warehouse", str(ml_small_warehouse), "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable,  # the fixture's warehouse stays read-only:
                               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "ml-latest-small" and meta["n_users"] == 610
    repo, carry, total = map(float, re.search(r"repository files ([\d.]+) MiB \+ \S+ ([\d.]+) MiB = ([\d.]+) MiB "
                                              r"\(under the 64 MiB limit\)", proc.stdout).groups())
    assert carry > 0.5 and total < 64
