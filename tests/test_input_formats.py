"""Every input format through the one ETL: MovieLens' three layouts, an events log (CSV, Parquet, Delta) and the two
sequence layouts of the literature, each from small files written here, and the shared benchmark files.

Each test checks the identity (a file's rows in = accepted + rejected), the rejects' file, line, reason and field,
the order of a user's history, and what etl_report.json says of the input (format, time known or not).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, SHARED_DATA

S3REC = SHARED_DATA / "s3rec"
VIDEO = SHARED_DATA / "sasrec" / "Video.txt"


def etl(spark, data: Path, warehouse: Path, **config):
    from recsys_spark.etl import EtlConfig, run_etl

    return run_etl(spark, data, warehouse, EtlConfig.from_dict(config))


def table(warehouse: Path, name: str) -> list[dict]:
    from recsys_spark.delta import read_arrow, table_path

    return read_arrow(table_path(warehouse, name)).to_pylist()


def histories(warehouse: Path) -> dict[int, list[int]]:
    rows = sorted(table(warehouse, "interactions"), key=lambda r: (r["userId"], r["seq"]))
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(r["userId"], []).append(r["movieId"])
    return out


def rejects(warehouse: Path) -> set[tuple]:
    return {(r["file"], r["line"], r["reason"], r["field"]) for r in table(warehouse, "rejects")}


def identity_holds(result) -> None:
    for name, counts in result.summary["files"].items():
        assert counts["input"] == counts["accepted"] + counts["rejected"], name


def test_movielens_dat_layout_reads_latin1_titles_and_quarantines_a_bad_line(spark, tmp_path):
    data = tmp_path / "ml-1m"
    data.mkdir()
    (data / "movies.dat").write_bytes("1::Café Society (1995)::Comedy|Drama\n2::Heat (1995)::Action\n"
                                      .encode("latin-1"))
    (data / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978300761\n2::2::x::978300762\n"
                                      "2::1::4::978300763\n2::9::4::978300764\n")
    result = etl(spark, data, tmp_path / "wh")
    identity_holds(result)
    assert (result.summary["format"], result.summary["layout"], result.summary["time"]) == \
        ("movielens", "dat", "seconds")
    assert rejects(tmp_path / "wh") == {("ratings.dat", 3, "non_numeric", "rating"),
                                        ("ratings.dat", 5, "unknown_movie", "movieId")}
    items = {r["movieId"]: r for r in table(tmp_path / "wh", "items")}
    assert items[1]["title"] == "Café Society" and items[1]["year"] == 1995
    assert items[1]["genres"] == ["Comedy", "Drama"]
    assert histories(tmp_path / "wh") == {1: [1, 2], 2: [1]}


def test_movielens_100k_layout_turns_genre_flags_into_names(spark, tmp_path):
    data = tmp_path / "ml-100k"
    data.mkdir()
    flags = ["0"] * 19
    flags[1], flags[5] = "1", "1"  # Action, Comedy
    (data / "u.item").write_bytes(("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n"
                                   "2|Le Ballon rouge (1956)|01-Jan-1956||http://y|" + "|".join(["0"] * 19) + "\n")
                                  .encode("latin-1"))
    (data / "u.data").write_text("196\t1\t3\t881250949\n196\t2\t4\t881250950\n7\t2\t6\t881250951\n")
    result = etl(spark, data, tmp_path / "wh")
    identity_holds(result)
    assert result.summary["layout"] == "100k"
    assert rejects(tmp_path / "wh") == {("u.data", 3, "rating_out_of_range", "rating")}
    items = {r["movieId"]: r for r in table(tmp_path / "wh", "items")}
    assert items[1]["genres"] == ["Action", "Comedy"] and items[2]["genres"] == []
    assert items[1]["title"] == "Toy Story" and items[2]["year"] == 1956


EVENTS_CSV = """visitorid,event,itemid,ts
1,view,10,1433221332117
1,addtocart,10,1433221332999
1,view,11,1433221400000
2,view,10,1433221500000
2,wishlist,12,1433221600000
3,view,,1433221700000
3,transaction,12,not-a-time
4,view,13,1433221800000
"""
EVENT_SETTINGS = {"format": "events", "event_weights": {"view": 1, "addtocart": 3, "transaction": 5},
                  "columns": {"user": "visitorid", "item": "itemid", "event": "event", "timestamp": "ts",
                              "timestamp_unit": "ms"}}


def test_events_csv_with_event_weights_and_millisecond_times(spark, tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS_CSV)
    result = etl(spark, tmp_path / "events.csv", tmp_path / "wh", **EVENT_SETTINGS)
    identity_holds(result)
    s = result.summary
    assert (s["format"], s["layout"], s["time"], s["explicit"], s["genres"]) == \
        ("events", "csv", "seconds", False, False)
    assert rejects(tmp_path / "wh") == {("events.csv", 2, "repeat", None), ("events.csv", 6, "unknown_event", "event"),
                                        ("events.csv", 7, "missing_id", "itemid"),
                                        ("events.csv", 8, "bad_timestamp", "ts")}
    rows = {(r["userId"], r["movieId"]): r for r in table(tmp_path / "wh", "interactions")}
    # the strongest of user 1's two events on item 10 is kept, with its own time (ms -> s)
    assert rows[(1, 10)]["rating"] == 3.0 and rows[(1, 10)]["timestamp"] == 1433221332
    assert rows[(1, 11)]["rating"] == 1.0
    items = table(tmp_path / "wh", "items")
    assert sorted(r["movieId"] for r in items) == [10, 11, 13] and all(r["genres"] == [] for r in items)
    assert {r["title"] for r in items} == {"10", "11", "13"}


def test_an_item_table_gives_titles_and_genres_and_the_genre_model_its_input(spark, tmp_path):
    (tmp_path / "events.csv").write_text("u,i,t\n1,10,100\n1,11,101\n2,12,102\n")
    (tmp_path / "catalog.csv").write_text('sku,name,cats\n10,"Lamp, small","Home, Light"\n11,Desk,Home\n12,Broken\n')
    items = {"path": str(tmp_path / "catalog.csv"), "id": "sku", "title": "name", "genres": "cats",
             "genre_separator": ","}
    config = {"columns": {"user": "u", "item": "i", "timestamp": "t"}, "items": items}
    from recsys_spark.etl import EtlConfig

    assert EtlConfig.from_dict(config).source(tmp_path / "events.csv").features() == {"ratings": False,
                                                                                      "genres": True}
    result = etl(spark, tmp_path / "events.csv", tmp_path / "wh", **config)
    identity_holds(result)
    assert rejects(tmp_path / "wh") == {("catalog.csv", 4, "malformed", None),
                                        ("events.csv", 4, "unknown_movie", "movieId")}
    assert {r["movieId"]: (r["title"], r["genres"]) for r in table(tmp_path / "wh", "items")} == \
        {10: ("Lamp, small", ["Home", "Light"]), 11: ("Desk", ["Home"])}


def test_a_parquet_item_table_folder_names_its_part_file_and_the_later_file_wins(spark, tmp_path):
    """An item table on the lake is a Parquet folder: its rows are checked as the CSV's are, a reject names its part
    file and row, and an item listed twice keeps the row that comes later in the table's order (files by path)."""
    pq.write_table(pa.table({"u": [1, 1, 2], "i": [10, 11, 12], "t": [100, 101, 102]}), tmp_path / "events.parquet")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    pq.write_table(pa.table({"sku": [10, 11], "name": ["Lamp", "Desk"], "cats": ["Home|Light", "Home"]}),
                   catalog / "part-0.parquet")
    pq.write_table(pa.table({"sku": [None, 10], "name": ["nameless", "Lamp, small"], "cats": ["Home", "Light"]}),
                   catalog / "part-1.parquet")
    config = {"columns": {"user": "u", "item": "i", "timestamp": "t"},
              "items": {"path": str(catalog), "id": "sku", "title": "name", "genres": "cats"}}
    from recsys_spark.etl import EtlConfig

    source = EtlConfig.from_dict(config).source(tmp_path / "events.parquet")
    assert source.features()["genres"] and {p.name for p in source.fingerprint_files()} >= {"part-0.parquet",
                                                                                         "part-1.parquet"}
    result = etl(spark, tmp_path / "events.parquet", tmp_path / "wh", **config)
    identity_holds(result)
    found = rejects(tmp_path / "wh")
    assert ("part-1.parquet", 1, "missing_id", "sku") in found  # the row without an id
    assert ("events.parquet", 3, "unknown_movie", "movieId") in found  # item 12 is in no item table row
    assert {r["movieId"]: (r["title"], r["genres"]) for r in table(tmp_path / "wh", "items")} == \
        {10: ("Lamp, small", ["Light"]), 11: ("Desk", ["Home"])}


