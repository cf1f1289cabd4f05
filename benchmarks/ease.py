"""EASE benchmark: the phases of fitting EASE and writing every user's top-N, on a generated large set.

    .venv/bin/python benchmarks/ease.py [--ratings 25000095] [--users 162541] [--items 59047] [--max-items 10000]
    .venv/bin/python benchmarks/ease.py --ml-small        # ml-latest-small instead of generated data

Generates MovieLens-shaped CSVs once and runs the real ETL once (both cached, shared with markov.py / itemcf.py
when --cache and --warehouse agree), then times the phases of recsys_spark.baselines.ease with the given settings
(conf/baselines.yaml defaults: the 10,000 most-rated items, l2 50): the kept items (Spark), the Gram matrix X^T X
(Spark block product, collected into a dense matrix on the driver), the closed-form solve (numpy/scipy on the
driver), and every user's scores ranked over popularity padding on the executors (B broadcast, a block of users
at a time) and written to `recommendations` (Spark). Prints per phase: wall seconds, and the peak
resident memory of the Python driver, of the Spark JVM (driver + executors in local mode) and of the whole process
tree (driver, JVM and Spark's Python workers summed, sampled every 0.2 s), each reset at the phase's start.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

from _measure import jvm_peak_rss_gb, peak_rss_gb, reset_jvm_peak_rss, reset_peak_rss  # noqa: E402
from _spark_bench import add_data_args, add_spark_args, spark_over_etl  # noqa: E402


def tree_rss_bytes(root: int) -> int:
    """Summed resident memory of process `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class TreeRss:
    """The largest summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def reset(self) -> None:
        self.peak = tree_rss_bytes(os.getpid())

    def peak_gb(self) -> float:
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
        return self.peak / 2**30


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--max-items", type=int, default=10_000, help="baselines.ease.max_items")
    p.add_argument("--l2", type=float, default=50.0, help="baselines.ease.l2")
    p.add_argument("--k", type=int, default=100, help="list length per user")
    add_spark_args(p)
    args = p.parse_args()

    from recsys_spark.baselines import BaselinesConfig, TrainTables
    from recsys_spark.baselines.ease import ease_weights, gram_matrix, kept_items, recommend_ease
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.recommendations import write_recommendations

    spark, warehouse, name = spark_over_etl(args, "ease")
    config = BaselinesConfig.from_dict({"ease": {"max_items": args.max_items, "l2": args.l2}})
    tables = TrainTables.open(spark, warehouse, config)
    n_train = tables.interactions.where("split = 'train'").count()
    print(f"{name}: {n_train:,} train interactions, max_items {args.max_items}, l2 {args.l2}, top-{args.k}, "
          f"local[{args.threads}], driver memory {args.driver_memory}; load average before: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    tree = TreeRss()
    figures: dict[str, float] = {}

    def phase(label: str, work):
        reset_peak_rss("self")
        jvm_reset = reset_jvm_peak_rss(spark)
        tree.reset()
        started = time.perf_counter()
        out = work()
        seconds = time.perf_counter() - started
        figures[label] = seconds
        jvm = "JVM peak" if jvm_reset else "JVM peak since start"
        print(f"{label}: {seconds:8.1f} s  Python driver peak {peak_rss_gb('self'):.2f} GB  {jvm} "
              f"{jvm_peak_rss_gb(spark):.2f} GB  process tree peak {tree.peak_gb():.2f} GB  "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        return out

    kept = phase("kept items", lambda: kept_items(tables.interactions, args.max_items))
    G = phase(f"Gram ({len(kept):,} items)", lambda: gram_matrix(tables.interactions, kept))
    B = phase("solve", lambda: ease_weights(G, args.l2))
    del G
    ranked = recommend_ease(tables.interactions, (kept, B), tables.popularity, args.k, tables.ties,
                            tables.users_as_of())
    phase(f"every user scored, top-{args.k} ranked (executors, B broadcast) and written",
          lambda: write_recommendations(ranked, warehouse, "ease", dt.date(2030, 1, 1), "bench", tables.items,
                                        tables.users))
    del B
    rows = read_table(spark, table_path(warehouse, "recommendations")).where("model = 'ease'").count()
    print(f"total: {sum(figures.values()):.1f} s; {rows:,} rows written")
    tables.close()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
