"""The whole nightly at a given size, run as scripts/demo.sh runs it: wall time, peak memory and rows of every step.

    .venv/bin/python benchmarks/nightly.py --ratings 25000095 --out benchmarks/results/nightly-25m.json
    .venv/bin/python benchmarks/nightly.py --data data/ml-25m --out benchmarks/results/nightly-25m.json
    .venv/bin/python benchmarks/nightly.py --ratings 1000000 --out benchmarks/results/nightly-1m.json

Without --data it generates a MovieLens-shaped set of --ratings ratings (`recsys generate`, cached under --cache): at
ML-25M's 154 ratings per user, with the catalogue growing as the square root of the ratings (59,047 movies at 25M),
unless --users / --items say otherwise. It then runs `recsys pipeline` with demo.sh's own overrides for that file
(read from scripts/demo.sh, so the two cannot drift apart: DEMO, and DEMO_LARGE above its LARGE_BYTES) and any
key=value given after the flags.

Per step it records the seconds and status from the run log (<warehouse>/_pipeline/<run_date>/run.jsonl), the rows
the step wrote where the run log has them, and the peak resident memory of the step's whole process tree (the job's
Python, its JVM, torchrun's workers), sampled here every --sample-seconds from /proc and attributed to a step by the
RECSYS_STEP_NAME every process of a step inherits. The JSON (--out) is rewritten after every step: a run cut short
leaves its figures, and re-running on the same warehouse resumes the pipeline where it stopped, keeping the figures
of the steps the earlier run completed (marked "earlier_run": true).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine  # noqa: E402

STEP_ENV = "RECSYS_STEP_NAME"  # jobs/tracking.py: every process of a step carries its name
ML25M = {"ratings": 25_000_095, "users": 162_541, "items": 59_047}
PAGE = os.sysconf("SC_PAGE_SIZE")


def demo_overrides(ratings_csv: Path | None = None, script: Path = REPO / "scripts" / "demo.sh") -> list[str]:
    """The key=value overrides scripts/demo.sh passes to `recsys pipeline` for this ratings.csv: its DEMO=(…) array,
    and DEMO_LARGE=(…) after it when the file is over the script's LARGE_BYTES (the same rule the script applies)."""
    text = script.read_text()

    def array(name: str) -> list[str]:
        found = re.search(rf"^{name}=\(([^)]*)\)\s*$", text, re.MULTILINE)  # may span lines
        if not found:
            raise SystemExit(f"error: {script} has no {name}=(...) line to take the demo's overrides from")
        return shlex.split(found.group(1))

    overrides = array("DEMO")
    large = re.search(r"^LARGE_BYTES=(\d+)\s*$", text, re.MULTILINE)
    if ratings_csv is not None and large and ratings_csv.stat().st_size > int(large.group(1)):
        overrides += array("DEMO_LARGE")
    return overrides


def sized(ratings: int, users: int | None, items: int | None) -> dict[str, int]:
    """ML-25M's shape at another size: ratings per user kept, movies growing as the square root of the ratings."""
    users = users or max(20, round(ratings * ML25M["users"] / ML25M["ratings"]))
    items = items or max(100, round(ML25M["items"] * min(1.0, math.sqrt(ratings / ML25M["ratings"]))))
    return {"ratings": ratings, "users": users, "items": items}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def step_rss_bytes(root: int) -> dict[str, int]:
    """Resident bytes per step name, summed over every process below `root` that carries RECSYS_STEP_NAME."""
    tree, todo, by_step = _children(), list(_children().get(root, [])), {}
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # ended between the listing and the read
        name = next((e.split(b"=", 1)[1].decode() for e in environ if e.startswith(STEP_ENV.encode() + b"=")), None)
        if name:
            by_step[name] = by_step.get(name, 0) + rss
    return by_step


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))


