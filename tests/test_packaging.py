"""A wheel of the project, installed as a plain (non-editable) package, carries conf/ and plans from it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("jobs", "recsys_core", "recsys_spark", "recsys_torch", "recsys_data", "conf")


def test_a_wheel_install_finds_the_shipped_conf(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in SOURCES:
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), *map(str, (tmp_path / "dist").glob("*.whl"))],
                   check=True, capture_output=True, timeout=300)

    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import jobs.config as c\n"
            "print(c.__file__)\nprint(c.CONF_DIR)\nprint(c.load_config(['als', 'pipeline'])['als']['rank'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module, conf_dir, rank = out.stdout.split()
    assert Path(module).is_relative_to(site)
    assert Path(conf_dir) == site / "jobs" / "conf" and not Path(conf_dir).is_symlink()
    assert int(rank) == yaml.safe_load((REPO / "conf" / "als.yaml").read_text())["als"]["rank"]
    assert sorted(p.name for p in Path(conf_dir).glob("*.yaml")) == sorted(p.name for p in (REPO / "conf").glob("*.yaml"))

    plan = subprocess.run([sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(tmp_path), "--warehouse",
                           str(tmp_path / "wh"), "--print-plan"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[0] == f"cd {site}" and "jobs/train.py --model sasrec" in plan.stdout
