"""Checkpoints that load with `torch.load(..., weights_only=True)`: tensors and plain Python types only.

- checkpoint.pt (`save_training` / `load_training`): everything a resumed run needs — weights, optimizer and
  scheduler state, every rank's RNG states, the micro-batch size and the trainer's progress.
- best.pt (`save_best`): the weights of the best validation, its step and metrics, and the shards' meta.json keys
  it was trained on (what recsys_torch.infer loads).

Written atomically (a temporary file in the same folder, then `os.replace`), so a crash mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from recsys_core import storage
from recsys_torch.errors import RecsysError


def rng_state() -> dict:
    """The RNG states of torch (CPU and CUDA), numpy and python, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_atomic(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which one
        raise RecsysError(f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}") from None


def save_training(path: Path, model_name: str, model_config: dict, model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, scheduler, rng: list[dict], world_size: int, batch_size: int,
                  progress: dict) -> None:
    save_atomic({"model_name": model_name, "model_config": model_config, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                 "world_size": world_size, "batch_size": batch_size, "progress": progress}, path)


def load_training(path: Path, model_name: str, model_config: dict, batch_size: int) -> dict:
    """checkpoint.pt, refused (RecsysError) when it was written for another model, config or micro-batch size."""
    state = load(path, map_location="cpu")
    if state.get("model_name") != model_name or state.get("model_config") != model_config:
        raise RecsysError(f"{path} was written for {state.get('model_name')} with config "
                          f"{state.get('model_config')}, not {model_name} with {model_config}; "
                          f"train without --resume to start over")
    if state.get("batch_size") != batch_size:
        raise RecsysError(f"{path} was trained with micro-batches of {state.get('batch_size')} "
                          f"rows, this run would use {batch_size}; resume with the same train.batch_size "
                          f"and number of processes, or train without --resume")
    return state


def save_best(path: Path, model_name: str, model_config: dict, model: torch.nn.Module, step: int, metrics: dict,
              meta: dict) -> None:
    from recsys_torch.schemas import META_KEYS  # here: recsys_torch.schemas needs pyarrow, training does not

    save_atomic({"model_name": model_name, "model_config": model_config, "model": model.state_dict(), "step": step,
                 "metrics": {k: float(v) for k, v in metrics.items()},
                 "meta": {k: meta.get(k) for k in META_KEYS if k not in ("rows", "created_at")}}, path)


def write_json(path: Path, value) -> None:
    """`value` as indented JSON at `path`, replaced atomically."""
    storage.write_bytes(str(path), json.dumps(value, indent=2, default=str).encode())