def test_an_item_table_path_that_holds_no_table_is_one_line(tmp_path):
    from recsys_spark.errors import InputError
    from recsys_spark.etl import EtlConfig

    (tmp_path / "events.csv").write_text("u,i\n1,10\n")
    (tmp_path / "empty").mkdir()
    for path, message in [(tmp_path / "nothing.parquet", "no such file"), (tmp_path / "empty", "no Parquet files")]:
        config = {"columns": {"user": "u", "item": "i"}, "items": {"path": str(path), "id": "sku"}}
        with pytest.raises(InputError, match=f"etl.items.path {path}: {message}"):
            EtlConfig.from_dict(config).source(tmp_path / "events.csv")


def test_events_parquet_folder_names_the_part_file_and_row(spark, tmp_path):
    import datetime as dt

    folder = tmp_path / "events"
    folder.mkdir()
    at = [dt.datetime(2024, 5, 1, 12, 0, s, tzinfo=dt.timezone.utc) for s in range(4)]
    pq.write_table(pa.table({"user": [1, 1, 2], "sku": [7, 8, 7], "when": at[:3], "plays": [2.0, 1.0, 4.0]}),
                   folder / "part-0.parquet")
    pq.write_table(pa.table({"user": [None, 3], "sku": [8, 8], "when": at[2:], "plays": [1.0, -1.0]}),
                   folder / "part-1.parquet")
    columns = {"user": "user", "item": "sku", "timestamp": "when", "weight": "plays"}
    result = etl(spark, folder, tmp_path / "wh", format="events", columns=columns)
    identity_holds(result)
    assert result.summary["layout"] == "parquet"
    assert rejects(tmp_path / "wh") == {("part-1.parquet", 1, "missing_id", "user"),
                                        ("part-1.parquet", 2, "non_positive", "plays")}
    rows = {(r["userId"], r["movieId"]): r for r in table(tmp_path / "wh", "interactions")}
    assert rows[(1, 7)]["timestamp"] == int(at[0].timestamp()) and rows[(2, 7)]["rating"] == 4.0
    assert histories(tmp_path / "wh") == {1: [7, 8], 2: [7]}


