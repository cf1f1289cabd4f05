"""Reading the sequence shards of docs/SCHEMAS.md, sharded by rank, in a DataLoader.

Each rank reads the row groups `i % world == rank` (sharding is by row group), in an order shuffled per epoch
from `seed + epoch`, then mixes rows through a seeded in-memory shuffle buffer and re-batches to `batch_size`.

Two readers deliver the same row groups in the same order with the same in-group shuffle, so the same rows:
- `petastorm`: Petastorm's `make_batch_reader` (needs pyarrow < 15, as pinned in the project's environment).
  Reader pool: 'thread' with one worker (the default) reads the next row group while the model trains and keeps
  the row order a pure function of the seed, so CPU training is reproducible; 'dummy' reads in the calling thread;
  more 'thread' workers read faster but in completion order. Every reader is stopped and joined when its pass ends
  or is abandoned: a live pyarrow reader at interpreter exit can abort the process (apache/arrow#34314).
- `pyarrow`: `pyarrow.parquet` row groups read in the calling thread, Petastorm's order reproduced (see
  `row_group_order`); any pyarrow version. The pool settings do not apply to it.
`auto` (the default) takes Petastorm when it is installed and the shards are local, else pyarrow;
$RECSYS_SHARD_READER or `ShardSpec.reader` forces one.

The shards' location is a path or a URI (`file:///…`, `s3://bucket/prefix/sequences`, `hdfs://…`), read through
the pyarrow filesystem of recsys_core.storage: the same filesystem and AWS_* settings as the warehouse. Petastorm 0.12
resolves an `s3://` URL through fsspec's s3fs, which the project does not install, so `auto` reads remote shards
with the pyarrow reader (the same rows in the same order).

Only torch and numpy are imported at module level: pyarrow and Petastorm are imported when a shard is read, so the
models and the trainer import on a machine without them.
"""
from __future__ import annotations

import json
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from recsys_core import storage
from recsys_torch.config import READER_POOLS
from recsys_torch.errors import RecsysError
from recsys_torch.negatives import sample_negatives  # noqa: F401  (trainer.py imports it from here until it is moved)

# petastorm 0.12.1 drives pyarrow's legacy dataset API, which warns on every call.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\.|$)")

SEQUENCE_COLUMNS = ("items", "timestamps", "targets")
EVAL_COLUMNS = ("user_idx", "items", "timestamps", "target_item", "query_timestamp", "seen_items")
PAIR_COLUMNS = ("user_idx", "item_idx")  # the rows of ncf_train/ and edges/: what a pair model trains on
READERS = ("auto", "petastorm", "pyarrow")
READER_ENV = "RECSYS_SHARD_READER"


