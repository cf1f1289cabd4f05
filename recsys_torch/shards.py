"""The sequence shards of docs/SCHEMAS.md as files: their listing, footers and columns, and the two readers that
deliver one rank's row groups as numpy blocks. Torch-free: Petastorm's environment (pyarrow 14, numpy 1.26, no torch;
`scripts/setup.sh --petastorm`) imports this module to read the same shards for the parity test.

Both readers deliver the same row groups in the same order with the same in-group shuffle, so the same rows:
- `pyarrow` (the default): `pyarrow.parquet` row groups read in the calling thread, in Petastorm's order
  (`row_group_order`); any pyarrow version, any filesystem of recsys_core.storage.
- `petastorm`: Petastorm's `make_batch_reader`, which needs pyarrow < 15 and so its own environment (docs/PINS.md).
  It runs with one reader thread ('thread', the default: the next row group is read while the model trains) or in
  the calling thread ('dummy'), never with Petastorm's default pool of 10 shuffling threads, which returned no rows
  in 7 to 12 of 200 runs here (`petastorm_reader_args`). Petastorm 0.12 resolves `s3://` through s3fs, which the
  project does not install: remote shards are read with the pyarrow reader.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from recsys_core import storage
from recsys_torch.config import READER_POOLS, READERS
from recsys_torch.errors import RecsysError

SEQUENCE_COLUMNS = ("items", "timestamps", "targets")
EVAL_COLUMNS = ("user_idx", "items", "timestamps", "target_item", "query_timestamp", "seen_items")
PAIR_COLUMNS = ("user_idx", "item_idx")  # the rows of ncf_train/ and edges/: what a pair model trains on
READER_ENV = "RECSYS_SHARD_READER"


def _parquet():
    """pyarrow.parquet, imported when a shard is read (see the module docstring)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RecsysError("reading the sequence shards needs pyarrow, which is not installed") from None
    return pq


def resolve_reader(choice: str | None = None) -> str:
    """'pyarrow' or 'petastorm': `choice` (train.reader), else $RECSYS_SHARD_READER, else 'pyarrow'."""
    choice = choice or os.environ.get(READER_ENV) or "pyarrow"
    if choice not in READERS:
        raise RecsysError(f"shard reader must be one of {', '.join(READERS)} (train.reader or ${READER_ENV}), "
                          f"got {choice!r}")
    return choice


def sequences_dir(warehouse: str | Path, override: str | Path | None = None) -> str:
    """The shards' location (a path or a URI): `override` (train.sequences), else <warehouse>/sequences."""
    return str(override) if override else storage.join(str(warehouse), "sequences")


def shard_path(seq_dir: str | Path, *parts: str) -> str:
    """A split or file of the shards: shard_path("s3://b/wh/sequences", "train") == "s3://b/wh/sequences/train"."""
    return storage.join(str(seq_dir), *parts)


def _filesystem(location: str | Path):
    """(pyarrow filesystem, path inside it) of a shard location (recsys_core.storage: the warehouse's settings)."""
    try:
        return storage.filesystem(str(location))
    except (OSError, ValueError) as exc:
        raise RecsysError(f"{location}: cannot open its filesystem ({exc})") from None


def _file_type(filesys, path: str, location: str | Path):
    try:
        return filesys.get_file_info(path).type
    except OSError as exc:  # no such bucket, no credentials, endpoint unreachable: one line, not a trace
        raise RecsysError(f"{location}: cannot read it ({exc})") from None


