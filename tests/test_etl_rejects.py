"""Bad input: every reject class on tiny hand-written files (reason, field, line), the identity input = accepted +
rejected, the generator's planted corruptions, and missing files/columns (exit 2, one line, nothing written)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest

from recsys_spark.delta import read_arrow

REPO = Path(__file__).resolve().parent.parent
ETL = [sys.executable, str(REPO / "jobs" / "etl.py")]
EOL = b"\r\n"

RATINGS = [
    b"userId,movieId,rating,timestamp",
    b"1,1,4.0,100",            # 2 ok
    b"1,2,3.5,200",            # 3 ok
    b"1,3,4.0",                # 4 malformed: 3 fields
    b"1,3,4.0,300,9",          # 5 malformed: 5 fields
    b'"1,3,4.0,300',           # 6 malformed: unbalanced quote
    b"x1,3,4.0,300",           # 7 non_numeric userId
    b"1,3,4.2,300",            # 8 not_half_star
    b"1,3,5.5,300",            # 9 rating_out_of_range
    b",3,4.0,300",             # 10 missing_id userId
    b"1,0,4.0,300",            # 11 non_positive movieId
    b"1,3,4.0,-5",             # 12 bad_timestamp (negative)
    b"1,3,4.0,12.5",           # 13 bad_timestamp (fractional)
    b"1,3,4.0,soon",           # 14 non_numeric timestamp
    b"1,3,4.0,300\xff",        # 15 non_utf8
    b"2,1,3.0,100",            # 16 duplicate: (2,1) has a later rating
    b"2,1,4.0,150",            # 17 ok
    b"2,2,4.0,100",            # 18 duplicate: same second, a later line wins
    b"2,2,2.0,100",            # 19 ok
    b"2,999,4.0,100",          # 20 unknown_movie
    b"3,1,4.0,100",            # 21 k-core: user 3 has one rating
    b"1,3,four,300",           # 22 non_numeric rating
    b"2,3,1.0,50",             # 23 k-core: movie 3 has one rating
    b"",                       # 24 malformed: empty line
    b'"1","2","4.5","400"',    # 25 malformed after all? no: quoted numbers are valid CSV -> duplicate of (1,2)
]
MOVIES = [
    b"movieId,title,genres",
    b"1,Toy Story (1995),Adventure|Animation",                    # 2
    b'2,"American President, The (1995)",Comedy|Drama|Romance',   # 3
    b'3,"11\'09""01 - September 11 (2002)",Drama',                # 4
    b"4,Babylon 5,Sci-Fi",                                        # 5 duplicate (line 14 is later)
    b"5,From Dusk Till Dawn 2: Texas Blood Money (1999) ,Comedy", # 6
    "6,Death Note: Desu nôto (2006–2007),(no genres listed)".encode(),  # 7
    b'7,"Unbalanced (2001),Drama',                                # 8 malformed
    b"8,Too,Many,Fields",                                         # 9 malformed
    b"m9,Bad Id (2000),Drama",                                    # 10 non_numeric
    b",No Id (2000),Drama",                                       # 11 missing_id
    b"-3,Negative (2000),Drama",                                  # 12 non_positive
    b'10,A "quote" inside (2000),Drama',                          # 13 malformed: quote in an unquoted field
    b"4,Babylon 5,Sci-Fi|Drama",                                  # 14
]
TAGS = [
    b"userId,movieId,tag,timestamp",
    b"1,1,funny,100",
    b'1,2,"good, not great",200',
    b"2,999,orphan,300",         # 4 unknown_movie
    b'2,1,"""artsy""",300',
]
LINKS = [
    b"movieId,imdbId,tmdbId",
    b"1,0114709,862",
    b"2,0112346,",
    b"999,0000001,5",            # 4 unknown_movie
    b"3,tt123,7",                # 5 non_numeric imdbId
    b"5,0000002,-4",             # 6 non_positive tmdbId
]

# (file, line) -> (reason, field)
EXPECTED = {
    ("ratings.csv", 4): ("malformed", None), ("ratings.csv", 5): ("malformed", None),
    ("ratings.csv", 6): ("malformed", None), ("ratings.csv", 24): ("malformed", None),
    ("ratings.csv", 7): ("non_numeric", "userId"), ("ratings.csv", 14): ("non_numeric", "timestamp"),
    ("ratings.csv", 22): ("non_numeric", "rating"),
    ("ratings.csv", 8): ("not_half_star", "rating"), ("ratings.csv", 9): ("rating_out_of_range", "rating"),
    ("ratings.csv", 10): ("missing_id", "userId"), ("ratings.csv", 11): ("non_positive", "movieId"),
    ("ratings.csv", 12): ("bad_timestamp", "timestamp"), ("ratings.csv", 13): ("bad_timestamp", "timestamp"),
    ("ratings.csv", 15): ("non_utf8", None),
    ("ratings.csv", 3): ("duplicate", None), ("ratings.csv", 16): ("duplicate", None),
    ("ratings.csv", 18): ("duplicate", None),
    ("ratings.csv", 20): ("unknown_movie", "movieId"),
    ("ratings.csv", 21): ("k-core", None), ("ratings.csv", 23): ("k-core", None),
    ("movies.csv", 5): ("duplicate", None), ("movies.csv", 8): ("malformed", None),
    ("movies.csv", 9): ("malformed", None), ("movies.csv", 13): ("malformed", None),
    ("movies.csv", 10): ("non_numeric", "movieId"), ("movies.csv", 11): ("missing_id", "movieId"),
    ("movies.csv", 12): ("non_positive", "movieId"),
    ("tags.csv", 4): ("unknown_movie", "movieId"),
    ("links.csv", 4): ("unknown_movie", "movieId"), ("links.csv", 5): ("non_numeric", "imdbId"),
    ("links.csv", 6): ("non_positive", "tmdbId"),
}
REASONS = sorted({reason for reason, _ in EXPECTED.values()})


def write_csv(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(EOL.join(lines) + EOL)


def write_inputs(folder: Path, files=("ratings.csv", "movies.csv", "tags.csv", "links.csv")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {"ratings.csv": RATINGS, "movies.csv": MOVIES, "tags.csv": TAGS, "links.csv": LINKS}
    for name in files:
        write_csv(folder / name, contents[name])
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ETL, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bad_warehouse(spark, tmp_path_factory) -> tuple[Path, str]:
    """The hand-written files through the ETL with the k-core filter on (users >= 2, items >= 2), configured the
    way `recsys etl ... etl.kcore.min_user_interactions=2 ...` configures it; returns the printed report too."""
    from rich.console import Console

    from jobs.config import load_config, section
    from recsys_spark.etl import EtlConfig, print_report, run_etl

    root = tmp_path_factory.mktemp("bad_input")
    data = write_inputs(root / "data")
    cfg = load_config(["etl"], overrides=["etl.kcore.min_user_interactions=2", "etl.kcore.min_item_interactions=2"])
    result = run_etl(spark, data, root / "warehouse", EtlConfig.from_dict(section(cfg, "etl")))
    console = Console(record=True, width=120)
    print_report(result, console)
    return root / "warehouse", console.export_text()


@pytest.fixture(scope="module")
def rejects(bad_warehouse) -> dict[tuple[str, int], dict]:
    rows = read_arrow(bad_warehouse[0] / "rejects").to_pylist()
    keyed = {(r["file"], r["line"]): r for r in rows}
    assert len(keyed) == len(rows), "a line was rejected twice"
    return keyed


@pytest.mark.parametrize("reason", REASONS)
def test_each_reject_class_names_line_and_field(rejects, reason):
    expected = {key: field for key, (why, field) in EXPECTED.items() if why == reason}
    got = {key: r["field"] for key, r in rejects.items() if r["reason"] == reason}
    assert got == expected


def test_rejects_keep_the_raw_line(rejects):
    assert rejects[("ratings.csv", 7)]["raw"] == "x1,3,4.0,300"
    assert rejects[("ratings.csv", 24)]["raw"] == ""
    assert rejects[("ratings.csv", 15)]["raw"] == "1,3,4.0,300\ufffd"  # invalid byte replaced
    assert rejects[("movies.csv", 8)]["raw"] == '7,"Unbalanced (2001),Drama'


def test_every_row_lands_once_and_the_report_says_so(bad_warehouse, rejects):
    warehouse, printed = bad_warehouse
    report = read_arrow(warehouse / "etl_report").to_pylist()
    totals: dict[str, Counter] = {}
    for r in report:
        totals.setdefault(r["file"], Counter())[r["category"]] += r["rows"]
    for name, lines in (("ratings.csv", RATINGS), ("movies.csv", MOVIES), ("tags.csv", TAGS), ("links.csv", LINKS)):
        t = totals[name]
        assert t["input"] == len(lines) - 1
        assert t["input"] == t["accepted"] + t["rejected"]
        assert t["rejected"] == sum(1 for f, _ in rejects if f == name)
    assert totals["ratings.csv"]["accepted"] == read_arrow(warehouse / "interactions").num_rows == 4
    assert totals["movies.csv"]["accepted"] == read_arrow(warehouse / "items").num_rows == 6
    assert totals["tags.csv"]["accepted"] == read_arrow(warehouse / "tags").num_rows == 3
    summary = json.loads((warehouse / "etl_report.json").read_text())
    assert summary["kcore"]["min_user_interactions"] == 2 and summary["kcore"]["converged"]
    assert summary["files"]["ratings.csv"]["rejected_by_reason"]["k-core"] == 2
    # the printed report
    assert "ratings.csv" in printed and "k-core" in printed and "users >= 2, items >= 2" in printed


def test_accepted_rows_are_the_latest_and_typed(bad_warehouse):
    warehouse, _ = bad_warehouse
    rows = read_arrow(warehouse / "interactions").sort_by([("userId", "ascending"), ("seq", "ascending")]).to_pylist()
    assert [(r["userId"], r["movieId"], r["rating"], r["timestamp"]) for r in rows] == [
        (1, 1, 4.0, 100), (1, 2, 4.5, 400), (2, 2, 2.0, 100), (2, 1, 4.0, 150)]  # quoted CSV numbers parse
    tags = read_arrow(warehouse / "tags").sort_by("timestamp").to_pylist()
    assert [t["tag"] for t in tags] == ["funny", "good, not great", '"artsy"']
    items = {r["movieId"]: r for r in read_arrow(warehouse / "items").to_pylist()}
    assert items[1]["imdbId"] == "0114709" and items[1]["tmdbId"] == 862
    assert items[2]["imdbId"] == "0112346" and items[2]["tmdbId"] is None
    assert items[3]["imdbId"] is None  # its links row was refused
    assert items[4]["genres"] == ["Sci-Fi", "Drama"]  # the later of the duplicate lines


def test_missing_optional_files_still_write_every_table(spark, tmp_path):
    from recsys_spark.etl import EtlConfig, run_etl

    data = write_inputs(tmp_path / "data", files=("ratings.csv", "movies.csv"))
    result = run_etl(spark, data, tmp_path / "wh", EtlConfig())
    assert read_arrow(tmp_path / "wh" / "tags").num_rows == 0
    items = read_arrow(tmp_path / "wh" / "items")
    assert items.num_rows == 6 and pc.all(pc.is_null(items["imdbId"])).as_py()
    assert result.summary["files_missing"] == ["tags.csv", "links.csv"]
    # without k-core, user 3 and movie 3 stay
    assert read_arrow(tmp_path / "wh" / "interactions").num_rows == 6


@pytest.mark.parametrize("case", ["missing_file", "missing_column", "missing_optional_column"])
def test_missing_required_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    data = write_inputs(tmp_path / "data")
    if case == "missing_file":
        (data / "ratings.csv").unlink()
        names = ["ratings.csv"]
    elif case == "missing_column":
        write_csv(data / "ratings.csv", [b"userId,movieId,timestamp", b"1,1,100"])
        names = ["ratings.csv", "'rating'"]
    else:  # an optional file, once present, must have its columns
        write_csv(data / "links.csv", [b"movieId,imdbId", b"1,0114709"])
        names = ["links.csv", "'tmdbId'"]
    warehouse = tmp_path / "warehouse"
    proc = run_cli("--data", str(data), "--warehouse", str(warehouse))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(name in lines[0] for name in names), lines[0]
    assert "Traceback" not in proc.stderr
    assert not warehouse.exists()


# ------------------------------------------------------------------------------ generated data with corruptions

@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    """Generated ML-shaped data with every corruption class, through the ETL twice: once plainly, once with the
    input split into many small partitions and another shuffle width (hash tie-break both times)."""
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_data.generate import generate

    root = tmp_path_factory.mktemp("generated")
    generate(root / "data", n_users=40, n_items=150, n_ratings=2500, seed=11, corrupt_fraction=0.03)
    config = EtlConfig(tie_break="hash", seed=7)
    run_etl(spark, root / "data", root / "wh1", config)
    settings = {"spark.sql.files.maxPartitionBytes": "8192", "spark.sql.files.openCostInBytes": "0",
                "spark.sql.shuffle.partitions": "3"}
    before = {key: spark.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, value)
        run_etl(spark, root / "data", root / "wh2", config)
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
    return root


def test_rejects_match_the_generators_corruptions(generated):
    planted = json.loads((generated / "data" / "corruptions.json").read_text())
    raw_lines = {name: (generated / "data" / name).read_bytes().split(b"\r\n") for name in planted["lines"]}
    for warehouse in ("wh1", "wh2"):
        rows = read_arrow(generated / warehouse / "rejects").to_pylist()
        got = Counter((r["file"], r["reason"]) for r in rows)
        expected = Counter({(f, reason): n for f, counts in planted["counts"].items()
                            for reason, n in counts.items() if n})
        assert got == expected, warehouse
        rejected = {(r["file"], r["line"]): r for r in rows}
        planted_copies, refused_copies = Counter(), Counter()
        for name, listed in planted["lines"].items():
            for line, reason in listed:
                if reason == "duplicate":  # an exact copy of an earlier row: the earlier line is the one refused
                    planted_copies[raw_lines[name][line - 1].decode()] += 1
                else:
                    assert rejected[(name, line)]["reason"] == reason, (name, line, rejected[(name, line)])
        refused_copies.update(r["raw"] for r in rows if r["reason"] == "duplicate")
        assert refused_copies == planted_copies


def test_same_input_and_seed_give_identical_tables(generated):
    for name, keys in (("interactions", ["userId", "movieId"]), ("items", ["movieId"]), ("users", ["userId"]),
                       ("tags", ["userId", "movieId", "tag", "timestamp"]), ("rejects", ["file", "line"]),
                       ("etl_report", ["file", "category", "reason"])):
        first, second = (read_arrow(generated / wh / name).sort_by([(k, "ascending") for k in keys])
                         for wh in ("wh1", "wh2"))
        assert first.num_rows > 0 and first.equals(second), name
    one, two = (json.loads((generated / wh / "etl_report.json").read_text()) for wh in ("wh1", "wh2"))
    assert one == two and one["tie_break"] == "hash" and one["seed"] == 7


def test_bad_config_value_exits_2_with_one_line(tmp_path):
    data = write_inputs(tmp_path / "data")
    proc = run_cli("--data", str(data), "--warehouse", str(tmp_path / "wh"), "etl.tie_break=random")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "tie_break" in proc.stderr
    assert not (tmp_path / "wh").exists()