def _parquet():
    """pyarrow.parquet, imported when a shard is read (see the module docstring)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RecsysError("reading the sequence shards needs pyarrow, which is not installed") from None
    return pq


def resolve_reader(choice: str | None = None, location: str | Path | None = None) -> str:
    """'petastorm' or 'pyarrow': `choice`, else $RECSYS_SHARD_READER, else 'auto' (Petastorm when installed and
    the shards at `location` are local)."""
    choice = choice or os.environ.get(READER_ENV) or "auto"
    if choice not in READERS:
        raise RecsysError(f"shard reader must be one of {', '.join(READERS)} (${READER_ENV} or ShardSpec.reader), "
                          f"got {choice!r}")
    if choice == "auto":
        if location is not None and not storage.is_local(str(location)):
            return "pyarrow"
        try:
            import petastorm  # noqa: F401
        except ImportError:
            return "pyarrow"
        return "petastorm"
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


@dataclass
class ShardSpec:
    """One split of the shards as this rank reads it."""
    path: str | Path             # a split's folder: a path or a URI (file://, s3://, ...)
    columns: Sequence[str]
    batch_size: int
    rank: int = 0
    world: int = 1
    seed: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 0      # rows mixed in memory across row groups (0: row-group order + in-group shuffle only)
    group_by_length: str | None = None  # a list column: batches of rows of similar length (see batch_order)
    reader_pool: str = "thread"  # petastorm only
    reader_workers: int = 1
    reader: str | None = None    # auto | petastorm | pyarrow; None: $RECSYS_SHARD_READER, else auto


class ShardDataset(IterableDataset):
    """Yields dicts of int64 tensors, one per column, `batch_size` rows each (the last batch may be smaller).

    `set_epoch(e)` before each pass picks that epoch's order (seed + e), as with DistributedSampler.
    """

    def __init__(self, spec: ShardSpec):
        super().__init__()
        if spec.reader_pool not in READER_POOLS:
            raise RecsysError(f"reader_pool must be one of {READER_POOLS}, got {spec.reader_pool!r}")
        if spec.batch_size < 1:
            raise RecsysError(f"batch_size must be >= 1, got {spec.batch_size}")
        self.spec = spec
        self.reader = resolve_reader(spec.reader, spec.path)
        self.epoch = 0
        self.row_groups = count_row_groups(spec.path)
        if self.row_groups < spec.world:
            raise self._too_few(spec.world, 1)
        self._readers: list = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        """(cur_shard, shard_count): the rank's share, split further between DataLoader worker processes."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        count = self.spec.world * workers
        if self.row_groups < count:
            raise self._too_few(self.spec.world, workers)
        return self.spec.rank * workers + worker, count

    def _too_few(self, world: int, workers: int) -> RecsysError:
        return RecsysError(
            f"{self.spec.path} has {self.row_groups} row group(s), fewer than the {world * workers} reader(s) "
            f"({world} rank(s) x {workers} loader worker(s)); the shards are split by row group, so export with "
            f"smaller row groups or train with fewer processes")

    def close(self) -> None:
        """Stop and join the readers of an abandoned pass (a pass that runs to its end releases its own)."""
        for reader in list(self._readers):
            self._release(reader)

    def _release(self, reader) -> None:
        if reader in self._readers:
            self._readers.remove(reader)
            reader.stop()
            reader.join()

    def _row_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        """One block of rows per row group, in the reader's order."""
        return self._petastorm_blocks() if self.reader == "petastorm" else self._pyarrow_blocks()

    def _pyarrow_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        spec = self.spec
        cur_shard, shard_count = self._shard()
        seed = spec.seed + self.epoch
        filesys, groups = row_groups(spec.path)
        rows_rng = np.random.RandomState(seed)  # Petastorm's worker: one in-group permutation per row group
        pq = _parquet()
        files = {}
        for index in row_group_order(len(groups), cur_shard, shard_count, seed, spec.shuffle):
            path, group = groups[index]
            if path not in files:
                files[path] = pq.ParquetFile(path, filesystem=filesys)
            table = files[path].read_row_group(group, columns=list(spec.columns))
            if spec.shuffle:
                table = table.take(rows_rng.permutation(table.num_rows))
            yield {name: column_array(table.column(name)) for name in spec.columns}

    def _petastorm_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            from petastorm import make_batch_reader
        except ImportError:
            raise RecsysError(f"shard reader 'petastorm' was asked for (${READER_ENV} or ShardSpec.reader), but "
                              f"petastorm is not installed") from None
        from petastorm.transform import TransformSpec

        spec = self.spec
        cur_shard, shard_count = self._shard()
        transform = None
        if "seen_items" in spec.columns:
            transform = TransformSpec(_pad_seen_items, edit_fields=[("seen_items", np.int32, (None,), False)])
        seed = spec.seed + self.epoch
        location = str(spec.path)
        if storage.is_local(location):
            url, filesys = Path(storage.local_path(location)).as_uri(), None
        else:  # Petastorm turns the URL into a path with fsspec (s3fs for s3://), then reads through `filesys`
            url, filesys = storage.native_path(location), _filesystem(location)[0]
        try:
            reader = make_batch_reader(
                url,
                filesystem=filesys,
                schema_fields=list(spec.columns),
                reader_pool_type=spec.reader_pool,
                workers_count=spec.reader_workers,
                num_epochs=1,
                seed=seed,
                shuffle_row_groups=spec.shuffle,
                shuffle_rows=spec.shuffle,
                cur_shard=cur_shard if shard_count > 1 else None,
                shard_count=shard_count if shard_count > 1 else None,
                transform_spec=transform,
            )
        except ImportError as exc:
            raise RecsysError(f"shard reader 'petastorm' cannot read {location} ({exc}); the pyarrow reader can "
                              f"(${READER_ENV}=pyarrow, or auto)") from None
        self._readers.append(reader)
        try:
            for batch in reader:
                yield {name: np.asarray(getattr(batch, name)) for name in spec.columns}
        finally:
            self._release(reader)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        spec = self.spec
        rng = np.random.default_rng([spec.seed, self.epoch]) if spec.shuffle and spec.shuffle_buffer > 0 else None
        hold = max(spec.shuffle_buffer, spec.batch_size) if rng is not None else spec.batch_size
        pending: list[dict[str, np.ndarray]] = []
        n_pending = 0

        def drain(final: bool) -> Iterator[dict[str, torch.Tensor]]:
            nonlocal pending, n_pending
            pool = {name: _concat_rows([block[name] for block in pending]) for name in spec.columns}
            if rng is not None:
                order = rng.permutation(n_pending)
                pool = {name: col[order] for name, col in pool.items()}
            n_out = n_pending if final else n_pending - n_pending % spec.batch_size
            starts = list(range(0, n_out, spec.batch_size))
            if rng is not None and spec.group_by_length:
                order = batch_order(pool[spec.group_by_length][:n_out], spec.batch_size, rng)
                pool = {name: np.concatenate([col[order], col[n_out:]]) for name, col in pool.items()}
                rng.shuffle(starts)
            for start in starts:
                yield {name: torch.from_numpy(col[start:start + spec.batch_size].astype(np.int64))
                       for name, col in pool.items()}
            rest = n_pending - n_out
            pending = [{name: col[n_out:] for name, col in pool.items()}] if rest else []
            n_pending = rest

        for block in self._row_blocks():
            pending.append(block)
            n_pending += len(block[spec.columns[0]])
            if n_pending >= hold:
                yield from drain(final=False)
        if n_pending:
            yield from drain(final=True)


