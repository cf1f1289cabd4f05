"""Session fixtures that are built once per test run, whatever the number of pytest-xdist workers.

Under xdist each worker is its own pytest session, so a plain session fixture would build its warehouse once per
worker. `built_once` builds into the run's common temporary folder under a file lock: the first worker to ask
builds, the others wait for it and read what it wrote. A build that failed leaves no mark, so the next asker
builds again and fails with its own traceback. What is built is shared: tests read it, and copy it to change it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock


def run_folder(tmp_path_factory) -> Path:
    """The folder every worker of this run sees: the base temp folder, or its parent under xdist (pytest-N/)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> dict:
    """`build(folder)` writes into an empty `folder` and returns a JSON-able dict (paths as strings); every later
    call, in any worker, returns that dict without building."""
    folder = run_folder(tmp_path_factory) / f"shared-{name}"
    done = folder.with_name(folder.name + ".json")
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())


def copy_warehouse(source: Path, target: Path) -> Path:
    """A copy of a finished warehouse that is independent of its source: its MLflow store names its artifact
    folders by absolute path, so they are renamed to the copy's (a copy that logged into the source's would change
    a shared fixture)."""
    import sqlite3

    shutil.copytree(source, target, symlinks=True)
    database = target / "_mlflow" / "mlflow.db"
    if database.exists():
        old, new = str(source.resolve()), str(target.resolve())
        with sqlite3.connect(database) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')
                               if "CHAR" in row[2].upper() or "TEXT" in row[2].upper()]:
                    db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                               f'WHERE instr("{column}", ?) > 0', (old, new, old))
        db.close()
    return target
