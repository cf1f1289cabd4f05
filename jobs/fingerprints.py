"""A step's content fingerprint: its config sections and own overrides, its run date where that matters, the
fingerprints of the steps it reads, and for the ETL the bytes of the input files; and the step's code
(code_fingerprint: the package version, the step's script and the jobs/ modules it imports, and the library packages
its runtime uses), so a deploy re-runs exactly the steps whose code changed. Equal to the one recorded by the step's
last successful run, the step is skipped (jobs/executor.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from jobs.plan import Step, input_files
from jobs.steps import PROJECT_ROOT


def file_digest(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# The library packages whose whole source a step's code fingerprint hashes, by how the step runs: Spark steps use
# recsys_spark (and recsys_core under it), training recsys_torch, a torch model's top-N both (it reads the model with
# recsys_torch and writes Delta with recsys_spark).
CODE_PACKAGES = {"spark": ("recsys_core", "recsys_spark"), "torch": ("recsys_core", "recsys_torch"),
                 "python": ("recsys_core", "recsys_spark", "recsys_torch")}
_digests: dict[tuple[Path, int, int], str] = {}
_imports: dict[tuple[Path, int, int], tuple[str, ...]] = {}


def _source_digest(path: Path) -> str:
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _digests:
        _digests[key] = file_digest(path)
    return _digests[key]


def _imported_jobs_modules(path: Path) -> tuple[str, ...]:
    """The `jobs.…` modules one file imports (by the file's stat: parsed once while it is unchanged)."""
    import ast

    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _imports:
        names = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "jobs":
                names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names += [alias.name for alias in node.names if alias.name.split(".")[0] == "jobs"]
        _imports[key] = tuple(name for name in names if name != "jobs")
    return _imports[key]


def job_modules(script: Path, root: Path) -> list[Path]:
    """The script and every module of jobs/ it imports, directly or through another (read from their imports)."""
    found, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        todo += [root.joinpath(*name.split(".")).with_suffix(".py") for name in _imported_jobs_modules(path)]
    return sorted(found)


def code_fingerprint(step: Step, root: Path = PROJECT_ROOT) -> dict:
    """What code the step runs: the package version, its script with the jobs/ modules it imports, and the whole
    source of the library packages its runtime uses (CODE_PACKAGES). A deploy that changes any of them re-runs the
    step (and, through the upstream fingerprints, what reads its output); one that does not, skips it."""
    from jobs.cli import version

    files = job_modules(root / step.script, root)
    files += sorted(p for package in CODE_PACKAGES[step.runtime] for p in (root / package).rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root)}\0{_source_digest(path)}\n".encode())
    return {"version": version(), "source": digest.hexdigest()[:16]}


def fingerprint(step: Step, cfg: dict, run_date: dt.date, upstream: dict[str, str], data: Path,
                code_root: Path = PROJECT_ROOT) -> str:
    """`cfg` is the configuration the step itself resolves (environment < its sections < the run's layer);
    `code_root` the project whose source the step runs (code_fingerprint)."""
    files = input_files(cfg, data) if step.reads_data else []
    base = data if data.is_dir() else data.parent
    payload = {
        "code": code_fingerprint(step, code_root),
        "step": step.name,
        "config": {s: cfg.get(s) for s in step.sections},
        "overrides": step.overrides,
        "run_date": run_date.isoformat() if step.per_run_date else None,
        "upstream": {d: upstream.get(d) for d in step.depends},
        "files": {(str(p.relative_to(base)) if p.is_relative_to(base) else str(p)): file_digest(p)
                  for p in files if p.exists()},
    }
    if step.outputs:  # only where declared, so other steps keep the fingerprints older runs recorded
        payload["outputs"] = list(step.outputs)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
