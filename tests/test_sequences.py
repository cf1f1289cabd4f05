"""`recsys export-sequences`: exact windows and targets on a hand-made history, no leakage, exact row groups that
Petastorm reads and shards, determinism, whole-folder replacement, and the real ml-latest-small warehouse."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys_spark.delta import write_table
from recsys_spark.errors import RecsysError
from recsys_spark.schemas import SEQUENCE_ROWS
from recsys_spark.sequences import SequenceConfig, export_sequences

warnings.filterwarnings("ignore", category=FutureWarning)

COLUMNS = ("userId long, movieId long, rating double, timestamp long, user_idx int, item_idx int, seq int, "
           "split string, temporal_split string")
SEQ_DATASETS = ("train", "validation", "test")
SMALL = dict(max_len=3, rows_per_group=2, min_row_groups=2)

# user_idx -> [(seq, item_idx, timestamp)], deliberately listed out of order; ties in time are ordered by seq.
HAND = {
    1: [(3, 31, 1030), (1, 17, 1000), (2, 5, 1000), (4, 8, 1050), (6, 2, 1090), (5, 40, 1070), (7, 12, 1100),
        (8, 9, 1200)],      # 6 train [17 5 31 8 40 2], validation 12, test 9
    2: [(1, 7, 2000)],                                   # test only
    3: [(2, 8, 3010), (1, 6, 3000)],                     # validation 6, test 8
    4: [(1, 40, 4000), (2, 41, 4010), (3, 5, 4020)],     # one train item: no train window
}


def leave_last_out(events):
    """(seq, item, ts, split) in seq order: last = test, second to last = validation, the rest train."""
    ordered = sorted(events)
    n = len(ordered)
    return [(s, i, t, "test" if k == n - 1 else "validation" if k == n - 2 else "train")
            for k, (s, i, t) in enumerate(ordered)]


def generated_users(first: int, count: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    users = {}
    for user in range(first, first + count):
        n = int(rng.integers(1, 16))
        items = rng.choice(np.arange(1, 60), size=n, replace=False)
        times = 10_000 * user + np.cumsum(rng.integers(0, 3, size=n))  # many ties, broken by seq
        users[user] = [(k + 1, int(items[k]), int(times[k])) for k in range(n)]
    return users


def write_interactions(spark, warehouse: Path, users: dict) -> None:
    rows = [(1000 + u, 500 + i, 4.0, t, u, i, s, split, "train")
            for u, events in users.items() for s, i, t, split in leave_last_out(events)]
    write_table(spark.createDataFrame(rows, COLUMNS), warehouse / "interactions")


def expected(users: dict, max_len: int, stride: int, last_gap: str) -> dict[str, list[dict]]:
    """A plain-Python statement of the contract in docs/SCHEMAS.md, to compare the Spark job with."""
    def pad(values):
        values = list(values)[-max_len:] if max_len else []
        return [0] * (max_len - len(values)) + values

    out = {name: [] for name in SEQ_DATASETS}
    for user in sorted(users):
        events = leave_last_out(users[user])
        train = [(i, t) for _, i, t, sp in events if sp == "train"]
        items, times = [i for i, _ in train], [t for _, t in train]
        windows = []
        end = len(items) - 1
        while end >= 1:
            start = max(0, end - max_len)
            windows.append(dict(user_idx=user, items=pad(items[start:end]), timestamps=pad(times[start:end]),
                                targets=pad(items[start + 1:end + 1]), target_item=0, target_timestamp=0,
                                query_timestamp=0, seen_items=[]))
            end -= stride
        out["train"] += windows[::-1]  # oldest window first
        history = list(train)
        for split in ("validation", "test"):
            target = [(i, t) for _, i, t, sp in events if sp == split]
            if target:
                item, ts = target[0]
                query = ts if last_gap == "target_time" else (history[-1][1] + 1 if history else 0)
                out[split].append(dict(user_idx=user, items=pad([i for i, _ in history]),
                                       timestamps=pad([t for _, t in history]), targets=[0] * max_len,
                                       target_item=item, target_timestamp=ts, query_timestamp=query,
                                       seen_items=sorted({i for i, _ in history})))
                history.append((item, ts))
    return out


def read_rows(folder: Path) -> list[dict]:
    """All rows of a dataset, files in name order, each file in its stored order."""
    rows = []
    for path in sorted(folder.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def by_user(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["user_idx"], [t for t in r["timestamps"] if t]))


def row_groups_per_file(folder: Path) -> list[list[int]]:
    out = []
    for path in sorted(folder.glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        out.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    return out


def row_groups(folder: Path) -> list[int]:
    """Rows of every row group of every file of a dataset."""
    return [size for sizes in row_groups_per_file(folder) for size in sizes]


def assert_exact_groups(folder: Path, group_rows: int) -> None:
    """Every row group of a file holds exactly group_rows rows, but the file's last (which holds 1..group_rows)."""
    for sizes in row_groups_per_file(folder):
        assert sizes and all(n == group_rows for n in sizes[:-1]) and 1 <= sizes[-1] <= group_rows, sizes


