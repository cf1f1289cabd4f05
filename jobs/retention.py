"""`recsys retention --warehouse DIR [key=value …]`: vacuum every Delta table of the warehouse (delta-rs), keeping
`retention.days` of history and every version the published run (the `runs` table) reads; docs/OPERATIONS.md.

As a nightly step it runs under the pipeline's run lock; on its own it takes that lock (exit 2 while a nightly
runs), since a vacuum of unreferenced files must not race a write about to commit them."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`python jobs/retention.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config, local_warehouse  # noqa: E402
from jobs.tracking import STEP_ENV  # noqa: E402


def _under_pipeline(warehouse: Path) -> bool:
    """Run as a step of the nightly that holds this warehouse's lock: our parent, or this very process when the
    pipeline runs its steps in-process (jobs.steps.run_in_process)."""
    import json

    from jobs.runlock import lock_path

    if not os.environ.get(STEP_ENV):
        return False
    try:
        return json.loads(lock_path(warehouse).read_text()).get("pid") in (os.getppid(), os.getpid())
    except (OSError, ValueError):
        return False


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys retention", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    _, config = job_config(args, "retention")
    warehouse = local_warehouse(args.warehouse, "retention")

    from contextlib import nullcontext

    from jobs.runlock import RunLock
    from recsys_spark.retention import apply_retention, folder_bytes

    before = folder_bytes(warehouse)
    with nullcontext() if _under_pipeline(warehouse) else RunLock(warehouse):
        results = apply_retention(warehouse, config)
    for r in results:
        kept = f", kept published version(s) {r.kept_versions}" if r.kept_versions else ""
        print(f"{r.table}: removed {r.files_removed} file(s), {r.bytes_removed / 1e6:.2f} MB{kept}"
              f"{'; old log entries removed' if r.log_cleaned else ''}")
    after = folder_bytes(warehouse)
    print(f"retention ({config.days} days) over {len(results)} tables of {warehouse}: "
          f"{before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
