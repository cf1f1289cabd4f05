"""The `train:` section (conf/train.yaml < conf/<model>.yaml < key=value) as a typed, checked dataclass.

The budget is counted in optimizer steps, not epochs: `max_steps` (capped by `max_epochs` passes over the data),
validation every `eval_every` steps, warm-up as a fraction of the run, early stopping after `patience` validations
without a better NDCG@10. So the size of the data no longer decides how much a model learns; and when the data is
so small that an epoch would be only a few steps, the batch shrinks (down to `min_batch_size`) until an epoch has
at least `min_steps_per_epoch` steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from recsys_torch.errors import RecsysError

LOSSES = ("auto", "ce", "sampled_ce", "bce")
READER_POOLS = ("thread", "dummy")
DEVICES = ("auto", "cpu", "cuda")
RENAMED = {"epochs": "max_epochs (the budget is train.max_steps)", "warmup_steps": "warmup (a fraction of the run)",
           "stop_after_epoch": "stop_after_step", "ncf_negatives": "pair_negatives",
           "ncf_reject_positives": "pair_reject_positives"}


@dataclass
class TrainConfig:
    max_steps: int = 1500            # optimizer steps in the whole run
    max_epochs: int = 200            # ... or this many passes over the train split, whichever comes first
    eval_every: int = 100            # validate (and checkpoint) every N optimizer steps, and at the end
    eval_rows: int | None = 20_000   # validation rows scored per evaluation (all ranks together); null: all
    patience: int = 5                # validations without a better NDCG@10 before stopping
    batch_size: int = 128            # rows per micro-batch per rank (at most)
    min_batch_size: int = 16         # small data: the batch shrinks to this at the least ...
    min_steps_per_epoch: int = 25    # ... so that an epoch has at least this many optimizer steps
    grad_accum: int = 1              # micro-batches per optimizer step
    eval_batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01       # on matrices and embeddings, not on biases and norms
    warmup: float = 0.05             # linear warm-up over this fraction of the run, then cosine decay
    min_lr_ratio: float = 0.1        # the cosine ends at lr * min_lr_ratio
    max_grad_norm: float | None = 1.0
    loss: str = "auto"               # sequence models: auto (sampled_ce on CPU, ce on GPU) | ce | sampled_ce | bce
    negatives: int = 1024            # sampled_ce: negatives shared by the batch, drawn from item popularity
    seed: int = 42
    threads: int | None = None       # torch threads per rank on CPU; null: the machine's cores / ranks
    num_workers: int = 0             # DataLoader worker processes
    reader_pool: str = "thread"      # petastorm pool: 'thread' or 'dummy' (see recsys_torch.data)
    reader_workers: int = 1          # petastorm pool threads; 1 keeps the row order deterministic
    shuffle_buffer: int = 10_000     # rows mixed in memory across row groups
    group_by_length: bool = True     # sequence models: batches of windows of similar length (less padding)
    pair_negatives: int = 4          # pair models: sampled negatives per positive (NCF; LightGCN has its own)
    pair_reject_positives: bool = True  # pair models: redraw a negative that is one of the user's train items
    amp: bool = True                 # bf16 autocast, on GPU only
    device: str = "auto"             # auto | cpu | cuda
    nproc: int = 1                   # processes per node (read by the launcher, jobs/train.py)
    sequences: str | None = None     # shard folder; default <warehouse>/sequences
    output: str | None = None        # model folder; default <warehouse>/models/<model>
    stop_after_step: int | None = None  # end the run after this many steps, as a preemption would
    log_every: int = 20

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        if values is not None and not isinstance(values, dict):
            raise RecsysError(f"the train config section must be a mapping, got {values!r}")
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        for old, new in RENAMED.items():
            if old in values:
                raise RecsysError(f"train.{old} is gone: use train.{new}")
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecsysError(f"unknown train config key(s) {unknown}; known keys: {sorted(known)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("max_steps", "max_epochs", "eval_every", "patience", "batch_size", "min_batch_size",
                     "min_steps_per_epoch", "grad_accum", "eval_batch_size", "negatives", "nproc", "reader_workers",
                     "pair_negatives", "log_every"):
            _require(name, getattr(self, name), _is_int, lambda v: v >= 1, "a positive integer")
        for name in ("num_workers", "seed", "shuffle_buffer"):
            _require(name, getattr(self, name), _is_int, lambda v: v >= 0, "an integer >= 0")
        for name in ("eval_rows", "threads", "stop_after_step"):
            if getattr(self, name) is not None:
                _require(name, getattr(self, name), _is_int, lambda v: v >= 1, "null or a positive integer")
        _require("lr", self.lr, _is_number, lambda v: v > 0, "a number > 0")
        _require("weight_decay", self.weight_decay, _is_number, lambda v: v >= 0, "a number >= 0")
        _require("warmup", self.warmup, _is_number, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
        _require("min_lr_ratio", self.min_lr_ratio, _is_number, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        if self.max_grad_norm is not None:
            _require("max_grad_norm", self.max_grad_norm, _is_number, lambda v: v > 0, "a number > 0 (or null)")
        for name in ("amp", "pair_reject_positives", "group_by_length"):
            _require(name, getattr(self, name), lambda v: isinstance(v, bool), lambda v: True, "true or false")
        for name, allowed in (("loss", LOSSES), ("reader_pool", READER_POOLS), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise RecsysError(f"train.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.min_batch_size > self.batch_size:
            raise RecsysError(f"train.min_batch_size ({self.min_batch_size}) must not exceed train.batch_size "
                              f"({self.batch_size})")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise RecsysError("train.device=cuda but no CUDA device is available")

    def resolved_loss(self, on_gpu: bool) -> str:
        """`auto`: full softmax on a GPU (cheap there), the sampled softmax on CPU (a fraction of the time)."""
        if self.loss != "auto":
            return self.loss
        return "ce" if on_gpu else "sampled_ce"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(name: str, value, is_type, ok, rule: str) -> None:
    if not is_type(value) or not ok(value):
        raise RecsysError(f"train.{name} must be {rule}, got {value!r}")


def batch_size_for(rows: int, world: int, cfg: TrainConfig) -> int:
    """The micro-batch: `batch_size`, halved while an epoch would have fewer than `min_steps_per_epoch` optimizer
    steps, never below `min_batch_size`."""
    batch = cfg.batch_size
    while batch // 2 >= cfg.min_batch_size and rows / (world * batch * cfg.grad_accum) < cfg.min_steps_per_epoch:
        batch //= 2
    return max(batch, min(cfg.min_batch_size, cfg.batch_size))
