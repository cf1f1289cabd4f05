"""Chaos: the nightly (`recsys pipeline`) SIGKILLed, whole process group, at seeded random moments spread over all
its steps, re-run after each kill until it completes; then compared with one uninterrupted run on a separate
warehouse (docs/OPERATIONS.md "Chaos").

The kill moments: the steps of the uninterrupted run, each `--kills / steps` times (the remainder to the longest
steps), in plan order; kill i waits for the `step <name>: started` line of its step, or of the first later step
that starts (its step may have finished before the previous kill), and kills after a seeded random fraction
(5-95 %) of that step's uninterrupted time. After the last kill the run is repeated until it exits 0.

Compared: the Delta tables present, each table's rows (rows lost: fewer than the reference), duplicate
(model, run_date, userId, rank) in recommendations and duplicate (model, run_date, split, metric, k) in metrics,
the deterministic models' lists (identical rows), `_staging-*` folders and the run lock left behind.

Everything goes to `--work` (data, both warehouses) and the figures to `--work`/chaos.json as they are made: a second
invocation with the same --work carries on (the reference and the kills already done are kept).

    nice -n 10 python benchmarks/chaos_nightly.py --work /tmp/chaos --kills 20
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from recsys_core import catalogue  # noqa: E402

RUN_DATE = "2026-11-23"
# Lists that depend on nothing random: the same input gives the same rows (ALS is seeded, but its result depends on
# Spark's partitioning of the run, so it is compared by rows only).
DETERMINISTIC = tuple(catalogue.names(catalogue.BASELINE))
STARTED = re.compile(r"step (\S+): started")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="folder for the data, both warehouses and chaos.json")
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to survive (default 20)")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--users", type=int, default=60)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--ratings", type=int, default=2500)
    p.add_argument("--spark-models", default="popularity,markov,itemcf,ease,als")
    p.add_argument("--torch-models", default="sasrec", help="comma-separated; '' for none")
    p.add_argument("--max-steps", type=int, default=20, help="train.max_steps of the torch models")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one pipeline attempt may take")
    return p.parse_args(argv)


def overrides(args) -> list[str]:
    return [f"pipeline.spark_models=[{args.spark_models}]", f"pipeline.torch_models=[{args.torch_models}]",
            "pipeline.k=20", "sequences.max_len=50", f"train.max_steps={args.max_steps}", "train.eval_every=10",
            "train.device=cpu", "als.rank=4", "als.max_iter=2", "retention.days=0"]


def pipeline_command(args, data: Path, warehouse: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(data), "--warehouse", str(warehouse),
            "--reports", str(warehouse.parent / f"reports-{warehouse.name}"), "--run-date", RUN_DATE,
            *overrides(args)]


def attempt(cmd: list[str], log: Path, kill_steps: dict[str, float] | None = None, timeout: float = 3600) -> dict:
    """One pipeline run in its own process group; with `kill_steps` (step -> seconds), SIGKILL the group that many
    seconds after the first of those steps starts. {"exit": code, "seconds", "killed": bool, "killed_in",
    "steps_started": [...]}."""
    kill_steps = kill_steps or {}
    env = {**os.environ, "RECSYS_DELTA_WRITER": os.environ.get("RECSYS_DELTA_WRITER", "delta-rs")}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    started, target, killed_in = [], threading.Event(), []

    def read():
        with open(log, "a") as out:
            for line in proc.stdout:
                out.write(line)
                found = STARTED.search(line)
                if found:
                    started.append(found[1])
                    if found[1] in kill_steps and not target.is_set():
                        killed_in.append(found[1])
                        target.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    while proc.poll() is None and time.monotonic() - start < timeout:
        if kill_steps and target.wait(0.2):
            time.sleep(kill_steps[killed_in[0]])
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            break
        if not kill_steps:
            time.sleep(0.2)
    if proc.poll() is None and not killed:  # over the timeout
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    try:  # the group's other members (a JVM, torchrun's workers) die with it; wait until none is left
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return {"exit": proc.returncode, "seconds": round(time.monotonic() - start, 2), "killed": killed,
            "killed_in": killed_in[0] if killed else None, "steps_started": started}


def step_seconds(warehouse: Path) -> dict[str, float]:
    """The uninterrupted run's steps that ran, and their seconds (its run.jsonl)."""
    lines = (warehouse / "_pipeline" / RUN_DATE / "run.jsonl").read_text().splitlines()
    return {e["step"]: e["seconds"] for e in map(json.loads, lines) if e["status"] == "ran"}


