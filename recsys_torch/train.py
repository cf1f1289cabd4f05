"""`train()`: one rank's training of a torch model (recsys_torch.models.MODELS) on the shards, under torchrun or alone.

The pieces, each in its own module: the `train:` config (recsys_torch.config), where a rank runs
(recsys_torch.runtime), the shard reader (recsys_torch.data), what a model declares to the trainer
(recsys_torch.models.base), the losses (recsys_torch.losses), validation (recsys_torch.evaluation), the loop
(recsys_torch.trainer), checkpoint files (recsys_torch.checkpoint), MLflow (recsys_torch.tracking).
"""
from __future__ import annotations

import gc
from pathlib import Path

from recsys_core import catalogue
from recsys_torch.config import TrainConfig
from recsys_torch.shards import read_meta, sequences_dir
from recsys_torch.errors import RecsysError
from recsys_torch.models import MODELS
from recsys_torch.runtime import close_distributed, init_distributed
from recsys_torch.trainer import Trainer

__all__ = ["TrainConfig", "train"]


def train(warehouse: str | Path, model_name: str, cfg: dict, resume: bool = False) -> dict:
    """Train `model_name` on `<warehouse>/sequences/` with the resolved config `cfg` (sections train, <model>,
    mlflow). Returns a summary: steps and epochs run, best step and validation NDCG@10, history, output folder."""
    warehouse = Path(warehouse)
    if not warehouse.is_dir():
        raise RecsysError(f"warehouse not found: {warehouse}")
    if model_name not in MODELS:
        raise catalogue.unknown_model(model_name, family=catalogue.TORCH)
    tcfg = TrainConfig.from_dict(cfg.get("train"))
    seq_dir = sequences_dir(warehouse, tcfg.sequences)
    meta = read_meta(seq_dir)
    env = init_distributed(tcfg.device, tcfg.threads)
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
