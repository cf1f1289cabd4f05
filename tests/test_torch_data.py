"""Shard reading (recsys_torch.data): every row arrives exactly once across ranks, seeded order, clean release.
The Petastorm reader, in its own environment, is held to the same blocks by tests/test_shard_readers.py."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from recsys_torch.data import ShardSpec, make_loader, read_pair_positives
from recsys_torch.shards import EVAL_COLUMNS, READER_ENV, SEQUENCE_COLUMNS, read_meta
from recsys_torch.errors import RecsysError
from recsys_torch.negatives import sample_negatives
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("wh"), PlantedData(n_users=120, rows_per_group=8, n_files=2))


def read_rank(path, columns, rank, world, epoch, **kwargs) -> list[dict]:
    dataset, loader = make_loader(ShardSpec(path, columns, batch_size=7, rank=rank, world=world, seed=11, **kwargs))
    dataset.set_epoch(epoch)
    return list(loader)


def user_ids(batches) -> list[int]:
    return [u for batch in batches for u in batch["user_idx"].tolist()]


def test_two_ranks_are_disjoint_and_complete_every_time(seq_dir):
    expected = sorted(pq.read_table(seq_dir / "validation", columns=["user_idx"]).column(0).to_pylist())
    for run in range(5):
        ranks = [user_ids(read_rank(seq_dir / "validation", EVAL_COLUMNS, r, 2, run, shuffle_buffer=30))
                 for r in range(2)]
        assert not set(ranks[0]) & set(ranks[1]), f"run {run}: a row reached both ranks"
        assert sorted(ranks[0] + ranks[1]) == expected, f"run {run}: rows missing or duplicated"


def test_loader_worker_processes_split_the_rank_share(seq_dir):
    expected = sorted(pq.read_table(seq_dir / "validation", columns=["user_idx"]).column(0).to_pylist())
    got = []
    for rank in range(2):
        dataset, loader = make_loader(ShardSpec(seq_dir / "validation", ("user_idx",), 5, rank, 2, seed=3),
                                      num_workers=2)
        got += user_ids(loader)
    assert sorted(got) == expected


def test_batches_have_the_schema_shapes_and_values(seq_dir):
    meta = read_meta(seq_dir)
    table = pq.read_table(seq_dir / "validation").to_pandas().set_index("user_idx")
    batches = read_rank(seq_dir / "validation", EVAL_COLUMNS, 0, 1, 0)
    assert sum(len(b["user_idx"]) for b in batches) == meta["rows"]["validation"]
    assert all(len(b["user_idx"]) == 7 for b in batches[:-1])
    for batch in batches:
        assert batch["items"].dtype == torch.int64 and batch["items"].shape[1] == meta["max_len"]
        for row, user in enumerate(batch["user_idx"].tolist()):
            expected = table.loc[user]
            assert batch["items"][row].tolist() == list(expected["items"])
            assert batch["target_item"][row].item() == expected["target_item"]
            seen = batch["seen_items"][row]
            assert sorted(seen[seen != 0].tolist()) == sorted(expected["seen_items"])  # 0 = padding


def test_order_is_seeded_per_epoch(seq_dir):
    def order(epoch):
        return user_ids(read_rank(seq_dir / "train", ("user_idx",) + SEQUENCE_COLUMNS, 0, 1, epoch,
                                  shuffle_buffer=50))

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))


def test_fewer_row_groups_than_ranks_is_a_clear_error(tmp_path):
    seq = write_shards(tmp_path, PlantedData(n_users=20, rows_per_group=1000, n_files=1))
    with pytest.raises(RecsysError, match=r"1 row group\(s\), fewer than the 2"):
        make_loader(ShardSpec(seq / "validation", EVAL_COLUMNS, 8, rank=0, world=2))


def test_missing_or_foreign_meta_is_a_clear_error(tmp_path):
    with pytest.raises(RecsysError, match="export-sequences"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"schema_version": 9, "n_items": 1, "n_users": 1, "max_len": 2}))
    with pytest.raises(RecsysError, match="schema_version 9"):
        read_meta(tmp_path)


def test_negatives_are_uniform_seeded_and_avoid_positives(seq_dir):
    meta = read_meta(seq_dir)
    positives = read_pair_positives(seq_dir / "ncf_train", meta["n_items"])
    users = torch.from_numpy(pq.read_table(seq_dir / "ncf_train").column("user_idx").to_numpy().astype(np.int64))
    negs = sample_negatives(users, meta["n_items"], 4, torch.Generator().manual_seed(1), positives)
    again = sample_negatives(users, meta["n_items"], 4, torch.Generator().manual_seed(1), positives)
    assert torch.equal(negs, again)
    assert negs.min() >= 1 and negs.max() <= meta["n_items"]
    keys = users[:, None] * (meta["n_items"] + 1) + negs
    assert not torch.isin(keys, positives).any()
    raw = sample_negatives(users, meta["n_items"], 4, torch.Generator().manual_seed(1))
    assert torch.isin(users[:, None] * (meta["n_items"] + 1) + raw, positives).any()  # the rejection did work


def test_abandoned_pass_releases_the_reader_and_the_process_exits_0(seq_dir):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from recsys_torch.data import ShardSpec, make_loader
        from recsys_torch.shards import PAIR_COLUMNS
        dataset, loader = make_loader(ShardSpec(Path({str(seq_dir / 'ncf_train')!r}), PAIR_COLUMNS, 4))
        it = iter(loader)
        next(it)
        dataset.close()   # what the training loop does when the other rank ran dry first
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_batches_grouped_by_length_keep_every_row_once_and_cut_the_padding(seq_dir):
    expected = sorted(pq.read_table(seq_dir / "train", columns=["user_idx"]).column(0).to_pylist())
    lengths = {}
    for epoch in range(3):
        got, padded, trimmed = [], 0, 0
        for rank in range(2):
            for batch in read_rank(seq_dir / "train", ("user_idx", "items"), rank, 2, epoch, shuffle_buffer=40,
                                   group_by_length="items"):
                real = (batch["items"] != 0).sum(dim=1)
                got += batch["user_idx"].tolist()
                trimmed += int(real.max()) * len(real)
                padded += int(real.sum())
        assert sorted(got) == expected, f"epoch {epoch}: rows missing or duplicated"
        lengths[epoch] = padded / trimmed
    random = []
    for rank in range(2):
        for batch in read_rank(seq_dir / "train", ("user_idx", "items"), rank, 2, 0, shuffle_buffer=40):
            real = (batch["items"] != 0).sum(dim=1)
            random.append((int(real.sum()), int(real.max()) * len(real)))
    random_use = sum(a for a, _ in random) / sum(b for _, b in random)
    assert min(lengths.values()) > random_use  # less padding left after trimming each batch to its longest row


def read_with(reader: str, path: Path, columns, world: int, epoch: int, num_workers: int = 0, **kwargs) -> list:
    """Every rank's batches, rank after rank, through one reader."""
    batches = []
    for rank in range(world):
        dataset, loader = make_loader(ShardSpec(path, columns, batch_size=7, rank=rank, world=world, seed=11,
                                                reader=reader, **kwargs), num_workers=num_workers)
        dataset.set_epoch(epoch)
        batches.append(list(loader))
    return batches