def test_events_delta_table_without_timestamps_keeps_the_file_order(spark, tmp_path):
    import deltalake

    path = tmp_path / "lake" / "events"
    deltalake.write_deltalake(str(path), pa.table({"u": [5, 5, 5, 6], "i": [3, 1, 2, 1]}))
    result = etl(spark, path, tmp_path / "wh", columns={"user": "u", "item": "i"})  # format detected
    identity_holds(result)
    assert (result.summary["format"], result.summary["layout"], result.summary["time"]) == \
        ("events", "delta", "order")
    assert histories(tmp_path / "wh") == {5: [3, 1, 2], 6: [1]}
    assert {r["rating"] for r in table(tmp_path / "wh", "interactions")} == {1.0}


def test_sequence_lines_keep_each_users_order_and_quarantine_bad_tokens(spark, tmp_path):
    (tmp_path / "Tiny.txt").write_text("1 30 20 10\n2 20 x 30\n3\n4 10 20\n")
    result = etl(spark, tmp_path / "Tiny.txt", tmp_path / "wh")
    identity_holds(result)
    assert (result.summary["format"], result.summary["layout"], result.summary["time"]) == \
        ("sequences", "lines", "order")
    assert result.summary["files"]["Tiny.txt"] == {"input": 9, "accepted": 7, "rejected": 2,
                                                  "rejected_by_reason": {"malformed": 1, "non_numeric": 1}}
    assert rejects(tmp_path / "wh") == {("Tiny.txt", 2, "non_numeric", "movieId"), ("Tiny.txt", 3, "malformed", None)}
    assert histories(tmp_path / "wh") == {1: [30, 20, 10], 2: [20, 30], 4: [10, 20]}
    splits = {(r["userId"], r["movieId"]): r["split"] for r in table(tmp_path / "wh", "interactions")}
    assert (splits[(1, 10)], splits[(1, 20)], splits[(1, 30)]) == ("test", "validation", "train")