def kill_targets(seconds: dict[str, float], kills: int, seed: int) -> list[tuple[str, float]]:
    """(step, fraction of its time) for each kill: every step `kills // steps` times, the remainder to the
    longest, in plan order; the fraction seeded, in [0.05, 0.95]."""
    rng = random.Random(seed)
    names = list(seconds)
    each = {n: kills // len(names) for n in names}
    for name in sorted(names, key=seconds.get, reverse=True)[:kills % len(names)]:
        each[name] += 1
    return [(n, round(rng.uniform(0.05, 0.95), 3)) for n in names for _ in range(each[n])]


def kill_moments(seconds: dict[str, float], step: str, fraction: float) -> dict[str, float]:
    """Step -> seconds after its start: `step` and every later one (the first of them to start is killed)."""
    names = list(seconds)
    return {n: round(fraction * seconds[n], 2) for n in names[names.index(step):]}


# --- the comparison -------------------------------------------------------------------------------------------

def duplicates(table, keys: list[str]) -> int:
    """Rows beyond the first of each key."""
    if table.num_rows == 0:
        return 0
    grouped = table.group_by(keys).aggregate([([], "count_all")])
    return int(sum(c - 1 for c in grouped.column("count_all").to_pylist() if c > 1))


def compare(reference: Path, chaos: Path, deterministic=DETERMINISTIC) -> dict:
    """What the chaos warehouse lacks or has twice, against the reference one."""
    from recsys_spark.delta import read_arrow
    from recsys_spark.retention import delta_tables

    ref_tables = {p.name for p in delta_tables(reference)}
    got_tables = {p.name for p in delta_tables(chaos)}
    rows_lost, rows = 0, {}
    for name in sorted(ref_tables & got_tables):
        ref_n, got_n = read_arrow(reference / name).num_rows, read_arrow(chaos / name).num_rows
        rows[name] = [ref_n, got_n]
        rows_lost += max(0, ref_n - got_n)
    dup_recs = dup_metrics = 0
    differing = []
    if "recommendations" in got_tables:
        recs = read_arrow(chaos / "recommendations")
        dup_recs = duplicates(recs, ["model", "run_date", "userId", "rank"])
        if "recommendations" in ref_tables:
            ref = read_arrow(reference / "recommendations")
            for model in sorted(set(ref.column("model").to_pylist()) & set(deterministic)):
                differing += [model] if _list_rows(ref, model) != _list_rows(recs, model) else []
    if "metrics" in got_tables:
        dup_metrics = duplicates(read_arrow(chaos / "metrics"), ["model", "run_date", "split", "metric", "k"])
    return {"tables_missing": sorted(ref_tables - got_tables), "tables_extra": sorted(got_tables - ref_tables),
            "rows": rows, "rows_lost": rows_lost, "duplicate_recommendations": dup_recs,
            "duplicate_metrics": dup_metrics, "deterministic_lists_differing": differing,
            "deterministic_models_compared": sorted(set(deterministic) & _models(reference)),
            "staging_left": sorted(p.name for p in chaos.glob("_staging-*")),
            "lock_left": (chaos / "_pipeline" / "run.lock").exists()}


def _models(warehouse: Path) -> set[str]:
    from recsys_spark.delta import read_arrow, table_exists

    path = warehouse / "recommendations"
    return set(read_arrow(path, columns=["model"]).column("model").to_pylist()) if table_exists(path) else set()


def _list_rows(table, model: str) -> list[tuple]:
    import pyarrow.compute as pc

    part = table.filter(pc.equal(table.column("model"), model)).select(["userId", "rank", "movieId"])
    return sorted(zip(*(part.column(c).to_pylist() for c in part.column_names)))


# --- the benchmark --------------------------------------------------------------------------------------------

def save_results(results: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)


def kill_runs(args, data: Path, chaos: Path, work: Path, results: dict, results_path: Path) -> None:
    """The killed attempts not made yet: each aimed at a moment of one step of the reference run."""
    targets = kill_targets(results["reference"]["steps"], args.kills, args.seed)
    results.setdefault("attempts", [])
    done = sum(1 for a in results["attempts"] if a["killed"])
    tried = len([a for a in results["attempts"] if "target" in a])
    for step, fraction in targets[tried:]:
        moments = kill_moments(results["reference"]["steps"], step, fraction)
        run = attempt(pipeline_command(args, data, chaos), work / "chaos.log", moments, args.timeout)
        run["target"] = [step, fraction]
        results["attempts"].append(run)
        done += run["killed"]
        save_results(results, results_path)
        what = (f"killed in {run['killed_in']} {moments[run['killed_in']]:.1f}s after its start" if run["killed"]
                else f"not killed (exit {run['exit']})")
        print(f"kill {done}/{args.kills}: aimed at {step} ({fraction:.0%} in) -> {what}, attempt "
              f"{run['seconds']:.0f}s", flush=True)


def rerun_until_complete(args, data: Path, chaos: Path, work: Path, results: dict, results_path: Path) -> None:
    """The same command again, unkilled, until it exits 0 (three failed re-runs: a bug, given up)."""
    while not results["attempts"] or results["attempts"][-1]["exit"] != 0 or results["attempts"][-1]["killed"]:
        run = attempt(pipeline_command(args, data, chaos), work / "chaos.log", timeout=args.timeout)
        results["attempts"].append(run)
        save_results(results, results_path)
        print(f"re-run until complete: exit {run['exit']} in {run['seconds']:.0f}s", flush=True)
        if run["exit"] not in (0, None) and len([a for a in results["attempts"] if "target" not in a]) >= 3:
            print("the run does not complete after the kills: a bug", file=sys.stderr)
            break


def print_summary(s: dict, chaos_seconds: float, reference_seconds: float) -> int:
    """The summary's line and JSON; 1 where the chaos run lost, doubled or left anything."""
    print(f"kills survived {s['kills_survived']}, rows lost {s['rows_lost']}, duplicate recommendations "
          f"{s['duplicate_recommendations']}, duplicate metrics {s['duplicate_metrics']}, deterministic lists "
          f"differing {s['deterministic_lists_differing']}, tables missing {s['tables_missing']}, staging left "
          f"{s['staging_left']}, lock left {s['lock_left']}, extra wall time {s['extra_seconds']:.0f}s "
          f"({chaos_seconds:.0f}s vs {reference_seconds:.0f}s)")
    print(json.dumps(s))
    bad = s["rows_lost"] or s["duplicate_recommendations"] or s["duplicate_metrics"] or \
        s["deterministic_lists_differing"] or s["tables_missing"] or s["staging_left"] or s["lock_left"]
    return 1 if bad else 0


def main(argv=None) -> int:
    args = parse(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "chaos.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.setdefault("conditions", {**{k: v for k, v in vars(args).items() if k != "work"},
                                      "overrides": overrides(args), "run_date": RUN_DATE,
                                      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      "load_at_start": os.getloadavg()[0]})
    data = work / "data"
    if not (data / "ratings.csv").exists():
        from recsys_data.generate import generate

        generate(data, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=args.seed)
    reference, chaos = work / "reference", work / "chaos"
    if "reference" not in results:
        run = attempt(pipeline_command(args, data, reference), work / "reference.log", timeout=args.timeout)
        if run["exit"] != 0:
            print(f"the uninterrupted run failed (exit {run['exit']}); see {work / 'reference.log'}", file=sys.stderr)
            return 1
        results["reference"] = {"seconds": run["seconds"], "steps": step_seconds(reference)}
        save_results(results, results_path)
    print(f"uninterrupted: {results['reference']['seconds']:.0f}s, steps {results['reference']['steps']}")

    kill_runs(args, data, chaos, work, results, results_path)
    rerun_until_complete(args, data, chaos, work, results, results_path)
    chaos_seconds = sum(a["seconds"] for a in results["attempts"])
    results["summary"] = {
        "kills_survived": sum(a["killed"] for a in results["attempts"]) if results["attempts"][-1]["exit"] == 0 else 0,
        "attempts": len(results["attempts"]), "chaos_seconds": round(chaos_seconds, 1),
        "extra_seconds": round(chaos_seconds - results["reference"]["seconds"], 1),
        **compare(reference, chaos), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_end": os.getloadavg()[0]}
    save_results(results, results_path)
    return print_summary(results["summary"], chaos_seconds, results["reference"]["seconds"])


if __name__ == "__main__":
    sys.exit(main())
