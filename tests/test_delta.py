import datetime as dt

import deltalake

from recsys_spark.delta import read_arrow, read_table, table_version, write_table


def test_write_read_roundtrip_and_partition_replace(spark, tmp_path):
    path = str(tmp_path / "recommendations")
    day = dt.date(2026, 11, 23)
    rows = [("als", day, 1, 1, 10, 0.9), ("als", day, 1, 2, 11, 0.8), ("popularity", day, 1, 1, 12, 5.0)]
    cols = "model string, run_date date, userId long, rank int, movieId long, score double"
    write_table(spark.createDataFrame(rows, cols), path, partition_by=["model", "run_date"])
    assert deltalake.DeltaTable(path).version() == 0

    again = spark.createDataFrame([("als", day, 1, 1, 99, 1.0)], cols)
    write_table(again, path, partition_by=["model", "run_date"], replace={"model": "als", "run_date": day})

    now = read_table(spark, path)
    assert now.count() == 2
    assert sorted(r.movieId for r in now.collect()) == [12, 99]
    assert dict(now.dtypes)["run_date"] == "date"
    assert read_table(spark, path, version=0).count() == 3
    assert table_version(path) == 1
    arrow = read_arrow(path)
    assert arrow.num_rows == 2 and set(arrow.column_names) >= {"model", "run_date", "movieId"}


def test_overwrite_whole_table_changes_schema(spark, tmp_path):
    path = str(tmp_path / "t")
    write_table(spark.createDataFrame([(1,)], "a long"), path)
    write_table(spark.createDataFrame([(1, "x")], "a long, b string"), path)
    assert read_table(spark, path).columns == ["a", "b"]


def test_missing_table_is_a_clear_error(spark, tmp_path):
    import pytest

    from recsys_spark.errors import RecsysError

    with pytest.raises(RecsysError, match="Delta table not found"):
        read_table(spark, str(tmp_path / "nope"))


def test_empty_table_keeps_its_schema(spark, tmp_path):
    path = str(tmp_path / "rejects")
    write_table(spark.createDataFrame([], "file string, line long, tags array<string>"), path)
    empty = read_arrow(path)
    assert empty.num_rows == 0 and empty.column_names == ["file", "line", "tags"]
    assert read_table(spark, path).count() == 0


def test_tables_read_through_a_symlinked_warehouse(spark, tmp_path):
    # e.g. /data/warehouse -> /mnt/disk2/warehouse: delta-rs hands back resolved file paths, partitions included.
    real = tmp_path / "disk2" / "warehouse"
    cols = "model string, userId long, score double"
    write_table(spark.createDataFrame([("als", 1, 0.5), ("ar2", 2, 0.25)], cols), str(real / "t"),
                partition_by=["model"])
    link = tmp_path / "warehouse"
    link.symlink_to(real, target_is_directory=True)
    rows = sorted((r.model, r.userId) for r in read_table(spark, str(link / "t")).collect())
    assert rows == [("als", 1), ("ar2", 2)]
    assert read_arrow(str(link / "t")).num_rows == 2