def test_sequence_pairs_use_the_line_order(spark, tmp_path):
    (tmp_path / "pairs.txt").write_text("1 5\n1 3\n2 3\n1 4\n2 five\n2 5\n")
    result = etl(spark, tmp_path / "pairs.txt", tmp_path / "wh")
    identity_holds(result)
    assert result.summary["layout"] == "pairs"
    assert rejects(tmp_path / "wh") == {("pairs.txt", 5, "non_numeric", "movieId")}
    assert histories(tmp_path / "wh") == {1: [5, 3, 4], 2: [3, 5]}


def test_a_wrong_column_mapping_fails_with_one_line_naming_the_column(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS_CSV)
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "etl", "--data", str(tmp_path / "events.csv"),
                           "--warehouse", str(tmp_path / "wh"), "etl.columns.user=visitor", "etl.columns.item=itemid"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "etl.columns.user" in lines[0] and "'visitor'" in lines[0] and "visitorid" in lines[0]
    assert not (tmp_path / "wh").exists()


@pytest.mark.skipif(not (S3REC / "Toys_and_Games.txt").is_file(), reason=f"shared data absent: {S3REC}")
def test_the_s3rec_toys_file_loads_whole(spark, tmp_path):
    result = etl(spark, S3REC / "Toys_and_Games.txt", tmp_path / "wh")
    s = result.summary
    assert (s["format"], s["layout"]) == ("sequences", "lines")
    # the README's counts: 19,412 users, 11,924 items, 167,597 interactions, nothing refused
    assert (s["tables"]["users"], s["tables"]["items"], s["tables"]["interactions"], s["tables"]["rejects"]) == \
        (19_412, 11_924, 167_597, 0)
    first = (S3REC / "Toys_and_Games.txt").read_text().split("\n", 1)[0].split()
    assert histories(tmp_path / "wh")[int(first[0])] == [int(t) for t in first[1:]]


@pytest.mark.skipif(not VIDEO.is_file(), reason=f"shared data absent: {VIDEO}")
def test_the_sasrec_video_file_is_detected_as_pairs():
    from recsys_spark.inputs import check_source

    source = check_source(VIDEO)
    assert (source.format, source.layout, source.time_known) == ("sequences", "pairs", False)


def test_pipeline_leaves_out_the_models_the_input_cannot_feed(tmp_path):
    from jobs.plan import PipelineConfig, input_source

    (tmp_path / "Tiny.txt").write_text("1 30 20 10\n")
    source = input_source({"etl": {}}, tmp_path / "Tiny.txt")
    pipe, lines = PipelineConfig().for_input(source.features())
    assert "genre" not in pipe.spark_models and "als" not in pipe.spark_models
    assert "als_implicit" in pipe.spark_models and "sasrec" in pipe.torch_models
    assert lines == ["als: left out of the plan, the input has no explicit ratings",
                     "genre: left out of the plan, the input has no item genres"]


