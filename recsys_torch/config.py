"""The `train:` section (conf/train.yaml < conf/<model>.yaml < key=value) as a typed, checked dataclass.

The budget is counted in optimizer steps, not epochs: `max_steps` (capped by `max_epochs` passes over the data),
validation every `eval_every` steps, warm-up as a fraction of the run, early stopping after `patience` validations
without a better NDCG@10. So the size of the data no longer decides how much a model learns; and when the data is
so small that an epoch would be only a few steps, the batch shrinks (down to `min_batch_size`) until an epoch has
at least `min_steps_per_epoch` steps.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from recsys_core.config import (BOOLEAN, NON_NEGATIVE, POSITIVE, Config, above, at_least, checked, number_in,
                                one_of)
from recsys_torch.errors import ConfigError

LOSSES = ("auto", "ce", "sampled_ce", "bce")
READERS = ("pyarrow", "petastorm")  # recsys_torch.shards
READER_POOLS = ("thread", "dummy")  # petastorm: one reader thread, or the calling thread
DEVICES = ("auto", "cpu", "cuda")
ENDPOINT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")  # host:port, [IPv6]:port
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RDZV_ID = re.compile(r"[A-Za-z0-9._-]+")
RENAMED = {"epochs": "max_epochs (the budget is train.max_steps)", "warmup_steps": "warmup (a fraction of the run)",
           "stop_after_epoch": "stop_after_step", "ncf_negatives": "pair_negatives",
           "ncf_reject_positives": "pair_reject_positives"}


@dataclass
class TrainConfig(Config):
    section = "train"

    max_steps: int = checked(1500, POSITIVE)          # optimizer steps in the whole run
    max_epochs: int = checked(200, POSITIVE)          # ... or this many passes over the train split, whichever first
    eval_every: int = checked(100, POSITIVE)          # validate (and checkpoint) every N optimizer steps, and at the end
    eval_rows: int | None = checked(20_000, POSITIVE)  # the first rows of validation/ scored each time; null: all
    patience: int = checked(5, POSITIVE)              # validations without a better NDCG@10 before stopping
    batch_size: int = checked(128, POSITIVE)          # rows per micro-batch per rank (at most)
    min_batch_size: int = checked(16, POSITIVE)       # small data: the batch shrinks to this at the least ...
    min_steps_per_epoch: int = checked(25, POSITIVE)  # ... so that an epoch has at least this many optimizer steps
    grad_accum: int = checked(1, POSITIVE)            # micro-batches per optimizer step
    eval_batch_size: int = checked(256, POSITIVE)
    lr: float = checked(2e-3, above(0))
    weight_decay: float = checked(0.01, at_least(0))  # on matrices and embeddings, not on biases and norms
    warmup: float = checked(0.05, number_in(0, 1, high_open=True))  # linear warm-up over this fraction, then cosine
    min_lr_ratio: float = checked(0.1, number_in(0, 1))             # the cosine ends at lr * min_lr_ratio
    max_grad_norm: float | None = checked(1.0, above(0))
    loss: str = checked("auto", one_of(*LOSSES))  # sequence models: auto (sampled_ce on CPU, ce on GPU) | ce | ...
    negatives: int = checked(1024, POSITIVE)      # sampled_ce: negatives shared by the batch, drawn from popularity
    seed: int = checked(42, NON_NEGATIVE)
    threads: int | None = checked(None, POSITIVE)  # torch threads per rank on CPU; null: the machine's cores / ranks
    num_workers: int = checked(0, NON_NEGATIVE)    # DataLoader worker processes
    reader: str = checked("pyarrow", one_of(*READERS))  # shard reader: pyarrow | petastorm (its own environment)
    reader_pool: str = checked("thread", one_of(*READER_POOLS))  # petastorm: thread (one) | dummy (recsys_torch.shards)
    shuffle_buffer: int = checked(10_000, NON_NEGATIVE)  # rows mixed in memory across row groups
    group_by_length: bool = checked(True, BOOLEAN)  # sequence models: batches of windows of similar length
    pair_negatives: int = checked(4, POSITIVE)      # pair models: sampled negatives per positive (NCF; LightGCN has its own)
    pair_reject_positives: bool = checked(True, BOOLEAN)  # pair models: redraw a negative that is one of the user's train items
    amp: bool = checked(True, BOOLEAN)              # bf16 autocast, on GPU only
    device: str = checked("auto", one_of(*DEVICES))  # auto | cpu | cuda
    nproc: int = checked(1, POSITIVE)               # processes per node (read by the launcher, jobs/train.py)
    # Several nodes (the launcher's torchrun flags, jobs/torchrun.py; docs/TRAINING.md "Multi-node"): every node
    # runs the same command with the same nnodes, rdzv_endpoint and rdzv_id; c10d rendezvous assigns the ranks.
    nnodes: int = checked(1, POSITIVE)              # nodes in the job
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous (one of the nodes); ${VAR} read at launch
    rdzv_id: str | None = None        # the job's rendezvous name; null: recsys-<model>-<run date>
    node_rank: int | None = checked(None, NON_NEGATIVE)  # optional: fixes this node's rank (c10d assigns one)
    max_restarts: int = checked(0, NON_NEGATIVE)    # times torchrun restarts the workers after a failure
    launch_env: dict = dataclasses.field(default_factory=dict)  # environment of torchrun and its workers (NCCL_*)
    sequences: str | None = None     # shard folder; default <warehouse>/sequences
    output: str | None = None        # model folder; default <warehouse>/models/<model>
    stop_after_step: int | None = checked(None, POSITIVE)  # end the run after this many steps, as a preemption would
    log_every: int = checked(20, POSITIVE)

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        for old, new in RENAMED.items():
            if isinstance(values, dict) and old in values:
                raise ConfigError(f"train.{old} is gone: use train.{new}")
        return super().from_dict(values)

    def validate(self) -> None:
        if self.min_batch_size > self.batch_size:
            raise ConfigError(f"train.min_batch_size must be at most train.batch_size ({self.batch_size}), "
                              f"got {self.min_batch_size!r}")
        if self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ConfigError(f"train.node_rank ({self.node_rank}) must be below train.nnodes ({self.nnodes})")
        if self.rdzv_endpoint is not None and not (ENV_REFERENCE.search(self.rdzv_endpoint)
                                                   or ENDPOINT.fullmatch(self.rdzv_endpoint)):
            raise ConfigError(f"train.rdzv_endpoint must be host:port (or name an environment variable as "
                              f"${{NAME}}), got {self.rdzv_endpoint!r}")
        if self.rdzv_id is not None and not RDZV_ID.fullmatch(self.rdzv_id):
            raise ConfigError(f"train.rdzv_id must be letters, digits, '.', '_' or '-', got {self.rdzv_id!r}")
        for name, value in self.launch_env.items():
            if not (isinstance(name, str) and ENV_NAME.fullmatch(name)) or isinstance(value, (dict, list)):
                raise ConfigError(f"train.launch_env must map variable names to values, got {name!r}: {value!r}")

    def resolved_loss(self, on_gpu: bool) -> str:
        """`auto`: full softmax on a GPU (cheap there), the sampled softmax on CPU (a fraction of the time)."""
        if self.loss != "auto":
            return self.loss
        return "ce" if on_gpu else "sampled_ce"


def batch_size_for(rows: int, world: int, cfg: TrainConfig) -> int:
    """The micro-batch: `batch_size`, halved while an epoch would have fewer than `min_steps_per_epoch` optimizer
    steps, never below `min_batch_size`."""
    batch = cfg.batch_size
    while batch // 2 >= cfg.min_batch_size and rows / (world * batch * cfg.grad_accum) < cfg.min_steps_per_epoch:
        batch //= 2
    return batch
