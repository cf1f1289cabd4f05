"""The training loop: DDP, bf16 autocast on GPU, gradient accumulation, AdamW with a linear warm-up and cosine decay
over a budget of optimizer steps, validation every `eval_every` steps with early stopping on NDCG@10, and an atomic
checkpoint at every validation from which a resumed run continues exactly (same data order, same RNG draws). What
it trains on, its loss and its sampled negatives are the model's to say (recsys_torch.models.base). A non-finite
training loss stops the run before the next checkpoint, so checkpoint.pt and best.pt keep the last finite state.

Outputs in `<warehouse>/models/<model>/`: checkpoint.pt (the last validation), best.pt (the best validation
NDCG@10), config.json (the resolved config), history.json (one record per validation). Rank 0 writes files and
logs to MLflow; every rank trains.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from recsys_core.ties import Ties
from recsys_torch import checkpoint as ckpt_io
from recsys_torch.config import TrainConfig, batch_size_for
from recsys_torch.data import ShardSpec, in_lockstep, item_counts, make_loader, read_pair_positives
from recsys_torch.negatives import sample_negatives
from recsys_torch.shards import count_rows, shard_path
from recsys_torch.errors import RecsysError
from recsys_torch.evaluation import EVAL_K, validate, validation_batches
from recsys_torch.models import build_model, config_from_meta
from recsys_torch.models.base import Recommender, TrainSplit
from recsys_torch.runtime import DistEnv, all_reduce_sum, autocast, seed_everything, to_device
from recsys_torch.tracking import MlflowLogger, flatten, progress_bar


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    """Linear warm-up to 1 over `warmup_steps`, then cosine decay to `min_ratio` at `total_steps` (flat after)."""
    warmup_steps = max(1, warmup_steps)

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
    """What DDP wraps: the model and the loss it made (Recommender.make_loss), so DDP's gradient hooks see the
    whole computation."""

    def __init__(self, model: Recommender, loss: nn.Module | None):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.training_loss(batch, self.loss)


def build(model_name: str, section: dict | None, meta: dict, device: torch.device) -> tuple[Recommender, dict]:
    """The model of conf/<model>.yaml's section sized by meta.json, and that resolved model config."""
    try:
        model_cfg = config_from_meta(model_name, section, meta)
        return build_model(model_name, model_cfg, device), model_cfg
    except ValueError as exc:
        raise RecsysError(str(exc)) from None


@dataclasses.dataclass
class Progress:
    """Where the run is; everything here goes into checkpoint.pt and is all that resume reads besides weights."""
    step: int = 0                    # optimizer steps done
    epoch: int = 0                   # the epoch in progress
    micro_in_epoch: int = 0          # micro-batches of that epoch already trained on
    best_metric: float = -1.0
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    history: list = dataclasses.field(default_factory=list)
    mlflow_run_id: str | None = None