def test_the_etl_report_records_the_format(spark, tmp_path):
    (tmp_path / "pairs.txt").write_text("1 5\n1 3\n")
    etl(spark, tmp_path / "pairs.txt", tmp_path / "wh")
    report = json.loads((tmp_path / "wh" / "etl_report.json").read_text())
    assert (report["format"], report["layout"], report["time"]) == ("sequences", "pairs", "order")
    assert report["data"] == str((tmp_path / "pairs.txt").resolve())


def test_without_timestamps_the_shards_carry_no_invented_gaps(spark, tmp_path):
    from recsys_spark.sequences import SequenceConfig, export_sequences

    (tmp_path / "Tiny.txt").write_text("1 30 20 10 40\n2 20 30 10\n")
    etl(spark, tmp_path / "Tiny.txt", tmp_path / "wh")
    meta = export_sequences(spark, tmp_path / "wh", tmp_path / "seq", SequenceConfig(max_len=4))
    assert meta["time"] == "order"
    for split in ("train", "validation", "test"):
        shard = pq.read_table(tmp_path / "seq" / split).to_pylist()
        assert shard and all(set(r["timestamps"]) == {0} and r["target_timestamp"] == 0 for r in shard), split
    # the order is still the file's: user 1's test target is its last item, 40
    test = {r["user_idx"]: r for r in pq.read_table(tmp_path / "seq" / "test").to_pylist()}
    users = {r["userId"]: r["user_idx"] for r in table(tmp_path / "wh", "users")}
    items = {r["item_idx"]: r["movieId"] for r in table(tmp_path / "wh", "items")}
    assert items[test[users[1]]["target_item"]] == 40


@pytest.mark.parametrize("layout", ["parquet", "delta"])
def test_a_generated_event_log_reads_back_whole_with_the_printed_settings(spark, tmp_path, layout):
    from jobs.config import load_config, section
    from jobs.generate import main as generate
    from recsys_data.events import EVENTS_SETTINGS, item_settings
    from recsys_spark.etl import EtlConfig, run_etl

    assert generate(["--out", str(tmp_path / "lake"), "--users", "40", "--items", "60", "--ratings", "900",
                     "--as", "events", "--layout", layout, "--quiet"]) == 0
    overrides = [*EVENTS_SETTINGS, *item_settings(tmp_path / "lake" / "items.csv")]
    config = EtlConfig.from_dict(section(load_config(["etl"], overrides=overrides), "etl"))
    result = run_etl(spark, tmp_path / "lake" / "events", tmp_path / "wh", config)
    identity_holds(result)
    s = result.summary
    assert (s["format"], s["layout"], s["time"], s["genres"]) == ("events", layout, "seconds", True)
    assert s["tables"]["interactions"] == 900 and s["tables"]["rejects"] == 0
    import pyarrow.csv as pacsv

    source = pacsv.read_csv(tmp_path / "lake" / "movielens" / "ratings.csv").to_pylist()
    want = {(r["userId"], r["movieId"]): (5.0 if r["rating"] >= 4.5 else 3.0 if r["rating"] >= 3.5 else 1.0,
                                          r["timestamp"]) for r in source}
    got = {(r["userId"], r["movieId"]): (r["rating"], r["timestamp"]) for r in table(tmp_path / "wh", "interactions")}
    assert got == want