def test_an_empty_frame_never_replaces_a_partition(spark, tmp_path):
    import pytest

    from recsys_spark.delta import EmptyPartitionError, write_arrow
    from recsys_torch.tables import EmptyPartitionError as TorchEmptyPartitionError
    from recsys_torch.tables import read_recommendations, write_recommendations

    day = dt.date(2026, 11, 23)
    cols = "model string, run_id string, run_date date, userId long, rank int, movieId long, score double"
    path = tmp_path / "recommendations"
    write_table(spark.createDataFrame([("als", "r1", day, 1, 1, 10, 0.9)], cols), str(path),
                partition_by=["model", "run_date"])
    empty = spark.createDataFrame([], cols)
    with pytest.raises(EmptyPartitionError, match=r"refusing to replace the \(model=als, run_date=2026-11-23\) "
                                                  r"partition of .*recommendations with no rows"):
        write_table(empty, str(path), partition_by=["model", "run_date"], replace={"model": "als", "run_date": day})
    with pytest.raises(EmptyPartitionError):
        write_arrow(read_arrow(str(path)).slice(0, 0), str(path), partition_by=["model", "run_date"],
                    replace={"model": "als", "run_date": day})
    with pytest.raises(TorchEmptyPartitionError, match="model=als, run_date=2026-11-23"):
        write_recommendations(tmp_path, read_recommendations(tmp_path).slice(0, 0), "als", day)
    assert table_version(str(path)) == 0
    assert [r["movieId"] for r in read_arrow(str(path)).to_pylist()] == [10]
    assert not list(tmp_path.glob("_staging-*"))
    # a non-empty frame still replaces it
    write_table(spark.createDataFrame([("als", "r2", day, 1, 1, 11, 0.8)], cols), str(path),
                partition_by=["model", "run_date"], replace={"model": "als", "run_date": day})
    assert [r["movieId"] for r in read_arrow(str(path)).to_pylist()] == [11]


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from recsys_spark.delta import staging_dir
staging = Path(staging_dir(sys.argv[1]))
staging.mkdir()
(staging / "part-0.parquet").write_bytes(b"half a file")
print(staging, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_staging_left_by_a_killed_writer_is_removed_by_the_next_write(spark, tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from recsys_spark.delta import staging_dir

    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(warehouse / "recommendations")],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    dead = warehouse / killed.stdout.strip().rsplit("/", 1)[-1]
    assert dead.is_dir() and dead.name.startswith("_staging-recommendations-")

    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = Path(staging_dir(warehouse / "items"))
        live = live.with_name(live.name.replace(f"-{os.getpid()}-", f"-{live_writer.pid}-"))
        ours = Path(staging_dir(warehouse / "users"))  # this process's own: a write in progress in another thread
        other_host_fresh = warehouse / "_staging-tags-otherhost-123-0123abcd"
        other_host_old = warehouse / "_staging-tags-otherhost-124-0123abcd"
        old_layout = warehouse / "_staging-rejects-89abcdef"
        for folder in (live, ours, other_host_fresh, other_host_old, old_layout):
            folder.mkdir()
        day_and_a_half = time.time() - 36 * 3600
        for folder in (other_host_old, old_layout):
            os.utime(folder, (day_and_a_half, day_and_a_half))

        write_table(spark.createDataFrame([(1,)], "a long"), str(warehouse / "t"))
        left = sorted(p.name for p in warehouse.glob("_staging-*"))
        assert left == sorted([live.name, ours.name, other_host_fresh.name])
    finally:
        live_writer.kill()
        live_writer.wait()
    assert read_arrow(str(warehouse / "t")).num_rows == 1


def test_a_file_uri_warehouse_is_written_in_place(spark, tmp_path, monkeypatch):
    # Path("file:///x") is the relative folder "file:/x": neither the tables nor their staging may land there.
    from recsys_spark.delta import table_exists, table_path

    monkeypatch.chdir(tmp_path)
    warehouse = f"file://{tmp_path}/wh"
    path = table_path(warehouse, "recommendations")
    assert path == f"file://{tmp_path}/wh/recommendations"
    day = dt.date(2026, 11, 23)
    cols = "model string, run_date date, userId long, rank int, movieId long, score double"
    for model, movie in (("als", 10), ("popularity", 20), ("als", 11)):
        write_table(spark.createDataFrame([(model, day, 1, 1, movie, 1.0)], cols), path,
                    partition_by=["model", "run_date"], replace={"model": model, "run_date": day})
    assert table_exists(path) and table_version(path) == 2
    assert sorted(r.movieId for r in read_table(spark, path).collect()) == [11, 20]
    assert sorted(read_arrow(path).column("movieId").to_pylist()) == [11, 20]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wh"]  # no stray "file:" folder
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == ["recommendations"]  # no staging left behind


def test_the_rows_version_skips_a_vacuum_and_dates_each_write(tmp_path):
    """What evaluate's stale-list check reads: a vacuum commits twice but changes no row."""
    import time

    import pyarrow as pa

    from recsys_spark.delta import rows_version_at

    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, pa.table({"x": [1]}))
    time.sleep(0.01)
    between = int(time.time() * 1000)
    time.sleep(0.01)
    deltalake.write_deltalake(path, pa.table({"x": [2]}), mode="overwrite")
    deltalake.DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    table = deltalake.DeltaTable(path)
    assert table.version() == 3 and [h["operation"] for h in table.history()][:2] == ["VACUUM END", "VACUUM START"]
    assert rows_version_at(path) == 1 and rows_version_at(path, between) == 0 and rows_version_at(path, 0) is None
