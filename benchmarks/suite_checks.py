"""How much the test suite checks, at a git revision: test functions, assert statements, and the asserts that read
the warehouse (their function reads a Delta table, a warehouse file or a warehouse fixture).

    python benchmarks/suite_checks.py                 # the working tree
    python benchmarks/suite_checks.py --rev 186089f   # a commit (read with `git show`, nothing checked out)

A count of statements, not of behaviours: it shows whether a change of the suite kept its checks (docs/BENCHMARKS.md,
"The test suite"), not how good they are.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# A function touches the warehouse when it names one of these (a call, a fixture argument or a variable).
WAREHOUSE_NAMES = {"warehouse", "read_arrow", "read_table", "table_path", "read_metrics", "table_rows",
                   "table_version", "DeltaTable", "finished_nightly", "nightly_copy", "small_warehouse",
                   "small_warehouse_copy", "ml_small_warehouse", "served_warehouse", "bad_warehouse"}


def sources(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "tests").glob("*.py"))}
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "tests/"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=REPO, check=True, capture_output=True,
                              text=True).stdout for n in names if n.endswith(".py")}


def names_in(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.arg):
            found.add(sub.arg)
    return {n for n in found if n in WAREHOUSE_NAMES or "warehouse" in n}


def count(files: dict[str, str]) -> dict[str, int]:
    tests = asserts = warehouse_asserts = 0
    for text in files.values():
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            tests += fn.name.startswith("test_")
            own = [n for n in ast.walk(fn) if isinstance(n, ast.Assert)]
            nested = {id(n) for inner in ast.walk(fn) if inner is not fn and isinstance(
                inner, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(inner) if isinstance(n, ast.Assert)}
            own = [n for n in own if id(n) not in nested]  # an inner function's asserts count once, there
            asserts += len(own)
            if own and names_in(fn):
                warehouse_asserts += len(own)
    return {"files": len(files), "test_functions": tests, "asserts": asserts, "warehouse_asserts": warehouse_asserts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", help="a git revision (default: the working tree)")
    args = p.parse_args()
    print(json.dumps({"rev": args.rev or "working tree", **count(sources(args.rev))}))


if __name__ == "__main__":
    main()