# --- shards on object storage: moto's S3 server on loopback (tests/test_storage.py's fixtures) ----------------------

from test_storage import s3_server, s3_warehouse  # noqa: E402,F401  (pytest fixtures)


def _upload(folder: Path, bucket: str, prefix: str, s3_server: str) -> None:
    """Every file under `folder` to s3://bucket/prefix/..., as `aws s3 cp --recursive` would put it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())


def test_every_row_of_shards_on_s3_arrives_as_from_the_local_copy(seq_dir, s3_server, s3_warehouse, monkeypatch):
    from recsys_torch.data import item_counts
    from recsys_torch.shards import read_id_map
    from recsys_torch.shards import count_rows, sequences_dir

    monkeypatch.delenv(READER_ENV, raising=False)
    bucket = s3_warehouse.split("/")[2]
    _upload(seq_dir, bucket, "warehouse/sequences", s3_server)
    remote = sequences_dir(s3_warehouse)
    assert remote == f"{s3_warehouse}/sequences"
    assert read_meta(remote) == read_meta(seq_dir)
    meta = read_meta(seq_dir)
    assert torch.equal(item_counts(f"{remote}/train", meta["n_items"]), item_counts(seq_dir / "train", meta["n_items"]))
    assert np.array_equal(read_id_map(remote, "item_map", "item_idx", "movieId"),
                          read_id_map(seq_dir, "item_map", "item_idx", "movieId"))
    for split, columns in (("train", ("user_idx",) + SEQUENCE_COLUMNS), ("validation", EVAL_COLUMNS)):
        assert count_rows(f"{remote}/{split}") == count_rows(seq_dir / split) > 0
        for epoch in (0, 1):
            local = read_with("pyarrow", seq_dir / split, columns, 2, epoch, 0, shuffle_buffer=30)
            over_s3 = read_with(None, f"{remote}/{split}", columns, 2, epoch, 0, shuffle_buffer=30)
            assert [len(rank) for rank in over_s3] == [len(rank) for rank in local]
            for a, b in zip((b for rank in local for b in rank), (b for rank in over_s3 for b in rank)):
                assert all(torch.equal(a[name], b[name]) for name in columns)
        rows = sorted(u for rank in over_s3 for batch in rank for u in batch["user_idx"].tolist())
        assert rows == sorted(pq.read_table(seq_dir / split, columns=["user_idx"]).column(0).to_pylist())


def test_shards_as_a_file_uri_and_a_missing_split_on_s3(seq_dir, s3_server, s3_warehouse, monkeypatch):
    monkeypatch.delenv(READER_ENV, raising=False)
    uri = f"file://{seq_dir / 'validation'}"
    assert [len(rank) for rank in read_with(None, uri, EVAL_COLUMNS, 2, 0, 0)] == \
        [len(rank) for rank in read_with(None, seq_dir / "validation", EVAL_COLUMNS, 2, 0, 0)]
    with pytest.raises(RecsysError, match=r"no Parquet shards in s3://.*/sequences/missing"):
        read_with(None, f"{s3_warehouse}/sequences/missing", EVAL_COLUMNS, 1, 0, 0)