def input_data(args) -> tuple[Path, dict[str, int | None]]:
    if args.data:
        data = Path(args.data)
        if not (data / "ratings.csv").is_file():
            raise SystemExit(f"error: --data {data}: no ratings.csv there")
        return data, {"ratings": count_lines(data / "ratings.csv") - 1, "users": None, "items": None}
    size = sized(args.ratings, args.users, args.items)
    data = Path(args.cache) / f"{size['users']}u-{size['items']}i-{size['ratings']}r"
    if not (data / "ratings.csv").is_file():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", "generate", "--out", str(data), "--users",
                        str(size["users"]), "--items", str(size["items"]), "--ratings", str(size["ratings"]),
                        "--seed", "7"], cwd=REPO, check=True)
        print(f"generated {data.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return data, size


def earlier_steps(out: Path, warehouse: Path) -> dict[str, dict]:
    """The steps a previous run of this benchmark on the same warehouse completed, by name."""
    if not out.is_file():
        return {}
    try:
        previous = json.loads(out.read_text())
    except json.JSONDecodeError:
        return {}
    if previous.get("warehouse") != str(warehouse):
        return {}
    return {s["step"]: s for s in previous.get("steps", []) if s.get("status") == "ran"}


def entry(line: dict, peaks: dict[str, int], earlier: dict[str, dict], loads: list[float]) -> dict:
    """One step's figures; `loads` are the 1-minute load averages sampled while it ran (the machine's business)."""
    if line["status"] == "skipped" and line["step"] in earlier:
        return {**earlier[line["step"]], "earlier_run": True}
    sampled = peaks.get(line["step"])
    logged = line.get("peak_rss_mb")
    peak_gb = sampled / 2**30 if sampled else (logged / 1024 if logged else None)
    return {"step": line["step"], "status": line["status"], "seconds": line["seconds"],
            "peak_rss_gb": None if peak_gb is None else round(peak_gb, 3), "rows": line.get("rows"),
            "load_mean": round(sum(loads) / len(loads), 2) if loads else None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=int, default=ML25M["ratings"], help="size of the generated set")
    p.add_argument("--users", type=int, help="default: ML-25M's ratings per user")
    p.add_argument("--items", type=int, help="default: 59,047 x sqrt(ratings / 25M)")
    p.add_argument("--data", help="take this MovieLens folder instead of generating one")
    p.add_argument("--cache", default=str(REPO / ".bench" / "nightly" / "data"))
    p.add_argument("--warehouse", help="default .bench/nightly/<data>/warehouse (re-use it to resume)")
    p.add_argument("--run-date", default=dt.date.today().isoformat())
    p.add_argument("--out", required=True, help="the JSON figures, rewritten after every step")
    p.add_argument("--sample-seconds", type=float, default=0.5)
    p.add_argument("--no-demo-overrides", action="store_true", help="the pipeline's defaults, not demo.sh's")
    p.add_argument("overrides", nargs="*", help="key=value for `recsys pipeline`, after demo.sh's")
    return p.parse_args(argv)


class Figures:
    """The run's figures, rewritten to --out (atomically) whenever a step's line is added."""

    def __init__(self, out: Path, **fields):
        self.out = out
        self.data = {**fields, "steps": [], "total_seconds": 0.0, "complete": False}

    def write(self) -> None:
        self.data["total_seconds"] = round(sum(s["seconds"] or 0 for s in self.data["steps"]), 1)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.out)


def watch(proc: subprocess.Popen, run_log: Path, figures: Figures, earlier: dict, sample_seconds: float) -> None:
    """Until the pipeline exits: sample each step's process-tree memory and the load, and add each new run-log
    line (a step that ended) to the figures."""
    seen_lines = count_lines(run_log) if run_log.is_file() else 0  # an earlier run's lines: not this run's
    peaks: dict[str, int] = {}
    loads: list[float] = []
    while True:
        for name, rss in step_rss_bytes(proc.pid).items():
            peaks[name] = max(peaks.get(name, 0), rss)
        loads.append(os.getloadavg()[0])
        if run_log.is_file():
            lines = run_log.read_text().splitlines()
            for raw in lines[seen_lines:]:
                figures.data["steps"].append(entry(json.loads(raw), peaks, earlier, loads))
                loads = []
                figures.write()
            seen_lines = len(lines)
        if proc.poll() is not None:
            return
        time.sleep(sample_seconds)


def print_table(figures: dict, out: Path) -> None:
    print(f"\n{'step':<24}{'status':>9}{'seconds':>10}{'peak GB':>9}{'rows':>13}{'load':>6}")
    for s in figures["steps"]:
        peak = "-" if s["peak_rss_gb"] is None else f"{s['peak_rss_gb']:.2f}"
        rows = "-" if s.get("rows") is None else f"{s['rows']:,}"
        load = "-" if s.get("load_mean") is None else f"{s['load_mean']:.1f}"
        print(f"{s['step']:<24}{s['status']:>9}{s['seconds']:>10.1f}{peak:>9}{rows:>13}{load:>6}"
              + ("  (earlier run)" if s.get("earlier_run") else ""))
    print(f"{'total':<24}{'':>9}{figures['total_seconds']:>10.1f}   wall {figures['wall_seconds']:.0f} s, "
          f"exit {figures['exit_code']}; figures in {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, size = input_data(args)
    warehouse = Path(args.warehouse or REPO / ".bench" / "nightly" / data.name / "warehouse").resolve()
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    overrides = ([] if args.no_demo_overrides else demo_overrides(data / "ratings.csv")) + list(args.overrides)
    cmd = [sys.executable, "-m", "jobs.cli", "pipeline", "--data", str(data.resolve()), "--warehouse",
           str(warehouse), "--reports", str(warehouse.parent / "reports"), "--run-date", args.run_date, *overrides]
    run_log = warehouse / "_pipeline" / args.run_date / "run.jsonl"
    earlier = earlier_steps(out, warehouse)
    figures = Figures(out, ratings=size["ratings"], users=size["users"], items=size["items"], data=str(data),
                      warehouse=str(warehouse), run_date=args.run_date, overrides=overrides, command=shlex.join(cmd),
                      machine=machine(), load_before=os.getloadavg()[0],
                      started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    print("$ " + figures.data["command"], flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO)
    watch(proc, run_log, figures, earlier, args.sample_seconds)
    figures.data.update(exit_code=proc.returncode, wall_seconds=round(time.monotonic() - started, 1),
                        complete=proc.returncode == 0)
    etl = warehouse / "etl_report.json"
    if etl.is_file():  # the users and movies the load kept (given data has no size of its own)
        loaded = json.loads(etl.read_text()).get("tables") or {}
        figures.data["users"] = figures.data["users"] or loaded.get("users")
        figures.data["items"] = figures.data["items"] or loaded.get("items")
    figures.write()
    print_table(figures.data, out)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
