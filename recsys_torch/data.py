"""Reading the sequence shards of docs/SCHEMAS.md, sharded by rank, in a DataLoader.

Each rank reads the row groups `i % world == rank` (sharding is by row group), in an order shuffled per epoch
from `seed + epoch`, then mixes rows through a seeded in-memory shuffle buffer and re-batches to `batch_size`.
The row groups come from one of two readers that deliver the same rows in the same order (`train.reader`: pyarrow,
the default, or petastorm in its own environment); they, and every file-level read, are in recsys_torch.shards.

The shards' location is a path or a URI (`file:///…`, `s3://bucket/prefix/sequences`, `hdfs://…`), read through
the pyarrow filesystem of recsys_core.storage: the same filesystem and AWS_* settings as the warehouse.

Only torch and numpy are imported at module level: pyarrow and Petastorm are imported when a shard is read, so the
models and the trainer import on a machine without them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from recsys_torch.errors import RecsysError
from recsys_torch.shards import PAIR_COLUMNS, _concat_rows, count_row_groups, read_columns, resolve_reader, row_blocks


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
    reader: str | None = None    # pyarrow | petastorm; None: $RECSYS_SHARD_READER, else pyarrow
    reader_pool: str = "thread"  # petastorm only: thread | dummy


class ShardDataset(IterableDataset):
    """Yields dicts of int64 tensors, one per column, `batch_size` rows each (the last batch may be smaller).

    `set_epoch(e)` before each pass picks that epoch's order (seed + e), as with DistributedSampler.
    """

    def __init__(self, spec: ShardSpec):
        super().__init__()
        if spec.batch_size < 1:
            raise RecsysError(f"batch_size must be >= 1, got {spec.batch_size}")
        self.spec = spec
        self.reader = resolve_reader(spec.reader)
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
        """Stop the readers of an abandoned pass (a pass that runs to its end releases its own)."""
        for blocks in list(self._readers):
            blocks.close()
        self._readers.clear()

    def _row_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        """One block of rows per row group, in the reader's order."""
        spec = self.spec
        cur_shard, shard_count = self._shard()
        blocks = row_blocks(self.reader, spec.path, spec.columns, cur_shard, shard_count, spec.seed + self.epoch,
                            spec.shuffle, spec.reader_pool)
        self._readers.append(blocks)
        try:
            yield from blocks
        finally:
            blocks.close()
            if blocks in self._readers:
                self._readers.remove(blocks)

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
