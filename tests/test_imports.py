"""The arrows between the packages (docs: DESIGN.md, "Packages and their rooms"), read from every module's imports.

recsys_core is imported by everyone and imports none of them (nor Spark, torch or pyarrow at module level);
recsys_spark and recsys_torch meet only through files, never through imports; nothing but the entry points' own
callers (tests, benchmarks, scripts) imports jobs; the reading side (recsys_serve) and the generator (recsys_data)
import neither Spark nor torch (recsys_serve reaches recsys_torch.realtime only inside a function, for a real-time
request of a sequence model).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("recsys_core", "recsys_spark", "recsys_torch", "recsys_serve", "recsys_data", "jobs")
HEAVY = ("pyspark", "torch", "pyarrow")


@dataclass(frozen=True)
class Import:
    module: str       # the imported module's full name
    line: int
    top_level: bool   # at module level (runs on import), not inside a function


def imports(path: Path) -> list[Import]:
    """Every module `path` imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - child.level + 1]
                    module = ".".join([*base, child.module] if child.module else base)
                else:
                    module = child.module or ""
                found.append(Import(module, child.lineno, top_level))
            visit(child, inner)

    visit(tree, True)
    return found


def root(module: str) -> str:
    return module.split(".")[0]


def violations(path: Path) -> list[str]:
    """The arrows of one module that run back up or across."""
    owner = path.relative_to(REPO).parts[0]
    bad = []
    for imp in imports(path):
        target = root(imp.module)
        where = f"{path.relative_to(REPO)}:{imp.line} imports {imp.module}"
        if target == owner:
            continue
        if owner == "recsys_core" and target in PROJECT:
            bad.append(f"{where}: recsys_core imports no project package")
        elif owner == "recsys_core" and target in HEAVY and imp.top_level:
            bad.append(f"{where}: recsys_core imports no Spark, torch or pyarrow at module level")
        elif {owner, target} == {"recsys_spark", "recsys_torch"}:
            bad.append(f"{where}: the two libraries meet only through files")
        elif target == "jobs" and owner in PROJECT:
            bad.append(f"{where}: only tests, benchmarks and scripts import the entry points")
        elif owner in ("recsys_serve", "recsys_data") and target in ("pyspark", "torch"):
            bad.append(f"{where}: {owner} imports neither Spark nor torch")
        elif owner == "recsys_serve" and target in ("recsys_spark", "recsys_torch") and imp.top_level:
            bad.append(f"{where}: recsys_serve imports recsys_torch only inside a function (torch loads with the "
                       f"first real-time request of a sequence model), and never recsys_spark at module level")
    return bad


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PROJECT)
def test_no_arrow_runs_back_up_or_across(package):
    files = modules(package)
    assert files, f"no Python files under {package}/"
    assert [v for path in files for v in violations(path)] == []


def test_the_check_sees_an_arrow_that_runs_back(tmp_path, monkeypatch):
    """The checker on planted modules (in a copy of the layout): each wrong arrow is reported, lazy ones where
    allowed are not."""
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    planted = {
        "recsys_core/bad.py": "import pyarrow as pa\nfrom recsys_spark import delta\n"
                              "def f():\n    import torch\n",
        "recsys_torch/bad.py": "from recsys_spark.schemas import META_KEYS\n",
        "recsys_spark/bad.py": "def f():\n    from jobs.catalogue import find\n",
        "recsys_serve/bad.py": "from . import errors\nimport pyspark.sql\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = {name: violations(tmp_path / name) for name in planted}
    assert [v.split(": ", 1)[0] for v in found["recsys_core/bad.py"]] == \
        ["recsys_core/bad.py:1 imports pyarrow", "recsys_core/bad.py:2 imports recsys_spark"]
    assert len(found["recsys_torch/bad.py"]) == 1 and "through files" in found["recsys_torch/bad.py"][0]
    assert len(found["recsys_spark/bad.py"]) == 1 and "jobs.catalogue" in found["recsys_spark/bad.py"][0]
    assert len(found["recsys_serve/bad.py"]) == 1 and "pyspark.sql" in found["recsys_serve/bad.py"][0]
    assert imports(tmp_path / "recsys_serve/bad.py")[0].module == "recsys_serve"  # `from . import errors`


def test_importing_the_core_loads_neither_spark_nor_torch_nor_pyarrow():
    code = ("import sys\n"
            "import recsys_core.catalogue, recsys_core.config, recsys_core.errors, recsys_core.schemas, "
            "recsys_core.tracking\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