def read_meta(seq_dir: str | Path) -> dict:
    """meta.json of the shards, checked for the keys the torch side needs."""
    from pyarrow import fs

    path = shard_path(seq_dir, "meta.json")
    filesys, inner = _filesystem(path)
    if _file_type(filesys, inner, path) != fs.FileType.File:
        raise RecsysError(f"sequence shards not found: {path} is missing (run `recsys export-sequences` first)")
    try:
        with filesys.open_input_stream(inner) as stream:
            text = stream.read().decode()
    except OSError as exc:
        raise RecsysError(f"{path}: cannot read it ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecsysError(f"{path}: not valid JSON ({exc})") from None
    from recsys_torch.schemas import META_REQUIRED_KEYS, SHARD_SCHEMA_VERSION  # pyarrow schemas: read time only

    missing = [key for key in META_REQUIRED_KEYS if key not in meta]
    if missing:
        raise RecsysError(f"{path}: missing key(s) {missing}")
    if meta["schema_version"] != SHARD_SCHEMA_VERSION:
        raise RecsysError(f"{path}: schema_version {meta['schema_version']} is not supported "
                          f"(expected {SHARD_SCHEMA_VERSION})")
    return meta


def _listing(folder: str | Path) -> tuple[object, list[str]]:
    """(filesystem, paths inside it) of the Parquet files under `folder` (none when it is no folder), in path
    order component by component, as pathlib sorts them (Petastorm's order); `_*` and `.*` files left out."""
    from pyarrow import fs

    filesys, inner = _filesystem(folder)
    if _file_type(filesys, inner, folder) != fs.FileType.Directory:
        return filesys, []
    try:
        entries = filesys.get_file_info(fs.FileSelector(inner, recursive=True))
    except OSError as exc:
        raise RecsysError(f"{folder}: cannot list it ({exc})") from None
    files = [e.path for e in entries if e.type == fs.FileType.File and e.base_name.endswith(".parquet")
             and not e.base_name.startswith(("_", "."))]
    return filesys, sorted(files, key=lambda path: path.split("/"))


def parquet_files(folder: str | Path) -> list[str]:
    """The Parquet files under `folder` as locations of its kind (plain paths, or URIs for a URI), in path order."""
    filesys, files = _listing(folder)
    if storage.is_local(str(folder)):
        return files
    _, inner = _filesystem(folder)
    root = storage.normalize(str(folder))
    return [root + path[len(inner.rstrip("/")):] for path in files]


def _metadata(filesys, path: str):
    try:
        return _parquet().ParquetFile(path, filesystem=filesys).metadata
    except OSError as exc:
        raise RecsysError(f"{path}: cannot read its Parquet footer ({exc})") from None


def _shard_files(folder: str | Path) -> tuple[object, list[str]]:
    filesys, files = _listing(folder)
    if not files:
        raise RecsysError(f"no Parquet shards in {folder} (run `recsys export-sequences` first)")
    return filesys, files


def count_row_groups(folder: str | Path) -> int:
    filesys, files = _shard_files(folder)
    return sum(_metadata(filesys, f).num_row_groups for f in files)


def count_rows(folder: str | Path) -> int:
    filesys, files = _listing(folder)
    return sum(_metadata(filesys, f).num_rows for f in files)


def row_groups(folder: str | Path) -> tuple[object, list[tuple[str, int]]]:
    """The filesystem, and (file, row group) of every row group, files in path order: the indices Petastorm shards
    and shuffles."""
    filesys, files = _listing(folder)
    return filesys, [(f, i) for f in files for i in range(_metadata(filesys, f).num_row_groups)]


def column_names(location: str | Path) -> list[str]:
    """The columns of one Parquet file (a location, as parquet_files gives them)."""
    filesys, inner = _filesystem(location)
    try:
        return _parquet().read_schema(inner, filesystem=filesys).names
    except OSError as exc:
        raise RecsysError(f"{location}: cannot read its Parquet schema ({exc})") from None


def read_columns(location: str | Path, columns: Sequence[str]):
    """A pyarrow Table of `columns` of a shard folder or file, through its filesystem; a missing column is named."""
    pq = _parquet()
    filesys, inner = _filesystem(location)
    try:
        return pq.read_table(inner, columns=list(columns), filesystem=filesys)
    except (OSError, KeyError, ValueError) as exc:  # pyarrow.lib.ArrowInvalid is a ValueError
        raise RecsysError(f"{location}: cannot read column(s) {list(columns)} ({exc})") from None


def row_group_order(n_groups: int, cur_shard: int, shard_count: int, seed: int, shuffle: bool) -> list[int]:
    """The row groups one reader reads, in order, as Petastorm 0.12's make_batch_reader picks them: with several
    shards, the indices shuffled by random.Random(seed), then those with index % shard_count == cur_shard;
    with shuffle, that list shuffled again by numpy's RandomState(seed) (its ventilator)."""
    order = list(range(n_groups))
    if shard_count > 1:
        random.Random(seed).shuffle(order)
        order = [i for i in order if i % shard_count == cur_shard]
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    return order


def column_array(column) -> np.ndarray:
    """A pyarrow column as numpy: scalars 1-D, lists [rows, width] (right-padded with 0 when their lengths differ,
    at least 1 wide: what Petastorm gives, seen_items padded by _pad_seen_items)."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        return column.to_numpy(zero_copy_only=False)
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    values = column.flatten().to_numpy(zero_copy_only=False)
    width = max(1, int(lengths.max(initial=0)))
    if len(lengths) and (lengths == width).all():
        return values.reshape(len(lengths), width)
    out = np.zeros((len(lengths), width), dtype=values.dtype)
    out[np.arange(width) < lengths[:, None]] = values
    return out


def _pad_seen_items(frame):
    """Petastorm stacks list columns into a matrix, so the variable-length seen_items is right-padded with 0
    (column 0 of the logits is padding and already -inf, so padding masks nothing real)."""
    width = max([1] + [len(v) for v in frame["seen_items"]])
    frame["seen_items"] = [np.pad(np.asarray(v, dtype=np.int32), (0, width - len(v))) for v in frame["seen_items"]]
    return frame


def _concat_rows(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate row blocks; 2-D blocks of different widths (seen_items) are right-padded with 0."""
    if parts[0].ndim == 2:
        width = max(p.shape[1] for p in parts)
        parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]))) if p.shape[1] < width else p for p in parts]
    return np.concatenate(parts)



