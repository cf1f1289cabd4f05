"""Small rooms (issue 35): no module of the packages, jobs and benchmarks over 400 lines, no function over 60."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("recsys_core", "recsys_data", "recsys_spark", "recsys_torch", "recsys_serve", "jobs", "benchmarks")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    found = [path for room in ROOMS for path in sorted((REPO / room).rglob("*.py"))]
    assert len(found) > 50  # the walk reached the code
    return found


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_60_lines():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert long == {}
