"""Packaging: a wheel of the project, installed as a plain (non-editable) package, carries conf/ and plans from it;
`recsys --version`; every third-party import is a pinned, declared dependency."""
import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from jobs import cli

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("jobs", "recsys_core", "recsys_spark", "recsys_torch", "recsys_data", "conf")


def test_a_wheel_install_finds_the_shipped_conf(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
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

    version = subprocess.run([sys.executable, "-m", "jobs.cli", "--version"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"recsys {PROJECT['version']}\n"
    wheel_meta = next(site.glob("recsys-*.dist-info")) / "METADATA"
    assert "License-Expression: MIT" in wheel_meta.read_text()


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_version_is_the_installed_distributions(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"recsys {importlib.metadata.version('recsys')}\n"


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert cli.version() == PROJECT["version"]


# --- every import declared --------------------------------------------------------------------------------------

def _dist_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def _imported_top_levels(path: Path) -> set[str]:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    else:
        source = path.read_text()
    names = set()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(paths: list[Path]) -> dict[str, set[str]]:
    """Import name -> the files importing it, for every import that is neither stdlib nor first-party."""
    first_party = {p.stem for p in REPO.iterdir() if p.is_dir() or p.suffix == ".py"}
    first_party |= {p.stem for p in (REPO / "benchmarks").glob("*.py")}  # tests import the benchmark scripts
    found: dict[str, set[str]] = {}
    for path in paths:
        local = {p.stem for p in path.parent.glob("*.py")}
        for name in _imported_top_levels(path) - set(sys.stdlib_module_names) - first_party - local:
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def _providers(import_name: str) -> set[str]:
    """The distributions that install a top-level import (mlflow: mlflow, mlflow-skinny, ...); one that is not
    installed here (an extra) is taken to be named as it is imported."""
    dists = importlib.metadata.packages_distributions().get(import_name, [import_name])
    return {_dist_name(d) for d in dists}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*") if p.suffix in {".py", ".ipynb"}
                  and "__pycache__" not in p.parts)


def test_every_third_party_import_is_a_pinned_dependency():
    runtime = {_dist_name(r): r for r in PROJECT["dependencies"]}
    extras = {name: {_dist_name(r): r for r in reqs} for name, reqs in PROJECT["optional-dependencies"].items()}
    # Petastorm's own environment (requirements/petastorm.txt): recsys_torch.shards imports it when asked to
    petastorm_env = {_dist_name(line): line for line in (REPO / "requirements" / "petastorm.txt").read_text().split("\n")
                     if line.strip() and not line.startswith("#")}
    packages = [p.name for p in REPO.glob("recsys_*") if p.is_dir()] + ["jobs", "notebooks"]
    scopes = {  # what each part of the tree may import: the runtime pins, plus its own extra
        "the packages, jobs and notebooks": (_sources(*packages), runtime | {"petastorm": petastorm_env["petastorm"]}),
        "tests": (_sources("tests"), runtime | extras["test"]),
        "benchmarks": (_sources("benchmarks"), runtime | extras["bench"]),
    }
    for scope, (paths, declared) in scopes.items():
        assert paths, scope
        undeclared = {name: files for name, files in _third_party(paths).items()
                      if not _providers(name) & declared.keys()}
        assert not undeclared, f"{scope} import packages that pyproject.toml does not declare: {undeclared}"
    for requirement in [*runtime.values(), *(r for reqs in extras.values() for r in reqs.values()),
                        *petastorm_env.values()]:
        assert "==" in requirement, f"unpinned dependency {requirement!r} (pin the version it was resolved with)"


# --- the README as a front door ---------------------------------------------------------------------------------

def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_link_in_the_readme_and_docs_resolves():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.relative_to(REPO)}: link to {target} (no such file)"
            if anchor:
                headings = _anchors(resolved.read_text())
                assert anchor in headings, f"{page.relative_to(REPO)}: link to {target} (no such heading)"
            checked += 1
    assert checked >= 20  # README's contents list and the docs' links back


def test_readme_is_a_front_door_and_ci_runs_its_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert blocks[:2] == ["bash scripts/setup.sh && bash scripts/demo.sh",
                          "bash scripts/setup.sh --tests && .venv/bin/python -m pytest -q -n 2 --dist loadfile"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci[ci.index("# The README's test command, verbatim:") + 1] == blocks[1]
    assert "mlflow ui --backend-store-uri sqlite:///warehouse/_mlflow/mlflow.db" in readme