def read_id_map(seq_dir: str | Path, name: str, idx_col: str, id_col: str) -> np.ndarray:
    """item_map/user_map as a lookup array: ids[idx] = MovieLens id (-1 where no row)."""
    from pyarrow import fs

    path = shard_path(seq_dir, f"{name}.parquet")
    filesys, inner = _filesystem(path)
    if _file_type(filesys, inner, path) == fs.FileType.NotFound:
        raise RecsysError(f"{path} is missing (run `recsys export-sequences` first)")
    table = read_columns(path, [idx_col, id_col])
    idx = table.column(idx_col).to_numpy().astype(np.int64)
    ids = np.full(int(idx.max(initial=0)) + 1, -1, dtype=np.int64)
    ids[idx] = table.column(id_col).to_numpy()
    return ids

def pyarrow_blocks(path: str | Path, columns: Sequence[str], cur_shard: int, shard_count: int, seed: int,
                   shuffle: bool) -> Iterator[dict[str, np.ndarray]]:
    """One block of rows per row group of reader `cur_shard` of `shard_count`, Petastorm's order and in-group
    permutation reproduced (its worker draws one permutation per row group from RandomState(seed))."""
    filesys, groups = row_groups(path)
    rows_rng = np.random.RandomState(seed)
    pq = _parquet()
    files = {}
    for index in row_group_order(len(groups), cur_shard, shard_count, seed, shuffle):
        file, group = groups[index]
        if file not in files:
            files[file] = pq.ParquetFile(file, filesystem=filesys)
        table = files[file].read_row_group(group, columns=list(columns))
        if shuffle:
            table = table.take(rows_rng.permutation(table.num_rows))
        yield {name: column_array(table.column(name)) for name in columns}


