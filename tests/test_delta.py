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