def batch_order(sequences: np.ndarray, batch_size: int, rng: np.random.Generator,
                group_batches: int = 64) -> np.ndarray:
    """A row order in which consecutive `batch_size` rows have similar lengths (non-zero entries).

    The (already shuffled) rows are cut into groups of `group_batches` batches, each sorted by length, ties in
    random order. Sequences are left-padded and each batch is trimmed to its longest row (runtime.trim_left_padding),
    so on MovieLens, where a third of the windows are full and half are under 100 items, this nearly halves the
    encoder's work; the caller shuffles the order of the batches, so the model still sees them in random order."""
    lengths = (sequences != 0).sum(axis=1)
    group = batch_size * group_batches
    order = np.arange(len(lengths))
    for start in range(0, len(lengths), group):
        part = order[start:start + group]
        keys = lengths[part] + rng.random(len(part))  # random among equal lengths
        order[start:start + group] = part[np.argsort(keys, kind="stable")]
    return order


def make_loader(spec: ShardSpec, num_workers: int = 0, pin_memory: bool = False) -> tuple[ShardDataset, DataLoader]:
    """The dataset (call `set_epoch` on it) and a DataLoader over it; batching is done by the dataset."""
    dataset = ShardDataset(spec)
    # A generator of its own: starting a pass draws a seed from it, which must not move the global RNG that
    # dropout and sampled negatives use (a resumed run would otherwise draw different ones).
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                        persistent_workers=False, generator=torch.Generator().manual_seed(spec.seed))
    return dataset, loader


def in_lockstep(loader, dataset: ShardDataset, env) -> Iterator[tuple[dict, bool]]:
    """(batch, is_last) while every rank still has a batch: ranks may hold different row counts (Petastorm shards
    by row group), and DDP needs the same number of steps on each, so all stop when the first runs dry (like
    DistributedSampler with drop_last). One look-ahead batch tells the accumulation loop which step is the last.
    `env` is the rank's recsys_torch.runtime.DistEnv."""
    it = iter(loader)
    upcoming = next(it, None)
    try:
        while upcoming is not None:
            current = upcoming
            upcoming = next(it, None)
            if env.world > 1:  # on the CPU: no wait for the GPU's queued work, so steps keep overlapping
                flag = torch.tensor([0 if upcoming is None else 1])
                dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=env.control_group)
                if int(flag.item()) == 0:
                    upcoming = None
            yield current, upcoming is None
    finally:
        dataset.close()


def item_counts(train_split: str | Path, n_items: int) -> torch.Tensor:
    """How often each item is a training target in `train/` (the sampled softmax's proposal), [n_items + 1]."""
    import pyarrow.compute as pc

    table = read_columns(train_split, ["targets"])
    targets = pc.list_flatten(table.column("targets")).to_numpy(zero_copy_only=False)
    return torch.from_numpy(np.bincount(targets[targets > 0], minlength=n_items + 1)[: n_items + 1].astype(np.int64))


def read_pair_positives(path: str | Path, n_items: int) -> torch.Tensor:
    """Sorted keys user_idx * (n_items + 1) + item_idx of every train interaction (for rejecting negatives)."""
    table = read_columns(path, PAIR_COLUMNS)
    users = torch.from_numpy(table.column("user_idx").to_numpy().astype(np.int64))
    items = torch.from_numpy(table.column("item_idx").to_numpy().astype(np.int64))
    return torch.sort(users * (n_items + 1) + items).values


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
