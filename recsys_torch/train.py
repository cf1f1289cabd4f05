"""The training recipe for ncf | sasrec | ss4rec: DDP, bf16 autocast on GPU, gradient accumulation, AdamW with
linear warm-up and cosine decay, early stopping on validation NDCG@10, atomic per-epoch checkpoints, resume.

Run one process per device under torchrun (`jobs/train.py`), or call `train()` directly in one process.
Outputs in `<warehouse>/models/<model>/`: checkpoint.pt (last epoch), best.pt (best validation NDCG@10),
config.json (the resolved config). Rank 0 writes files and logs to MLflow; every rank trains.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from recsys_torch import checkpoint as ckpt_io
from recsys_torch.data import (EVAL_COLUMNS, NCF_COLUMNS, SEQUENCE_COLUMNS, ShardDataset, ShardSpec, count_rows,
                               make_loader, read_meta, read_ncf_positives, sample_negatives, sequences_dir)
from recsys_torch.errors import RecsysError
from recsys_torch.metrics import hit_and_ndcg, mask_seen, target_ranks

MODEL_NAMES = ("ncf", "sasrec", "ss4rec")
SEQUENCE_MODELS = ("sasrec", "ss4rec")
EVAL_K = 10


@dataclass
class TrainConfig:
    """The `train:` section (conf/train.yaml, then conf/<model>.yaml, then key=value overrides)."""
    epochs: int = 20
    batch_size: int = 256          # rows per micro-batch per rank
    grad_accum: int = 1            # micro-batches per optimizer step
    eval_batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.01     # on matrices and embeddings, not on biases and norms
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1      # cosine decays to lr * min_lr_ratio at the last step
    max_grad_norm: float | None = 1.0
    patience: int = 3              # epochs without a better validation NDCG@10 before stopping
    seed: int = 42
    num_workers: int = 0           # DataLoader worker processes (each reads its own sub-shard)
    reader_pool: str = "thread"    # petastorm pool: 'thread' or 'dummy' (see recsys_torch.data)
    reader_workers: int = 1        # petastorm pool threads; 1 keeps the row order deterministic
    shuffle_buffer: int = 10_000   # rows mixed in memory across row groups
    ncf_negatives: int = 4         # sampled negatives per positive (NCF)
    ncf_reject_positives: bool = True
    amp: bool = True               # bf16 autocast, on GPU only
    device: str = "auto"           # auto | cpu | cuda
    nproc: int = 1                 # processes per node (read by the launcher, jobs/train.py)
    sequences: str | None = None   # shard folder; default <warehouse>/sequences
    output: str | None = None      # model folder; default <warehouse>/models/<model>
    stop_after_epoch: int | None = None  # end the run after this many epochs, as a preemption would
    log_every: int = 20

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        if values is not None and not isinstance(values, dict):
            raise RecsysError(f"the train config section must be a mapping, got {values!r}")
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecsysError(f"unknown train config key(s) {unknown}; known keys: {sorted(known)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum", "eval_batch_size", "patience", "nproc", "reader_workers",
                    "ncf_negatives", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise RecsysError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("num_workers", "warmup_steps", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise RecsysError(f"train.{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.stop_after_epoch is not None and (not _is_int(self.stop_after_epoch) or self.stop_after_epoch < 1):
            raise RecsysError(f"train.stop_after_epoch must be null or >= 1, got {self.stop_after_epoch!r}")
        numbers = [("lr", self.lr, lambda v: v > 0, "> 0"), ("weight_decay", self.weight_decay, lambda v: v >= 0, ">= 0"),
                   ("min_lr_ratio", self.min_lr_ratio, lambda v: 0 <= v <= 1, "in [0, 1]")]
        if self.max_grad_norm is not None:
            numbers.append(("max_grad_norm", self.max_grad_norm, lambda v: v > 0, "> 0 (or null: no clipping)"))
        for name, value, ok, rule in numbers:
            if not _is_number(value) or not ok(value):
                raise RecsysError(f"train.{name} must be a number {rule}, got {value!r}")
        for name in ("amp", "ncf_reject_positives"):
            if not isinstance(getattr(self, name), bool):
                raise RecsysError(f"train.{name} must be true or false, got {getattr(self, name)!r}")
        if self.reader_pool not in ("thread", "dummy"):
            raise RecsysError(f"train.reader_pool must be thread or dummy, got {self.reader_pool!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise RecsysError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RecsysError("train.device=cuda but no CUDA device is available")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    # Host-side agreement between ranks (gloo, CPU tensors): asking NCCL would make the CPU wait for the GPU.
    control_group: object = None  # None: the default group (gloo already when training on CPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str = "auto") -> DistEnv:
    """Read torchrun's environment; NCCL on GPU, gloo on CPU. A single process needs no process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    control_group = None
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if dist.get_backend() != "gloo":
            control_group = dist.new_group(backend="gloo")
    return DistEnv(rank, world, local_rank, device, control_group)


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total_steps` (flat after).

    The warm-up is capped at a tenth of the run: on a small data set (ml-latest-small has ~7 SASRec steps an
    epoch) a fixed 100-step warm-up would otherwise take most of the training.
    """
    warmup_steps = max(1, min(warmup_steps, total_steps // 10))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT-style: decay tensors of 2+ dims (matrices, embeddings), not biases and norm scales."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class LossModule(nn.Module):
    """Routes DDP's forward to the model's `training_loss`, so DDP's gradient hooks see the real computation."""

    def __init__(self, model: nn.Module, model_name: str):
        super().__init__()
        self.model = model
        self.model_name = model_name

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.model_name == "ncf":
            return self.model.training_loss(batch["user_idx"], batch["item_idx"], batch["neg_items"])
        return self.model.training_loss(batch["items"], batch["timestamps"], batch["targets"])


def score_batch(model: nn.Module, model_name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits over the whole catalogue, [B, n_items + 1] float32, column 0 = -inf."""
    if model_name == "ncf":
        return model.score_users(batch["user_idx"]).float()
    return model.score_last(batch["items"], batch["timestamps"], batch["query_timestamp"]).float()


def autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: t.to(device, non_blocking=True) for name, t in batch.items()}


def in_lockstep(loader, dataset: ShardDataset, env: DistEnv) -> Iterator[tuple[dict, bool]]:
    """(batch, is_last) while every rank still has a batch: ranks may hold different row counts (Petastorm shards
    by row group), and DDP needs the same number of steps on each, so all stop when the first runs dry (like
    DistributedSampler with drop_last). One look-ahead batch tells the accumulation loop which step is the last."""
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


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=env.device)
    if env.world > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, model_name: str, loader, env: DistEnv, amp: bool, k: int = EVAL_K) -> dict[str, float]:
    """Full-ranking HR@k / NDCG@k of the validation targets, seen items excluded, over all ranks' shards."""
    was_training = model.training
    model.eval()
    hits = ndcgs = rows = 0.0
    for batch in loader:
        batch = to_device(batch, env.device)
        with autocast(env.device, amp):
            logits = score_batch(model, model_name, batch)
        mask_seen(logits, batch["seen_items"])
        hit, ndcg = hit_and_ndcg(target_ranks(logits, batch["target_item"]), k)
        hits += float(hit.sum())
        ndcgs += float(ndcg.sum())
        rows += len(hit)
    model.train(was_training)
    hits, ndcgs, rows = all_reduce_sum([hits, ndcgs, rows], env)
    return {f"hr@{k}": hits / max(rows, 1.0), f"ndcg@{k}": ndcgs / max(rows, 1.0), "rows": rows}


def model_config(model_name: str, cfg: dict, meta: dict) -> dict:
    """conf/<model>.yaml's section, completed from meta.json (catalogue sizes, shard length)."""
    from recsys_torch.models import MODELS

    if model_name not in MODELS:
        raise RecsysError(f"unknown model {model_name!r}; choose one of {sorted(MODELS)}")
    section = cfg.get(model_name) or {}
    if not isinstance(section, dict):
        raise RecsysError(f"config section {model_name!r} must be a mapping")
    known = {f.name for f in dataclasses.fields(MODELS[model_name][1])}
    values = dict(section)
    values["n_items"] = int(meta["n_items"])
    if "n_users" in known:
        values["n_users"] = int(meta["n_users"])
    if "max_len" in known:
        values["max_len"] = int(meta["max_len"])
    return values


def build(model_name: str, model_cfg: dict, device: torch.device) -> nn.Module:
    from recsys_torch.models import build_model

    try:
        return build_model(model_name, model_cfg, device)
    except ValueError as exc:
        raise RecsysError(str(exc)) from None


def flatten(prefix: str, values: Any) -> dict[str, Any]:
    if isinstance(values, dict):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: values}


class MlflowLogger:
    """MLflow from rank 0 only; a no-op elsewhere or when `mlflow.enabled: false`.

    Store: `mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else SQLite under `<warehouse>/_mlflow` (as
    jobs/tracking.py); experiment: $MLFLOW_EXPERIMENT_ID (set by `recsys train` for its workers), else
    `mlflow.experiment` by name. Under `recsys pipeline` the run is tagged with the pipeline's parent run.
    """

    def __init__(self, cfg: dict, warehouse: Path, active: bool):
        section = cfg.get("mlflow") or {}
        self.active = active and section.get("enabled", True)
        self.run_id: str | None = None
        if not self.active:
            return
        import mlflow

        self.mlflow = mlflow
        uri = section.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            root = warehouse.resolve() / "_mlflow"
            root.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        self.experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
        if not self.experiment_id:
            name = section.get("experiment") or "recsys"
            found = mlflow.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found else mlflow.create_experiment(
                name, artifact_location=(warehouse.resolve() / "_mlflow" / "artifacts").as_uri())

    def start(self, run_name: str, params: dict, resume_run_id: str | None) -> None:
        if not self.active:
            return
        run = None
        if resume_run_id:
            try:
                run = self.mlflow.start_run(run_id=resume_run_id)
            except Exception:  # noqa: BLE001 - the old run is gone (store moved): start a new one
                run = None
        if run is None:
            tags = {"recsys.step": os.environ.get("RECSYS_STEP_NAME", "train")}
            if os.environ.get("RECSYS_MLFLOW_PARENT_RUN_ID"):
                tags["mlflow.parentRunId"] = os.environ["RECSYS_MLFLOW_PARENT_RUN_ID"]
            run = self.mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, tags=tags)
            self.mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        self.run_id = run.info.run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.active:
            self.mlflow.log_metrics(values, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        if self.active:
            for path in paths:
                if path.exists():
                    self.mlflow.log_artifact(str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self.active and self.mlflow.active_run() is not None:
            self.mlflow.end_run(status=status)


def progress_bar(active: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                    transient=True, disable=not (active and sys.stdout.isatty()))


def train(warehouse: str | Path, model_name: str, cfg: dict, resume: bool = False) -> dict:
    """Train `model_name` on `<warehouse>/sequences/` with the resolved config `cfg` (sections train, <model>,
    mlflow). Returns a summary: best epoch and metric, epochs run, history, output folder."""
    warehouse = Path(warehouse)
    if not warehouse.is_dir():
        raise RecsysError(f"warehouse not found: {warehouse}")
    if model_name not in MODEL_NAMES:
        raise RecsysError(f"unknown model {model_name!r}; choose one of {list(MODEL_NAMES)}")
    tcfg = TrainConfig.from_dict(cfg.get("train"))
    seq_dir = sequences_dir(warehouse, tcfg.sequences)
    meta = read_meta(seq_dir)
    env = init_distributed(tcfg.device)
    trainer = None
    try:
        trainer = Trainer(warehouse, model_name, cfg, tcfg, seq_dir, meta, env)
        return trainer.fit(resume)
    finally:
        if trainer is not None:
            trainer.release()
        del trainer
        # Free Arrow buffers and reader threads now, not during interpreter teardown, where they can abort the
        # process with "terminate called without an active exception" (apache/arrow#34314).
        gc.collect()
        close_distributed()


class Trainer:
    def __init__(self, warehouse: Path, model_name: str, cfg: dict, tcfg: TrainConfig, seq_dir: Path, meta: dict,
                 env: DistEnv):
        self.warehouse, self.model_name, self.cfg, self.tcfg = warehouse, model_name, cfg, tcfg
        self.seq_dir, self.meta, self.env = seq_dir, meta, env
        self.out_dir = Path(tcfg.output) if tcfg.output else warehouse / "models" / model_name
        self.amp = tcfg.amp and env.device.type == "cuda"
        self.model_cfg = model_config(model_name, cfg, meta)

        seed_everything(tcfg.seed)
        self.model = build(model_name, self.model_cfg, env.device)
        torch.manual_seed(tcfg.seed + env.rank)  # dropout and sampled negatives differ between ranks
        loss_module = LossModule(self.model, model_name)
        if env.world > 1:
            self.ddp: nn.Module = DDP(loss_module, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        else:
            self.ddp = loss_module

        pin = env.device.type == "cuda"
        is_ncf = model_name == "ncf"
        train_split = "ncf_train" if is_ncf else "train"
        self.train_ds, self.train_loader = make_loader(ShardSpec(
            seq_dir / train_split, NCF_COLUMNS if is_ncf else SEQUENCE_COLUMNS, tcfg.batch_size, env.rank,
            env.world, tcfg.seed, True, tcfg.shuffle_buffer, tcfg.reader_pool, tcfg.reader_workers),
            tcfg.num_workers, pin)
        self.val_ds, self.val_loader = make_loader(ShardSpec(
            seq_dir / "validation", EVAL_COLUMNS, tcfg.eval_batch_size, env.rank, env.world, tcfg.seed,
            False, 0, tcfg.reader_pool, tcfg.reader_workers), 0, pin)
        self.positives = (read_ncf_positives(seq_dir / "ncf_train", meta["n_items"])
                          if is_ncf and tcfg.ncf_reject_positives else None)

        batches = math.ceil(count_rows(seq_dir / train_split) / (env.world * tcfg.batch_size))
        self.batches_per_epoch = batches
        self.total_steps = tcfg.epochs * math.ceil(batches / tcfg.grad_accum)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, tcfg.weight_decay), lr=tcfg.lr,
                                           betas=(0.9, 0.98), fused=True if env.device.type == "cuda" else None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(tcfg.warmup_steps, self.total_steps, tcfg.min_lr_ratio))

        self.epochs_done = 0
        self.global_step = 0
        self.best_metric = -1.0
        self.best_epoch = -1
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[dict] = []
        self.mlflow_run_id: str | None = None

    def release(self) -> None:
        """Stop every reader and drop the loaders (and the Arrow memory they hold)."""
        self.train_ds.close()
        self.val_ds.close()
        self.train_loader = self.val_loader = self.positives = None

    # --- checkpoints -------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def _gather_rng(self) -> list[dict]:
        if self.env.world == 1:
            return [ckpt_io.rng_state()]
        states: list = [None] * self.env.world
        dist.all_gather_object(states, ckpt_io.rng_state())
        return states

    def save_checkpoint(self) -> None:
        rng = self._gather_rng()  # a collective: every rank takes part
        if not self.env.is_main:
            return
        ckpt_io.save_atomic({
            "model_name": self.model_name,
            "model_config": self.model_cfg,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "world_size": self.env.world,
            "epochs_done": self.epochs_done,
            "data_position": {"epoch": self.epochs_done, "batch": 0},
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "train_config": dataclasses.asdict(self.tcfg),
            "mlflow_run_id": self.mlflow_run_id,
        }, self.checkpoint_path)

    def save_best(self, metrics: dict) -> None:
        if self.env.is_main:
            ckpt_io.save_atomic({
                "model_name": self.model_name,
                "model_config": self.model_cfg,
                "model": self.model.state_dict(),
                "epoch": self.epochs_done,
                "metrics": {k: float(v) for k, v in metrics.items()},
                "meta": {k: self.meta.get(k) for k in ("n_items", "n_users", "max_len", "tie_break", "last_gap",
                                                        "seed", "schema_version")},
            }, self.best_path)

    def load_checkpoint(self) -> None:
        state = ckpt_io.load(self.checkpoint_path, map_location="cpu")
        if state.get("model_name") != self.model_name or state.get("model_config") != self.model_cfg:
            raise RecsysError(f"{self.checkpoint_path} was written for {state.get('model_name')} with config "
                              f"{state.get('model_config')}, not {self.model_name} with {self.model_cfg}; "
                              f"train without --resume to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("epochs_done", "global_step", "best_metric", "best_epoch", "bad_epochs", "stopped_early",
                    "history", "mlflow_run_id"):
            setattr(self, key, state[key])
        if state["world_size"] == self.env.world:
            ckpt_io.set_rng_state(state["rng"][self.env.rank])
        else:  # another world size: the data order changes anyway; keep runs reproducible per world size
            seed_everything(self.tcfg.seed + 1000 * self.epochs_done + self.env.rank)

    def write_config_json(self) -> None:
        if not self.env.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resolved = {
            "model": self.model_name,
            "model_config": self.model_cfg,
            "train": dataclasses.asdict(self.tcfg),
            "mlflow": self.cfg.get("mlflow") or {},
            "world_size": self.env.world,
            "device": str(self.env.device),
            "amp_bf16": self.amp,
            "sequences": str(self.seq_dir),
            "data": {k: self.meta.get(k) for k in ("schema_version", "n_items", "n_users", "max_len", "rows",
                                                   "tie_break", "seed", "last_gap", "created_at")},
            # ss4rec's last step spans history end -> query_timestamp; meta.json says which time that is
            "last_gap_protocol": self.meta.get("last_gap"),
        }
        tmp = self.out_dir / ".config.json.tmp"
        tmp.write_text(json.dumps(resolved, indent=2, default=str))
        os.replace(tmp, self.out_dir / "config.json")

    # --- the loop ----------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, progress, task) -> float:
        tcfg, env = self.tcfg, self.env
        self.train_ds.set_epoch(epoch)
        self.ddp.train()
        negatives = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + epoch * 1009 + env.rank)
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        micro = 0
        for micro, (batch, is_last) in enumerate(in_lockstep(self.train_loader, self.train_ds, env), start=1):
            if self.model_name == "ncf":
                batch["neg_items"] = sample_negatives(batch["user_idx"], self.meta["n_items"], tcfg.ncf_negatives,
                                                      negatives, self.positives)
            batch = to_device(batch, env.device)
            sync = is_last or micro % tcfg.grad_accum == 0
            no_sync = self.ddp.no_sync() if env.world > 1 and not sync else contextlib.nullcontext()
            with no_sync:
                with autocast(env.device, self.amp):
                    loss = self.ddp(batch)
                (loss / tcfg.grad_accum).backward()
            loss_sum += loss.detach().double()
            if sync:
                if tcfg.max_grad_norm:
                    nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
            if micro % tcfg.log_every == 0 or is_last:
                progress.update(task, completed=micro, loss=float(loss.detach()))
        total, count = all_reduce_sum([float(loss_sum), float(micro)], env)
        return total / max(count, 1.0)

    def fit(self, resume: bool) -> dict:
        tcfg, env = self.tcfg, self.env
        if resume:
            self.load_checkpoint()
        self.write_config_json()
        logger = MlflowLogger(self.cfg, self.warehouse, env.is_main)
        params = {"model": self.model_name, "world_size": env.world, **flatten("train", dataclasses.asdict(tcfg)),
                  **flatten(self.model_name, self.model_cfg), "data.last_gap": self.meta.get("last_gap"),
                  "data.tie_break": self.meta.get("tie_break")}
        logger.start(f"train-{self.model_name}", params, self.mlflow_run_id if resume else None)
        self.mlflow_run_id = logger.run_id
        status = "FAILED"
        try:
            with progress_bar(env.is_main) as progress:
                for epoch in range(self.epochs_done, tcfg.epochs):
                    if self.stopped_early or (tcfg.stop_after_epoch and self.epochs_done >= tcfg.stop_after_epoch):
                        break
                    started = time.time()
                    task = progress.add_task(f"{self.model_name} epoch {epoch + 1}/{tcfg.epochs}",
                                             total=self.batches_per_epoch, loss=float("nan"))
                    train_loss = self.train_epoch(epoch, progress, task)
                    progress.remove_task(task)
                    val = evaluate(self.model, self.model_name, self.val_loader, env, self.amp)
                    self.epochs_done = epoch + 1
                    improved = val[f"ndcg@{EVAL_K}"] > self.best_metric
                    if improved:
                        self.best_metric, self.best_epoch, self.bad_epochs = val[f"ndcg@{EVAL_K}"], epoch + 1, 0
                        self.save_best(val)
                    else:
                        self.bad_epochs += 1
                        self.stopped_early = self.bad_epochs >= tcfg.patience
                    record = {"epoch": epoch + 1, "train_loss": train_loss, "val_hr@10": val["hr@10"],
                              "val_ndcg@10": val["ndcg@10"], "lr": self.scheduler.get_last_lr()[0],
                              "seconds": time.time() - started}
                    self.history.append(record)
                    self.save_checkpoint()
                    if env.is_main:  # the report's training curves read this
                        tmp = self.out_dir / ".history.json.tmp"
                        tmp.write_text(json.dumps(self.history, indent=2))
                        os.replace(tmp, self.out_dir / "history.json")
                    logger.metrics({"train_loss": train_loss, "val_hr_10": val["hr@10"],
                                    "val_ndcg_10": val["ndcg@10"], "lr": record["lr"]}, step=epoch + 1)
                    if env.is_main:
                        print(f"{self.model_name} epoch {epoch + 1}/{tcfg.epochs}: loss {train_loss:.4f}  "
                              f"val HR@10 {val['hr@10']:.4f}  NDCG@10 {val['ndcg@10']:.4f}  "
                              f"({record['seconds']:.1f}s){'  *best' if improved else ''}", flush=True)
            if env.is_main and self.stopped_early:
                print(f"{self.model_name}: early stop after epoch {self.epochs_done} "
                      f"(best NDCG@10 {self.best_metric:.4f} at epoch {self.best_epoch})", flush=True)
            logger.metrics({"best_val_ndcg_10": self.best_metric, "best_epoch": self.best_epoch},
                           step=self.epochs_done)
            logger.artifacts([self.checkpoint_path, self.best_path, self.out_dir / "config.json"])
            status = "FINISHED"
        finally:
            logger.end(status)
        if env.world > 1:
            dist.barrier()
        return {"model": self.model_name, "output_dir": str(self.out_dir), "epochs_done": self.epochs_done,
                "best_epoch": self.best_epoch, "best_ndcg@10": self.best_metric, "stopped_early": self.stopped_early,
                "history": self.history, "world_size": env.world, "mlflow_run_id": self.mlflow_run_id}
