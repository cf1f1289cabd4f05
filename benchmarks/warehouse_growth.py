"""Warehouse size after consecutive nightly runs (`recsys pipeline`, one --run-date a night, --force: every step
rewrites its tables as a night with a new load does), without and with retention (docs/OPERATIONS.md "Retention").

One warehouse serves both figures. The nightly runs with `retention.days` so large that its retention step removes
nothing (the "without" figure: every night's files stay). After each night the "with" figure is what a retention of
`--days` would leave: the warehouse's bytes less the bytes delta-rs's vacuum would remove (a dry run with
`keep_versions` of the published versions, exactly what the retention step removes), measured without removing them,
so both figures come from the same nights. At the end a real `recsys retention` checks the last prediction.

With --days 0 (the default here, since the nights run minutes apart, not days) "with" keeps each table's current
version; with the shipped 7 days on a real schedule the warehouse levels off at about 8 nights of files instead.

    nice -n 10 python benchmarks/warehouse_growth.py --work /tmp/growth --nights 7
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="folder for the data, the warehouse and growth.json")
    p.add_argument("--nights", type=int, default=7)
    p.add_argument("--days", type=int, default=0, help="the retention window the 'with' figure uses")
    p.add_argument("--users", type=int, default=60)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--ratings", type=int, default=2500)
    p.add_argument("--spark-models", default="popularity,markov")
    p.add_argument("--first-date", default="2026-11-23")
    return p.parse_args(argv)


def removable_bytes(warehouse: Path, days: int) -> int:
    """What a retention of `days` would remove now (a dry run of the very vacuum the retention step makes)."""
    import deltalake

    from recsys_spark.retention import delta_tables, published_versions

    protected, total = published_versions(warehouse), 0
    for path in delta_tables(warehouse):
        table = deltalake.DeltaTable(str(path))
        keep = sorted(protected.get(path.name, ())) or None
        names = table.vacuum(retention_hours=days * 24, dry_run=True, enforce_retention_duration=False, full=True,
                             keep_versions=keep)
        total += sum(p.stat().st_size for p in (Path(n) if Path(n).is_absolute() else path / n for n in names)
                     if p.is_file())
    return total


def delta_bytes_at(warehouse: Path, until_ms: int) -> tuple[int, int]:
    """(every data file the Delta tables' commits up to `until_ms` added, the files their versions then read): the
    tables' bytes without any vacuum, and what a vacuum keeping only the current versions leaves (log files aside),
    replayed from the logs' add/remove actions."""
    from recsys_spark.retention import delta_tables

    added = current = 0
    for table in delta_tables(warehouse):
        live: dict[str, int] = {}
        for log in sorted((table / "_delta_log").glob("*.json")):
            actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            stamp = next((a["commitInfo"].get("timestamp") for a in actions if "commitInfo" in a), None)
            if stamp is not None and stamp > until_ms:
                break
            for action in actions:
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]["size"]
                    added += action["add"]["size"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
        current += sum(live.values())
    return added, current


def night_end_ms(warehouse: Path, run_date: str) -> int:
    lines = (warehouse / "_pipeline" / run_date / "run.jsonl").read_text().splitlines()
    return int(dt.datetime.fromisoformat(json.loads(lines[-1])["at"]).timestamp() * 1000) + 999


def run_night(args, data: Path, warehouse: Path, work: Path, run_date: dt.date) -> subprocess.CompletedProcess:
    """One night's `recsys pipeline` (forced, the given Spark models only, nothing removed by retention)."""
    return subprocess.run([sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(data), "--warehouse",
                           str(warehouse), "--reports", str(work / "reports"), "--run-date", str(run_date),
                           "--force", f"pipeline.spark_models=[{args.spark_models}]", "pipeline.torch_models=[]",
                           "pipeline.k=20", "retention.days=36500"],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "RECSYS_DELTA_WRITER": os.environ.get("RECSYS_DELTA_WRITER",
                                                                                   "delta-rs")})


def replay_delta_bytes(warehouse: Path, results: dict, out: Path) -> None:
    """Each night's Delta data bytes, without retention and with (current versions only), replayed from the logs."""
    print("Delta tables only (data files, replayed from the logs): night, without retention, with (current "
          "versions only)")
    for night in results["nights"]:
        added, current = delta_bytes_at(warehouse, night_end_ms(warehouse, night["run_date"]))
        night["delta_without_bytes"], night["delta_with_bytes"] = added, current
        print(f"  night {night['night']}: {added / 1e3:.0f} kB, {current / 1e3:.0f} kB")
    out.write_text(json.dumps(results, indent=2))


def main(argv=None) -> int:
    from recsys_spark.retention import folder_bytes

    args = parse(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = work / "growth.json"
    results = json.loads(out.read_text()) if out.exists() else {"conditions": {
        **{k: v for k, v in vars(args).items() if k != "work"}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_at_start": os.getloadavg()[0]}, "nights": []}
    data, warehouse = work / "data", work / "warehouse"
    if not (data / "ratings.csv").exists():
        from recsys_data.generate import generate

        generate(data, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=7)
    first = dt.date.fromisoformat(args.first_date)
    for night in range(len(results["nights"]), args.nights):
        run_date = first + dt.timedelta(days=night)
        start = time.monotonic()
        proc = run_night(args, data, warehouse, work, run_date)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return 1
        tables = warehouse  # the Delta tables, _pipeline and the MLflow store: everything the night left
        size = folder_bytes(tables)
        removable = removable_bytes(warehouse, args.days)
        results["nights"].append({"night": night + 1, "run_date": str(run_date), "seconds": round(time.monotonic()
                                  - start, 1), "without_bytes": size, "with_bytes": size - removable})
        out.write_text(json.dumps(results, indent=2))
        print(f"night {night + 1} ({run_date}): without retention {size / 1e6:.2f} MB, with retention "
              f"({args.days} days) {(size - removable) / 1e6:.2f} MB", flush=True)
    if "after_retention_bytes" not in results:
        proc = subprocess.run([sys.executable, "-m", "jobs.cli", "retention", "--warehouse", str(warehouse),
                               f"retention.days={args.days}"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        results["after_retention_bytes"] = folder_bytes(warehouse)
        results["conditions"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        results["conditions"]["load_at_end"] = os.getloadavg()[0]
        out.write_text(json.dumps(results, indent=2))
    replay_delta_bytes(warehouse, results, out)
    last = results["nights"][-1]
    print(f"after {len(results['nights'])} nights: without retention {last['without_bytes'] / 1e6:.2f} MB, with "
          f"{last['with_bytes'] / 1e6:.2f} MB predicted, {results['after_retention_bytes'] / 1e6:.2f} MB after a "
          f"real `recsys retention retention.days={args.days}`")
    print(json.dumps({"without_bytes": last["without_bytes"], "with_bytes": last["with_bytes"],
                      "after_retention_bytes": results["after_retention_bytes"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
