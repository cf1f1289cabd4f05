"""`recsys publish --warehouse DIR --run-date D`: the nightly's last step. Gates each configured model's list of D
(a failed step, or NDCG@10 below the last published list's beyond its paired interval: not published, its last
published list stays served) and commits one row to the `runs` table naming the version of every table: the
snapshot `recsys serve`, the report and the notebooks read (recsys_spark/publish.py, docs/OPERATIONS.md)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script (`python jobs/publish.py`): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import add_config_flags, guarded, job_config, parse_run_date, require_tables  # noqa: E402
from jobs.config import build_section  # noqa: E402
from jobs.executor import run_dir  # noqa: E402
from jobs.plan import PipelineConfig, Run, loaded_features, plan  # noqa: E402


def failed_models(warehouse: Path, run_date: dt.date, pipe: PipelineConfig) -> dict[str, str]:
    """model -> why it has no list tonight, from the latest run's lines in <run_date>/run.jsonl: a step that wrote
    its list failed, or did not run because a step it needs failed. No run log (run by hand): none failed."""
    path = run_dir(warehouse, run_date) / "run.jsonl"
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return {}
    latest = max(line["run_started"] for line in lines)
    steps = {step.name: step for step in plan(pipe, Run("", str(warehouse), run_date.isoformat(), "local"))}
    failed = {}
    for line in lines:
        step = steps.get(line["step"])
        if line["run_started"] != latest or step is None or line["status"] not in ("failed", "not run"):
            continue
        for model in step.lists_of:
            failed[model] = f"its step {line.get('blocked_by') or line['step']} failed"
    return failed


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys publish", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse directory")
    parser.add_argument("--run-date", help="the run date to publish (default: today)")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    from recsys_spark.publish import publish

    cfg, config = job_config(args, "publish", "pipeline")
    pipe = build_section(cfg, "pipeline")
    run_date = parse_run_date(args.run_date)
    require_tables(args.warehouse, "interactions", "recommendations")
    from recsys_core import storage

    warehouse = Path(storage.local_path(args.warehouse))
    pipe, _ = pipe.for_input(loaded_features(warehouse))  # a model the plan left out is not held back: it never ran
    models = [m.name for m in pipe.models()]
    run = publish(warehouse, run_date, models, failed_models(warehouse, run_date, pipe), config)
    print(f"published run {run.run_id} (runs version {run.version}): {len(run.tables)} tables")
    for line in decision_lines(run):
        print(line)
    return 0


def decision_lines(run) -> list[str]:
    """The gate's decision per model, one line each (what `recsys pipeline` prints at the end too)."""
    return [f"{'published' if m.published else 'HELD BACK':>9}  {m.model:<14} {m.reason}" for m in run.models]


if __name__ == "__main__":
    from jobs.common import exit_now

    exit_now(main())  # a published night must not turn into a failed step at interpreter shutdown