def test_the_etl_fingerprint_covers_an_item_table_outside_the_log(tmp_path):
    import datetime as dt

    from jobs.fingerprints import fingerprint
    from jobs.plan import PipelineConfig, Run, plan

    (tmp_path / "log").mkdir()
    pq.write_table(pa.table({"u": [1, 2], "i": [3, 4]}), tmp_path / "log" / "part-0.parquet")
    (tmp_path / "items.csv").write_text("i,title\n3,x\n4,y\n")
    cfg = {"etl": {"columns": {"user": "u", "item": "i"}, "items": {"path": str(tmp_path / "items.csv"), "id": "i",
                                                                  "title": "title"}}}
    etl_step = plan(PipelineConfig(), Run(str(tmp_path / "log"), str(tmp_path / "wh"), "2026-12-07", "local"))[0]
    day = dt.date(2026, 12, 7)
    before = fingerprint(etl_step, cfg, day, {}, tmp_path / "log")
    (tmp_path / "items.csv").write_text("i,title\n3,x\n4,z\n")
    assert fingerprint(etl_step, cfg, day, {}, tmp_path / "log") != before


def test_a_relative_item_table_path_is_made_absolute_for_the_steps(tmp_path, monkeypatch):
    from jobs.pipeline import absolute_path_override

    monkeypatch.chdir(tmp_path)
    assert absolute_path_override("etl.items.path=lake/items.csv") == f"etl.items.path={tmp_path}/lake/items.csv"
    assert absolute_path_override("etl.items.path=null") == "etl.items.path=null"
    assert absolute_path_override("etl.items.path=s3://b/items.csv") == "etl.items.path=s3://b/items.csv"
    assert absolute_path_override("etl.columns.user=lake/x") == "etl.columns.user=lake/x"


def test_publish_leaves_out_what_the_load_could_not_feed(tmp_path):
    from jobs.plan import PipelineConfig, loaded_features

    assert loaded_features(tmp_path) == {"ratings": True, "genres": True}  # no report: a MovieLens-era warehouse
    (tmp_path / "etl_report.json").write_text(json.dumps({"explicit": False, "genres": False}))
    pipe, _ = PipelineConfig().for_input(loaded_features(tmp_path))
    assert {m.name for m in pipe.models()}.isdisjoint({"als", "genre"})


def test_an_event_logs_repeats_do_not_count_as_refused_rows():
    from recsys_spark.etl_guard import reject_fraction

    assert reject_fraction(100, {"repeat": 40, "k-core": 10, "malformed": 5}) == 0.05


def test_an_unreadable_parquet_log_is_one_line_naming_it(tmp_path):
    from recsys_spark.errors import InputError
    from recsys_spark.inputs import check_source

    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "part-0.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read its columns as a parquet table"):
        check_source(tmp_path / "log", "events")


def test_a_parquet_log_with_a_corrupt_page_is_one_line_naming_the_file(spark, tmp_path):
    """A file whose footer reads but whose data page does not (bytes flipped inside the column chunk) is only found
    out by Spark's read: the ETL fails with one InputError naming that file, and no table is written."""
    from recsys_spark.errors import InputError

    folder = tmp_path / "log"
    folder.mkdir()
    pq.write_table(pa.table({"u": [1, 2], "i": [3, 4]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"u": list(range(1, 2001)), "i": list(range(2001, 4001))}), folder / "part-1.parquet",
                   compression="snappy", use_dictionary=False)
    raw = bytearray((folder / "part-1.parquet").read_bytes())
    for at in range(40, 4000, 7):  # inside the first column chunk: its page header and values, not the footer
        raw[at] ^= 0xFF
    (folder / "part-1.parquet").write_bytes(bytes(raw))
    assert pq.read_schema(folder / "part-1.parquet").names == ["u", "i"]  # the footer still reads
    with pytest.raises(InputError, match=r"cannot read .*part-1\.parquet"):
        etl(spark, folder, tmp_path / "wh", format="events", columns={"user": "u", "item": "i"})
    assert not (tmp_path / "wh" / "interactions").exists()


def test_a_remote_data_uri_is_refused_by_name_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "pipeline", "--data", "s3://bucket/events",
                           "--warehouse", str(tmp_path / "wh")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--data s3://bucket/events" in lines[0] and "file://" in lines[0]
    assert not (tmp_path / "wh").exists()