def petastorm_reader_args(columns: Sequence[str], cur_shard: int, shard_count: int, seed: int, shuffle: bool,
                          pool: str = "thread") -> dict:
    """make_batch_reader's arguments besides the URL: one reader thread at most (workers_count=1), whatever the
    pool, so rows arrive in the seeded order and none is lost (Petastorm's default is 10 threads)."""
    if pool not in READER_POOLS:
        raise RecsysError(f"reader_pool must be one of {READER_POOLS}, got {pool!r}")
    args = {"schema_fields": list(columns), "reader_pool_type": pool, "workers_count": 1, "num_epochs": 1,
            "seed": seed, "shuffle_row_groups": shuffle, "shuffle_rows": shuffle,
            "cur_shard": cur_shard if shard_count > 1 else None,
            "shard_count": shard_count if shard_count > 1 else None}
    if "seen_items" in columns:
        from petastorm.transform import TransformSpec

        args["transform_spec"] = TransformSpec(_pad_seen_items, edit_fields=[("seen_items", np.int32, (None,), False)])
    return args


def petastorm_blocks(path: str | Path, columns: Sequence[str], cur_shard: int, shard_count: int, seed: int,
                     shuffle: bool, pool: str = "thread") -> Iterator[dict[str, np.ndarray]]:
    """The same blocks through Petastorm; its reader is stopped and joined when the pass ends or is abandoned
    (the generator closed): a live reader thread at interpreter exit can abort the process."""
    location = str(path)
    if not storage.is_local(location):
        raise RecsysError(f"shard reader 'petastorm' cannot read {location}: Petastorm resolves remote URLs through "
                          f"s3fs, which the project does not install; the pyarrow reader can (train.reader: pyarrow)")
    try:
        from petastorm import make_batch_reader
    except ImportError:
        raise RecsysError("shard reader 'petastorm' was asked for (train.reader or $RECSYS_SHARD_READER), but "
                          "petastorm is not installed here: it needs pyarrow < 15, so it has its own environment "
                          "(bash scripts/setup.sh --petastorm; docs/PINS.md)") from None
    reader = make_batch_reader(Path(storage.local_path(location)).as_uri(),
                               **petastorm_reader_args(columns, cur_shard, shard_count, seed, shuffle, pool))
    try:
        for batch in reader:
            yield {name: np.asarray(getattr(batch, name)) for name in columns}
    finally:
        reader.stop()
        reader.join()


def row_blocks(reader: str, path: str | Path, columns: Sequence[str], cur_shard: int, shard_count: int, seed: int,
               shuffle: bool, pool: str = "thread") -> Iterator[dict[str, np.ndarray]]:
    if reader == "petastorm":
        return petastorm_blocks(path, columns, cur_shard, shard_count, seed, shuffle, pool)
    return pyarrow_blocks(path, columns, cur_shard, shard_count, seed, shuffle)


def dump_blocks(cases: list[dict], out: str | Path) -> None:
    """Each case's blocks ({reader, path, columns, cur_shard, shard_count, seed, shuffle[, pool]}) into one .npz:
    `<case>/<block>/<column>` arrays, what the parity test compares across two environments."""
    arrays = {}
    for number, case in enumerate(cases):
        blocks = row_blocks(case["reader"], case["path"], case["columns"], case["cur_shard"], case["shard_count"],
                            case["seed"], case["shuffle"], case.get("pool", "thread"))
        for index, block in enumerate(blocks):
            arrays.update({f"{number}/{index}/{name}": values for name, values in block.items()})
    np.savez(out, **arrays)


def main(argv: list[str]) -> int:
    """python -m recsys_torch.shards CASES.json OUT.npz: dump_blocks, in either environment (the parity test)."""
    if len(argv) != 2:
        print("usage: python -m recsys_torch.shards CASES.json OUT.npz", file=sys.stderr)
        return 2
    try:
        cases = json.loads(Path(argv[0]).read_text())
        for case in cases:
            if not parquet_files(case["path"]):  # the readers yield no block for it: say so, not an empty dump
                raise RecsysError(f"{argv[0]}: {case['path']} holds no Parquet shard")
        dump_blocks(cases, argv[1])
    except OSError as exc:
        print(f"error: {exc.filename or argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: {argv[0]}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as exc:
        print(f"error: {argv[0]}: a case lacks or mistypes a field ({exc}); each case has reader, path, columns, "
              "cur_shard, shard_count, seed, shuffle and optionally pool", file=sys.stderr)
        return 2
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
