"""The two readers of the shard contract (recsys_torch.shards), each in its own environment: the project's pyarrow
reader here (pyarrow >= 21, numpy 2) and Petastorm in `.venv-petastorm` (pyarrow 14, numpy 1.26; built by
`scripts/setup.sh --tests` or `--petastorm`). Both read the same shards, the planted ones and a Spark export, and
must deliver the same blocks: the same rows, in the same order, for every rank."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys_torch.errors import RecsysError
from recsys_torch.shards import (EVAL_COLUMNS, PAIR_COLUMNS, SEQUENCE_COLUMNS, dump_blocks, petastorm_reader_args,
                                 resolve_reader, row_blocks, sequences_dir)
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
PETASTORM_PYTHON = REPO / ".venv-petastorm" / "bin" / "python"
COLUMNS = {"train": ("user_idx",) + SEQUENCE_COLUMNS, "validation": EVAL_COLUMNS, "test": EVAL_COLUMNS,
           "ncf_train": PAIR_COLUMNS, "edges": PAIR_COLUMNS}
REPEATS = 20  # Petastorm's default shuffling thread pool lost every row in 7-12 of 200 runs here


def petastorm_python() -> Path:
    if not PETASTORM_PYTHON.exists():
        pytest.fail(f"{PETASTORM_PYTHON} is missing: `bash scripts/setup.sh --tests` (or --petastorm) builds "
                    f"Petastorm's environment, which this test reads the shards with")
    return PETASTORM_PYTHON


def in_petastorm_env(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore::FutureWarning"}
    result = subprocess.run([str(petastorm_python()), *args], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def cases_of(folder: Path, splits, shard_counts=(1, 2, 3), seeds=(11, 12)) -> list[dict]:
    cases = []
    for split in splits:
        for shard_count in shard_counts:
            for seed in seeds:
                for shuffle, pool in ((True, "thread"), (False, "dummy")):
                    cases += [{"path": str(folder / split), "columns": list(COLUMNS[split]), "cur_shard": shard,
                               "shard_count": shard_count, "seed": seed, "shuffle": shuffle, "pool": pool}
                              for shard in range(shard_count)]
    return cases


def blocks_by_case(npz: Path) -> dict[int, dict[int, dict[str, np.ndarray]]]:
    cases: dict[int, dict[int, dict[str, np.ndarray]]] = {}
    with np.load(npz) as arrays:
        for key in arrays.files:
            case, block, column = key.split("/")
            cases.setdefault(int(case), {}).setdefault(int(block), {})[column] = arrays[key]
    return cases


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("planted"), PlantedData(n_users=90, rows_per_group=6, n_files=3))


def test_petastorm_and_pyarrow_deliver_the_same_blocks_from_the_same_shards(planted, small_warehouse, tmp_path):
    exported = Path(sequences_dir(small_warehouse))
    cases = (cases_of(planted, ("train", "validation", "ncf_train"))
             + cases_of(exported, COLUMNS, shard_counts=(2,), seeds=(0,)))
    repeated = [{"path": f"file://{planted / 'validation'}", "columns": list(EVAL_COLUMNS), "cur_shard": 0,
                 "shard_count": 1, "seed": run, "shuffle": True, "pool": "thread"} for run in range(REPEATS)]
    (tmp_path / "petastorm.json").write_text(json.dumps([{**c, "reader": "petastorm"} for c in cases + repeated]))
    in_petastorm_env(["-m", "recsys_torch.shards", "petastorm.json", "petastorm.npz"], tmp_path)
    dump_blocks([{**c, "reader": "pyarrow"} for c in cases + repeated], tmp_path / "pyarrow.npz")
    theirs, ours = blocks_by_case(tmp_path / "petastorm.npz"), blocks_by_case(tmp_path / "pyarrow.npz")

    for number, case in enumerate(cases + repeated):
        where = f"case {number} ({Path(case['path']).name}, shard {case['cur_shard']}/{case['shard_count']}, " \
                f"seed {case['seed']})"
        assert theirs.get(number, {}).keys() == ours.get(number, {}).keys(), f"{where}: another number of blocks"
        for block in ours.get(number, {}):
            for column in case["columns"]:
                a, b = theirs[number][block][column], ours[number][block][column]
                assert a.shape == b.shape and (a == b).all(), f"{where}, block {block}: {column} differs"
    # every row arrives once: the shards of each (split, shard_count, seed) together hold the split's rows
    for number, case in enumerate(cases + repeated):
        if case["cur_shard"] != 0:
            continue
        folder = Path(case["path"].removeprefix("file://"))
        share = range(number, number + case["shard_count"])
        users = sorted(u for n in share for block in theirs.get(n, {}).values() for u in block["user_idx"].tolist())
        expected = sorted(pq.read_table(folder, columns=["user_idx"]).column(0).to_pylist())
        assert expected and users == expected, f"case {number}: rows missing or duplicated through Petastorm"


def test_the_project_never_uses_petastorms_default_shuffling_thread_pool(tmp_path):
    defaults = json.loads(in_petastorm_env(["-c", (
        "import inspect, json; from petastorm import make_batch_reader; "
        "p = inspect.signature(make_batch_reader).parameters; "
        "print(json.dumps({k: p[k].default for k in ('reader_pool_type', 'workers_count', 'shuffle_row_groups')}))"
    )], tmp_path).stdout)
    assert defaults == {"reader_pool_type": "thread", "workers_count": 10, "shuffle_row_groups": True}
    for pool in ("thread", "dummy"):
        args = petastorm_reader_args(PAIR_COLUMNS, 0, 2, 7, True, pool)
        assert args["workers_count"] == 1 and args["reader_pool_type"] == pool
    with pytest.raises(RecsysError, match="reader_pool must be one of"):
        petastorm_reader_args(PAIR_COLUMNS, 0, 1, 7, True, "process")


def test_pyarrow_is_the_default_and_petastorm_here_is_a_clear_error(planted, monkeypatch):
    monkeypatch.delenv("RECSYS_SHARD_READER", raising=False)
    assert resolve_reader() == "pyarrow"
    assert resolve_reader("petastorm") == "petastorm"
    monkeypatch.setenv("RECSYS_SHARD_READER", "parquet")
    with pytest.raises(RecsysError, match=r"train.reader or \$RECSYS_SHARD_READER.*'parquet'"):
        resolve_reader()
    if importlib.util.find_spec("petastorm") is None:  # the main environment: Petastorm lives in its own
        with pytest.raises(RecsysError, match=r"petastorm is not installed here.*setup.sh --petastorm"):
            next(row_blocks("petastorm", planted / "validation", EVAL_COLUMNS, 0, 1, 0, True))
    with pytest.raises(RecsysError, match=r"cannot read s3://b/sequences/validation.*the pyarrow reader can"):
        next(row_blocks("petastorm", "s3://b/sequences/validation", EVAL_COLUMNS, 0, 1, 0, True))


def test_the_dump_tool_refuses_bad_cases_in_one_line(planted, tmp_path, capsys):
    """`python -m recsys_torch.shards CASES OUT` (the parity test's tool): a bad case file is exit 2 and one line
    naming the file, and a case whose folder holds no shard is refused, not dumped as an empty case."""
    from recsys_torch.shards import main

    good = {"reader": "pyarrow", "path": str(planted / "validation"), "columns": list(EVAL_COLUMNS),
            "cur_shard": 0, "shard_count": 1, "seed": 0, "shuffle": False}
    for name, text, message in [
            ("broken.json", "[{", "broken.json: line 1, column 3: not JSON"),
            ("lacking.json", json.dumps([{k: v for k, v in good.items() if k != "seed"}]), "lacks or mistypes"),
            ("empty.json", json.dumps([{**good, "path": str(tmp_path / "nothing")}]), "holds no Parquet shard")]:
        (tmp_path / name).write_text(text)
        assert main([str(tmp_path / name), str(tmp_path / "out.npz")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.npz").exists()
    (tmp_path / "good.json").write_text(json.dumps([good]))
    assert main([str(tmp_path / "good.json"), str(tmp_path / "out.npz")]) == 0
    assert sum(len(block["user_idx"]) for block in blocks_by_case(tmp_path / "out.npz")[0].values()) == (
        pq.ParquetDataset(planted / "validation").read().num_rows)
