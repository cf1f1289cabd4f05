"""The figures of benchmarks/nightly.py runs as Markdown tables, and a plot of how each step grows with the data.

    .venv/bin/python benchmarks/nightly_table.py benchmarks/results/nightly-25m.json
    .venv/bin/python benchmarks/nightly_table.py benchmarks/results/nightly-{1m,5m,25m}.json --plot docs/img/nightly-growth.png

One file: every step with its seconds, peak RSS of its process tree, rows and the load average while it ran, then
the total. Several files: the growth table, one column of seconds per size (ratings), the largest size's peak RSS
and each step's growth exponent b (seconds ~ ratings^b from the smallest size to the largest: 1 is linear), and with
--plot a log-log plot of each step's seconds against the ratings, with the linear and the users × items slopes drawn
for reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


REQUIRED = {"ratings", "steps", "total_seconds"}  # what benchmarks/nightly.py writes and the tables read


def load(path: str) -> dict:
    """A file benchmarks/nightly.py wrote; anything else is one line naming the file and what is wrong."""
    try:
        run = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"error: {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    missing = sorted(REQUIRED - set(run)) if isinstance(run, dict) else sorted(REQUIRED)
    if missing:
        raise SystemExit(f"error: {path}: not a benchmarks/nightly.py result (no {', '.join(missing)})")
    return run


def seconds(run: dict) -> dict[str, float]:
    return {s["step"]: s["seconds"] for s in run["steps"] if s.get("status") == "ran"}


def one_run(run: dict) -> str:
    lines = [f"{run['ratings']:,} ratings, {run['users']:,} users, {run['items']:,} movies; started "
             f"{run['started']}; overrides `{' '.join(run['overrides'])}`", "",
             "| step | seconds | peak RSS (GB) | rows written | load average |", "|---|---:|---:|---:|---:|"]
    for s in run["steps"]:
        peak = "–" if s.get("peak_rss_gb") is None else f"{s['peak_rss_gb']:.2f}"
        rows = "–" if s.get("rows") is None else f"{s['rows']:,}"
        load_ = "–" if s.get("load_mean") is None else f"{s['load_mean']:.1f}"
        status = "" if s["status"] == "ran" else f" ({s['status']})"
        lines.append(f"| {s['step']}{status} | {s['seconds']:,.0f} | {peak} | {rows} | {load_} |")
    peaks = [s["peak_rss_gb"] for s in run["steps"] if s.get("peak_rss_gb") is not None]
    lines.append(f"| **total** | **{run['total_seconds']:,.0f}** ({run['total_seconds'] / 3600:.2f} h) | "
                 f"**{max(peaks, default=0):.2f}** (largest step) | | |")
    return "\n".join(lines)


def exponent(sizes: list[int], times: list[float]) -> float | None:
    """b in seconds ~ ratings^b between the smallest and largest size: 1 is linear, below 1 sublinear."""
    import math

    if len(sizes) < 2 or min(times) <= 0 or sizes[0] == sizes[-1]:
        return None
    return math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])


def growth(runs: list[dict]) -> str:
    """One column of seconds per size, the largest size's peak RSS, and each step's growth exponent from the
    smallest size to the largest."""
    runs = sorted(runs, key=lambda r: r["ratings"])
    steps = list(dict.fromkeys(s["step"] for r in runs for s in r["steps"]))
    per = [seconds(r) for r in runs]
    largest = {s["step"]: s.get("peak_rss_gb") for s in runs[-1]["steps"]}
    sizes = [f"{r['ratings'] / 1e6:.3g}M" for r in runs]
    head = ("| step | " + " | ".join(f"{size} ratings (s)" for size in sizes)
            + f" | peak RSS at {sizes[-1]} (GB) | growth exponent |")
    lines = [head, "|---|" + "---:|" * (len(runs) + 2)]

    def row(times: list[float | None], peak: float | None) -> list[str]:
        present = [(r["ratings"], t) for r, t in zip(runs, times) if t is not None]
        b = exponent([n for n, _ in present], [t for _, t in present])
        return (["–" if t is None else f"{t:,.0f}" for t in times] + ["–" if peak is None else f"{peak:.2f}"]
                + ["–" if b is None else f"{b:.2f}"])

    for step in steps:
        lines.append(f"| {step} | " + " | ".join(row([p.get(step) for p in per], largest.get(step))) + " |")
    peaks = [v for v in largest.values() if v is not None]
    totals = row([sum(p.values()) for p in per], max(peaks) if peaks else None)
    lines.append("| **total** | " + " | ".join(f"**{c}**" for c in totals) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(runs, key=lambda r: r["ratings"])
    ratings = [r["ratings"] for r in runs]
    per = [seconds(r) for r in runs]
    figure, axis = plt.subplots(figsize=(9, 6))
    colours = plt.get_cmap("tab20")
    for i, step in enumerate(dict.fromkeys(s for p in per for s in p)):
        xs = [n for n, p in zip(ratings, per) if step in p]
        if len(xs) > 1:
            axis.plot(xs, [p[step] for p in per if step in p], marker="os^D"[i % 4], color=colours(i % 20),
                      label=step)
    low, high = min(ratings), max(ratings)
    axis.plot([low, high], [10, 10 * high / low], "k--", linewidth=1, label="linear (slope 1)")
    # a full ranking scores users x items: both grow with the ratings in the generator (items as its square root)
    axis.plot([low, high], [10, 10 * (high / low) ** 1.5], "k:", linewidth=1, label="users x items (slope 1.5)")
    axis.set(xscale="log", yscale="log", xlabel="ratings", ylabel="seconds", title="nightly step time vs data size")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="JSON files benchmarks/nightly.py wrote")
    p.add_argument("--plot", help="write the growth plot here (PNG)")
    args = p.parse_args()
    runs = [load(f) for f in args.files]
    print(one_run(runs[0]) if len(runs) == 1 else growth(runs))
    if args.plot:
        plot(runs, Path(args.plot))
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