@pytest.fixture(scope="module")
def hand_users() -> dict:
    return {**HAND, **generated_users(5, 16)}


@pytest.fixture(scope="module")
def hand_warehouse(spark, hand_users, tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("seq_warehouse")
    write_interactions(spark, warehouse, hand_users)
    (warehouse / "etl_report.json").write_text(json.dumps({"tie_break": "hash", "seed": 7}))
    return warehouse


@pytest.fixture(scope="module")
def exported(spark, hand_warehouse) -> tuple[Path, dict]:
    meta = export_sequences(spark, hand_warehouse, config=SequenceConfig(**SMALL))
    return hand_warehouse / "sequences", meta


def test_hand_made_windows_padding_and_targets(exported):
    out, meta = exported
    train = [r for r in read_rows(out / "train") if r["user_idx"] == 1]
    # train items by seq: 17 5 31 8 40 2 (validation 12, test 9); windows of 3 with stride 3, newest whole
    assert [(r["items"], r["targets"], r["timestamps"]) for r in train] == [
        ([0, 17, 5], [0, 5, 31], [0, 1000, 1000]),
        ([31, 8, 40], [8, 40, 2], [1030, 1050, 1070]),
    ]
    assert all(r["target_item"] == 0 and r["query_timestamp"] == 0 and r["seen_items"] == [] for r in train)
    assert not [r for r in read_rows(out / "train") if r["user_idx"] in (2, 3, 4)]  # fewer than 2 train items

    validation = {r["user_idx"]: r for r in read_rows(out / "validation")}
    test = {r["user_idx"]: r for r in read_rows(out / "test")}
    assert validation[1] == dict(user_idx=1, items=[8, 40, 2], timestamps=[1050, 1070, 1090], targets=[0, 0, 0],
                                 target_item=12, target_timestamp=1100, query_timestamp=1091,
                                 seen_items=[2, 5, 8, 17, 31, 40])
    assert test[1] == dict(user_idx=1, items=[40, 2, 12], timestamps=[1070, 1090, 1100], targets=[0, 0, 0],
                           target_item=9, target_timestamp=1200, query_timestamp=1101,
                           seen_items=[2, 5, 8, 12, 17, 31, 40])
    assert 2 not in validation and test[2]["items"] == [0, 0, 0] and test[2]["seen_items"] == []
    assert validation[3]["items"] == [0, 0, 0] and validation[3]["target_item"] == 6
    assert test[3]["items"] == [0, 0, 6] and test[3]["query_timestamp"] == 3001 and test[3]["target_item"] == 8
    assert validation[4]["items"] == [0, 0, 40] and test[4]["items"] == [0, 40, 41]
    assert test[4]["seen_items"] == [40, 41]


def test_every_row_matches_the_contract(exported, hand_users):
    out, _ = exported
    want = expected(hand_users, max_len=3, stride=3, last_gap="query_time")
    for name in SEQ_DATASETS:
        assert by_user(read_rows(out / name)) == by_user(want[name]), name
    for name in SEQ_DATASETS:
        assert pq.read_schema(sorted((out / name).glob("*.parquet"))[0]).equals(SEQUENCE_ROWS), name


def assert_no_leakage(out: Path) -> None:
    evaluation = {name: {r["user_idx"]: r for r in read_rows(out / name)} for name in ("validation", "test")}
    later = {}  # user -> items that must not appear in train (validation and test targets)
    for name in ("validation", "test"):
        for user, row in evaluation[name].items():
            later.setdefault(user, set()).add(row["target_item"])
    for row in read_rows(out / "train"):
        assert not later.get(row["user_idx"], set()) & (set(row["items"]) | set(row["targets"]))
    for user, row in evaluation["validation"].items():
        test_item = evaluation["test"][user]["target_item"]
        assert test_item not in row["items"] and test_item not in row["seen_items"]
        assert row["target_item"] not in row["items"] and row["target_item"] not in row["seen_items"]
    for user, row in evaluation["test"].items():
        assert row["target_item"] not in row["items"] and row["target_item"] not in row["seen_items"]
        if user in evaluation["validation"]:
            assert evaluation["validation"][user]["target_item"] in row["seen_items"]


def test_no_leakage_and_one_eval_row_per_user(exported, hand_users):
    out, _ = exported
    assert_no_leakage(out)
    test_users = [r["user_idx"] for r in read_rows(out / "test")]
    validation_users = [r["user_idx"] for r in read_rows(out / "validation")]
    assert sorted(test_users) == sorted(hand_users)  # everyone has a test item, exactly once
    assert sorted(validation_users) == sorted(u for u, ev in hand_users.items() if len(ev) >= 2)


def test_meta_row_groups_and_maps(exported, hand_users):
    out, meta = exported
    assert meta == json.loads((out / "meta.json").read_text())
    assert set(meta) == {"schema_version", "n_items", "n_users", "max_len", "rows", "tie_break", "seed",
                         "time", "last_gap", "created_at"}
    assert (meta["schema_version"], meta["max_len"], meta["last_gap"]) == (1, 3, "query_time")
    assert (meta["tie_break"], meta["seed"]) == ("hash", 7)  # copied from etl_report.json
    assert meta["time"] == "seconds"  # a report without `time` is an ETL that had timestamps
    assert meta["n_users"] == max(hand_users)
    assert meta["n_items"] == max(i for events in hand_users.values() for _, i, _ in events)
    for name in (*SEQ_DATASETS, "ncf_train", "edges"):
        sizes = row_groups(out / name)
        assert meta["rows"][name] == sum(sizes) > 0, name
        assert len(sizes) >= 2, (name, sizes)  # min_row_groups=2
        if name in SEQ_DATASETS:
            assert_exact_groups(out / name, 2)  # rows_per_group=2 (ncf_train, edges: ncf_rows_per_group)
    ncf = read_rows(out / "ncf_train")
    assert len(ncf) == sum(max(0, len(ev) - 2) for ev in hand_users.values())
    # the train graph: every (user, train item) exactly once, nothing of validation or test
    train_pairs = sorted((u, i) for u, events in hand_users.items()
                         for _, i, _, split in leave_last_out(events) if split == "train")
    assert sorted((r["user_idx"], r["item_idx"]) for r in read_rows(out / "edges")) == train_pairs
    items = pq.read_table(out / "item_map.parquet")
    users = pq.read_table(out / "user_map.parquet")
    assert str(items.schema.field("item_idx").type) == "int32" and str(items.schema.field("movieId").type) == "int64"
    assert items.column("movieId").to_pylist() == [500 + i for i in items.column("item_idx").to_pylist()]
    assert users.column("user_idx").to_pylist() == sorted(hand_users)
    assert users.column("userId").to_pylist() == [1000 + u for u in sorted(hand_users)]


def shard_keys(folder: Path, cur_shard: int = 0, shard_count: int = 1) -> list[tuple]:
    """Every row the project's shard reader yields for one reader of `shard_count`, as (user_idx, targets or
    target_item) (tests/test_shard_readers.py holds Petastorm to the same rows)."""
    from recsys_torch.shards import row_blocks

    columns = ["user_idx", "item_idx"] if folder.name in ("ncf_train", "edges") else \
        ["user_idx", "items", "targets", "target_item", "seen_items"]
    keys = []
    for block in row_blocks("pyarrow", folder, columns, cur_shard, shard_count, seed=0, shuffle=True):
        cols = [block[c] for c in columns[:3]]
        keys += [tuple(tuple(np.asarray(c[k]).ravel().tolist()) for c in cols) for k in range(len(cols[0]))]
    return keys


@pytest.mark.parametrize("name", [*SEQ_DATASETS, "ncf_train", "edges"])
def test_every_row_is_read_and_shards_are_disjoint(exported, name):
    out, meta = exported
    everything = shard_keys(out / name)
    assert len(everything) == meta["rows"][name]
    shards = [shard_keys(out / name, cur_shard=k, shard_count=2) for k in range(2)]
    assert shards[0] and shards[1]
    assert sorted(shards[0] + shards[1]) == sorted(everything)  # disjoint (as a multiset) and complete


def test_sliding_windows_target_time_and_many_files(spark, hand_warehouse, hand_users, tmp_path):
    out = tmp_path / "seq"
    config = SequenceConfig(max_len=4, stride=1, last_gap="target_time", rows_per_group=3, min_row_groups=8,
                            groups_per_file=2)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")  # row groups cut across Arrow batches
    try:
        meta = export_sequences(spark, hand_warehouse, out, config)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    want = expected(hand_users, max_len=4, stride=1, last_gap="target_time")
    for name in SEQ_DATASETS:
        assert by_user(read_rows(out / name)) == by_user(want[name]), name
        sizes = row_groups(out / name)
        assert meta["rows"][name] == sum(sizes) and len(sizes) >= 8
        assert_exact_groups(out / name, min(3, sum(sizes) // 8))
        assert len(list((out / name).glob("*.parquet"))) > 1
    user1 = [r for r in read_rows(out / "train") if r["user_idx"] == 1]
    assert [r["targets"] for r in user1] == [[0, 0, 0, 5], [0, 0, 5, 31], [0, 5, 31, 8], [5, 31, 8, 40],
                                             [31, 8, 40, 2]]
    assert all(r["query_timestamp"] == r["target_timestamp"] for r in read_rows(out / "test"))
    assert meta["last_gap"] == "target_time" and meta["max_len"] == 4
    assert_no_leakage(out)


@pytest.fixture
def keep_session_conf(spark):
    """The job applies conf/local.yaml to the (shared) session it gets; put the test session's settings back."""
    from recsys_spark.session import LOCAL_DEFAULTS

    keys = [k for k in LOCAL_DEFAULTS if spark.conf.isModifiable(k)]
    saved = {k: spark.conf.get(k, None) for k in keys}
    yield
    for key, value in saved.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def test_cli_rerun_is_deterministic_and_replaces_the_folder(exported, hand_warehouse, tmp_path, keep_session_conf):
    from jobs.export_sequences import main

    out, _ = exported
    again = tmp_path / "again"
    again.mkdir()
    (again / "meta.json").write_text("{}")
    (again / "stale.parquet").write_text("left over from an older export")
    assert main(["--warehouse", str(hand_warehouse), "--out", str(again),
                 "max_len=3", "sequences.rows_per_group=2", "min_row_groups=2"]) == 0
    assert not (again / "stale.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary folder left beside it
    for name in (*SEQ_DATASETS, "ncf_train", "edges"):
        first, second = sorted((out / name).glob("*.parquet")), sorted((again / name).glob("*.parquet"))
        assert [p.name for p in first] == [p.name for p in second]
        for a, b in zip(first, second):
            assert pq.read_table(a).equals(pq.read_table(b)), (name, a.name)
            assert row_groups(a.parent) == row_groups(b.parent)
    meta = json.loads((again / "meta.json").read_text())
    assert meta["rows"] == json.loads((out / "meta.json").read_text())["rows"]


def test_bad_input_and_config_are_clear_errors(spark, hand_warehouse, tmp_path, capsys):
    from jobs.export_sequences import main

    with pytest.raises(RecsysError, match="last_gap"):
        SequenceConfig.from_dict({"last_gap": "now"})
    with pytest.raises(RecsysError, match="stride"):
        SequenceConfig.from_dict({"max_len": 5, "stride": 6})
    with pytest.raises(RecsysError, match=r"unknown config key\(s\) sequences\."):
        SequenceConfig.from_dict({"maxlen": 5})
    assert main(["--warehouse", str(tmp_path / "missing")]) == 2
    assert "interactions" in capsys.readouterr().err and not (tmp_path / "missing").exists()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("not an export")
    with pytest.raises(RecsysError, match="refusing to replace"):
        export_sequences(spark, hand_warehouse, precious, SequenceConfig(**SMALL))
    assert (precious / "notes.txt").exists()

    broken = tmp_path / "broken"
    write_table(spark.createDataFrame([(1, 2)], "user_idx int, item_idx int"), broken / "interactions")
    with pytest.raises(RecsysError, match="lacks column"):
        export_sequences(spark, broken)
    empty = tmp_path / "empty"
    write_table(spark.createDataFrame([], COLUMNS), empty / "interactions")
    with pytest.raises(RecsysError, match="no rows"):
        export_sequences(spark, empty)
    assert sorted(p.name for p in empty.iterdir()) == ["interactions"]


def test_ml_small_warehouse(spark, ml_small_warehouse, tmp_path):
    from recsys_spark.delta import read_arrow

    out = tmp_path / "sequences"  # the shared warehouse is read-only
    meta = export_sequences(spark, ml_small_warehouse, out, SequenceConfig(max_len=200))
    assert meta["rows"]["test"] == 610 and meta["rows"]["validation"] == 610
    assert meta["n_items"] == 9724 and meta["n_users"] == 610
    report = json.loads((ml_small_warehouse / "etl_report.json").read_text())
    assert (meta["tie_break"], meta["seed"]) == (report["tie_break"], report["seed"])

    interactions = read_arrow(ml_small_warehouse / "interactions", columns=["user_idx", "split"]).to_pandas()
    n_train = interactions[interactions["split"] == "train"].groupby("user_idx").size()
    assert meta["rows"]["ncf_train"] == meta["rows"]["edges"] == int(n_train.sum())
    assert meta["rows"]["train"] == int(sum(math.ceil((n - 1) / 200) for n in n_train if n >= 2))
    for name in (*SEQ_DATASETS, "ncf_train", "edges"):
        sizes = row_groups(out / name)
        assert sum(sizes) == meta["rows"][name] and len(sizes) >= 8, (name, sizes)
    assert_no_leakage(out)
    test = read_rows(out / "test")
    assert len({r["user_idx"] for r in test}) == 610
    assert all(len(r["items"]) == 200 and r["query_timestamp"] == max(r["timestamps"]) + 1 for r in test)
    halves = [shard_keys(out / "test", cur_shard=k, shard_count=2) for k in range(2)]
    assert len(halves[0]) + len(halves[1]) == 610
    assert {k[0] for k in halves[0]}.isdisjoint({k[0] for k in halves[1]})