class Trainer:
    def __init__(self, warehouse: Path, model_name: str, cfg: dict, tcfg: TrainConfig, seq_dir: str, meta: dict,
                 env: DistEnv):
        self.warehouse, self.model_name, self.cfg, self.tcfg = warehouse, model_name, cfg, tcfg
        self.seq_dir, self.meta, self.env = seq_dir, meta, env
        self.out_dir = Path(tcfg.output) if tcfg.output else warehouse / "models" / model_name
        on_gpu = env.device.type == "cuda"
        self.amp = tcfg.amp and on_gpu
        n_items = int(meta["n_items"])

        seed_everything(tcfg.seed)
        self.model, self.model_cfg = build(model_name, cfg.get(model_name), meta, env.device)
        model = self.model
        if model.needs_graph:  # the train graph, the same on every rank (built from the whole edges/ shard)
            from recsys_torch.graph import build_graph  # here: it reads Parquet, as recsys_torch.data does

            model.set_graph(build_graph(seq_dir, meta, "validation"))
        torch.manual_seed(tcfg.seed + env.rank)  # dropout and sampled negatives differ between ranks
        train_split = shard_path(seq_dir, model.train_shard)
        rows = count_rows(train_split)
        self.loss_name = model.loss_name(tcfg, on_gpu)
        loss = model.make_loss(tcfg, on_gpu, TrainSplit(rows, lambda: item_counts(train_split, n_items)))
        wrapped = LossModule(model, loss)
        self.ddp: nn.Module = (DDP(wrapped, device_ids=[env.local_rank] if on_gpu else None)
                               if env.world > 1 else wrapped)

        self.batch_size = batch_size_for(rows, env.world, tcfg)
        readers = {"rank": env.rank, "world": env.world, "seed": tcfg.seed, "reader": tcfg.reader,
                   "reader_pool": tcfg.reader_pool}
        self.train_ds, self.train_loader = make_loader(ShardSpec(
            train_split, model.train_columns, self.batch_size, shuffle=True, shuffle_buffer=tcfg.shuffle_buffer,
            group_by_length=model.length_column if tcfg.group_by_length else None, **readers), tcfg.num_workers, on_gpu)
        self.val_split = shard_path(seq_dir, "validation")
        # The negatives the model asks for, from a generator of their own (saved in the checkpoint, so resume draws
        # the same ones), redrawn where they hit one of the user's train items (train.pair_reject_positives)
        self.negatives = model.negatives_per_row(tcfg)
        self.negative_rng = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + env.rank)
        self.positives = (read_pair_positives(train_split, n_items)
                          if self.negatives and tcfg.pair_reject_positives else None)

        micro_per_epoch = math.ceil(rows / (env.world * self.batch_size))
        self.steps_per_epoch = max(1, math.ceil(micro_per_epoch / tcfg.grad_accum))
        self.total_steps = min(tcfg.max_steps, tcfg.max_epochs * self.steps_per_epoch)
        self.optimizer = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr,
                                           betas=(0.9, 0.98), fused=True if on_gpu else None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(round(tcfg.warmup * self.total_steps), self.total_steps, tcfg.min_lr_ratio))
        self.progress = Progress()
        self._window = {"loss": 0.0, "micro": 0, "started": time.time(), "steps": 0}

    def release(self) -> None:
        """Stop every reader and drop the loaders (and the Arrow memory they hold)."""
        self.train_ds.close()
        self.train_loader = self.positives = None

    # --- checkpoints -------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def _gather_rng(self) -> list[dict]:
        state = {**ckpt_io.rng_state(), "pair_negatives": self.negative_rng.get_state()}
        if self.env.world == 1:
            return [state]
        states: list = [None] * self.env.world
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self) -> None:
        rng = self._gather_rng()  # a collective: every rank takes part
        if self.env.is_main:
            ckpt_io.save_training(self.checkpoint_path, self.model_name, self.model_cfg, self.model, self.optimizer,
                                  self.scheduler, rng, self.env.world, self.batch_size,
                                  dataclasses.asdict(self.progress))

    def save_best(self, metrics: dict) -> None:
        if self.env.is_main:
            ckpt_io.save_best(self.best_path, self.model_name, self.model_cfg, self.model, self.progress.step,
                              metrics, self.meta)

    def load_checkpoint(self) -> None:
        state = ckpt_io.load_training(self.checkpoint_path, self.model_name, self.model_cfg, self.batch_size)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress(**state["progress"])
        self.keep_a_better_best()
        if state["world_size"] == self.env.world:
            rng = state["rng"][self.env.rank]
            ckpt_io.set_rng_state(rng)
            # "ncf_negatives": the key before pair models shared one name for it
            self.negative_rng.set_state(rng["pair_negatives"] if "pair_negatives" in rng else rng["ncf_negatives"])
        else:  # another world size: the data order changes anyway; keep runs reproducible per world size
            seed_everything(self.tcfg.seed + 1000 * self.progress.step + self.env.rank)

    def keep_a_better_best(self) -> None:
        """A kill between writing best.pt and checkpoint.pt (in that order) leaves a best.pt better than the
        checkpoint's best_metric: resume measures against it, so a worse validation never replaces it."""
        if not self.best_path.is_file():
            return
        best = ckpt_io.load(self.best_path)
        score = (best.get("metrics") or {}).get(f"ndcg@{EVAL_K}")
        if best.get("model_config") == self.model_cfg and score is not None and score > self.progress.best_metric:
            self.progress.best_metric, self.progress.best_step = float(score), int(best.get("step", -1))

    def write_json(self, name: str, value) -> None:
        if self.env.is_main:
            ckpt_io.write_json(self.out_dir / name, value)

    def resolved_config(self) -> dict:
        from recsys_torch.schemas import META_KEYS  # here: recsys_torch.schemas needs pyarrow, training does not

        return {
            "model": self.model_name,
            "model_config": self.model_cfg,
            "train": dataclasses.asdict(self.tcfg),
            "resolved": {"batch_size": self.batch_size, "total_steps": self.total_steps, "loss": self.loss_name,
                         "steps_per_epoch": self.steps_per_epoch},
            "mlflow": self.cfg.get("mlflow") or {},
            "world_size": self.env.world,
            "device": str(self.env.device),
            "amp_bf16": self.amp,
            "sequences": str(self.seq_dir),
            "data": {k: self.meta.get(k) for k in META_KEYS},
            # ss4rec's last step spans history end -> query_timestamp; meta.json says which time that is
            "last_gap_protocol": self.meta.get("last_gap"),
        }

    # --- the loop ----------------------------------------------------------------------------------------------
    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.negatives:
            batch["neg_items"] = sample_negatives(batch["user_idx"], self.meta["n_items"], self.negatives,
                                                  self.negative_rng, self.positives)
        return to_device(self.model.trim(batch), self.env.device)

    def finished(self) -> bool:
        p, tcfg = self.progress, self.tcfg
        return (p.stopped_early or p.step >= self.total_steps
                or (tcfg.stop_after_step is not None and p.step >= tcfg.stop_after_step))

    def run_epoch(self, bar, task) -> None:
        """Train through the rest of the epoch in progress (all of it, unless resumed inside it)."""
        tcfg, env, p = self.tcfg, self.env, self.progress
        self.train_ds.set_epoch(p.epoch)
        self.ddp.train()
        skip = p.micro_in_epoch
        micro = 0
        for micro, (batch, is_last) in enumerate(in_lockstep(self.train_loader, self.train_ds, env), start=1):
            if micro <= skip:  # resumed inside this epoch: the same order, so skip what was trained on
                continue
            batch = self.prepare(batch)
            sync = is_last or micro % tcfg.grad_accum == 0
            no_sync = self.ddp.no_sync() if env.world > 1 and not sync else contextlib.nullcontext()
            with no_sync:
                with autocast(env.device, self.amp):
                    loss = self.ddp(batch)
                (loss / tcfg.grad_accum).backward()
            self._window["loss"] += loss.detach().double()
            self._window["micro"] += 1
            if not sync:
                continue
            if tcfg.max_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            p.step += 1
            p.epoch, p.micro_in_epoch = (p.epoch + 1, 0) if is_last else (p.epoch, micro)
            self._window["steps"] += 1
            if p.step % tcfg.log_every == 0:
                bar.update(task, completed=p.step, loss=float(loss.detach()))
            if p.step % tcfg.eval_every == 0 or self.finished():
                self.validate_and_checkpoint()
            if self.finished():
                self.train_ds.close()
                return
        if micro == 0:
            raise RecsysError(f"{self.train_ds.spec.path}: this rank read no training rows")

    def stop_if_diverged(self, loss_sum: float) -> None:
        """Before anything is written: a non-finite loss or weight ends the run, checkpoint.pt and best.pt stay as
        they were. (A NaN model would otherwise validate at 0, beat a fresh run's -1 and become best.pt.)"""
        weights_finite = bool(torch.stack([torch.isfinite(w).all() for w in self.model.parameters()]).all())
        if math.isfinite(loss_sum) and weights_finite:
            return
        what = f"the training loss is {loss_sum}" if not math.isfinite(loss_sum) else "the weights are not finite"
        raise RecsysError(f"{self.model_name}: {what} by step {self.progress.step}; training stopped, "
                          f"{self.checkpoint_path.name} and {self.best_path.name} left as they were")

    def validate_and_checkpoint(self) -> None:
        tcfg, env, p = self.tcfg, self.env, self.progress
        loss_sum, micro = all_reduce_sum([float(self._window["loss"]), float(self._window["micro"])], env)
        self.stop_if_diverged(loss_sum)
        seconds = time.time() - self._window["started"]
        val = validate(self.model, validation_batches(self.val_split, tcfg.eval_batch_size, tcfg.eval_rows, env.rank,
                                                      env.world), env, self.amp, Ties.of_report(self.meta))
        improved = val[f"ndcg@{EVAL_K}"] > p.best_metric
        if improved:
            p.best_metric, p.best_step, p.bad_evals = val[f"ndcg@{EVAL_K}"], p.step, 0
            self.save_best(val)
        else:
            p.bad_evals += 1
            p.stopped_early = p.bad_evals >= tcfg.patience
        record = {"step": p.step, "epoch": p.epoch, "train_loss": loss_sum / max(micro, 1.0),
                  "val_hr@10": val["hr@10"], "val_ndcg@10": val["ndcg@10"],
                  "lr": self.scheduler.get_last_lr()[0], "seconds": seconds,
                  "seconds_per_step": seconds / max(self._window["steps"], 1)}
        p.history.append(record)
        self.save_checkpoint()
        self.write_json("history.json", p.history)  # the report's training curves read this
        self.logger.metrics({"train_loss": record["train_loss"], "val_hr_10": val["hr@10"],
                             "val_ndcg_10": val["ndcg@10"], "lr": record["lr"],
                             "seconds_per_step": record["seconds_per_step"]}, step=p.step)
        if env.is_main:
            print(f"{self.model_name} step {p.step}/{self.total_steps} (epoch {p.epoch}): loss "
                  f"{record['train_loss']:.4f}  val HR@10 {val['hr@10']:.4f}  NDCG@10 {val['ndcg@10']:.4f}  "
                  f"({record['seconds_per_step']:.3f} s/step){'  *best' if improved else ''}", flush=True)
        self._window = {"loss": 0.0, "micro": 0, "started": time.time(), "steps": 0}

    def fit(self, resume: bool) -> dict:
        tcfg, env = self.tcfg, self.env
        if resume:
            self.load_checkpoint()
        self.write_json("config.json", self.resolved_config())
        self.logger = MlflowLogger(self.cfg, self.warehouse, env.is_main)
        params = {"model": self.model_name, "world_size": env.world, **flatten("train", dataclasses.asdict(tcfg)),
                  **flatten(self.model_name, self.model_cfg), "resolved.batch_size": self.batch_size,
                  "resolved.total_steps": self.total_steps, "resolved.loss": self.loss_name,
                  "data.last_gap": self.meta.get("last_gap"), "data.tie_break": self.meta.get("tie_break"),
                  "data.time": self.meta.get("time")}
        if self.meta.get("time") == "order" and env.is_main:
            print(f"{self.model_name}: the input had no timestamps (meta.json time: order): every position is one "
                  "step apart")
        self.logger.start(f"train-{self.model_name}", params, self.progress.mlflow_run_id if resume else None)
        self.progress.mlflow_run_id = self.logger.run_id
        status = "FAILED"
        try:
            with progress_bar(env.is_main) as bar:
                task = bar.add_task(f"{self.model_name}", total=self.total_steps, completed=self.progress.step,
                                    loss=float("nan"))
                while not self.finished() and self.progress.epoch < tcfg.max_epochs:
                    self.run_epoch(bar, task)
            p = self.progress
            if not p.history or p.history[-1]["step"] != p.step:  # the epoch cap ended the run between validations
                self.validate_and_checkpoint()
            if env.is_main and p.stopped_early:
                print(f"{self.model_name}: early stop at step {p.step} (best NDCG@10 {p.best_metric:.4f} at step "
                      f"{p.best_step})", flush=True)
            self.logger.metrics({"best_val_ndcg_10": p.best_metric, "best_step": p.best_step}, step=p.step)
            self.logger.artifacts([self.checkpoint_path, self.best_path, self.out_dir / "config.json"])
            status = "FINISHED"
        finally:
            self.logger.end(status)
        if env.world > 1:
            dist.barrier()
        p = self.progress
        return {"model": self.model_name, "output_dir": str(self.out_dir), "steps": p.step, "epochs": p.epoch,
                "best_step": p.best_step, "best_ndcg@10": p.best_metric, "stopped_early": p.stopped_early,
                "history": p.history, "world_size": env.world, "mlflow_run_id": p.mlflow_run_id,
                "batch_size": self.batch_size, "total_steps": self.total_steps, "loss": self.loss_name}
