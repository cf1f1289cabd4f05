"""A finished job exits 0, though Arrow can abort a process at interpreter shutdown after a delta-rs read.

On this stack (pyarrow 26, deltalake 1.6.6) a script that reads a partitioned Delta table through delta-rs' own
reader and then returns normally aborted ("terminate called without an active exception", exit -6;
apache/arrow#34314, delta-rs#2184) in 2 of 20 runs here (docs/PINS.md). The jobs leave through
`jobs.common.exit_now`, which skips that shutdown; twenty runs of a read followed by it must all exit 0."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
RUNS = 20
READ_THEN_EXIT = """
import sys
import pyarrow.compute as pc
from recsys_spark.delta import read_arrow
from jobs.common import exit_now
rows = read_arrow(sys.argv[1], columns=["userId"], filters=pc.field("model") == "a")
print(rows.num_rows)
exit_now(0)
"""


def test_a_job_that_read_through_delta_rs_exits_0_every_time(tmp_path):
    from recsys_spark.delta import write_arrow

    table = str(tmp_path / "recommendations")
    write_arrow(pa.table({"model": ["a", "b", "a"], "run_date": [dt.date(2026, 1, 1)] * 3, "userId": [1, 2, 3]}),
                table, partition_by=["model", "run_date"])

    def run(_):
        return subprocess.run([sys.executable, "-c", READ_THEN_EXIT, table], cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(RUNS)))
    failed = [(r.returncode, r.stderr[-300:]) for r in results if r.returncode != 0 or r.stdout.strip() != "2"]
    assert not failed, f"{len(failed)} of {RUNS} runs did not exit 0 with the rows read: {failed[:3]}"
