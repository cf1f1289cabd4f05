"""Where a rank runs: torchrun's environment, the process group, the device, autocast and CPU threads."""
from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from recsys_torch.errors import RecsysError


@dataclass
class DistEnv:
    rank: int
    world: int
    local_rank: int
    local_world: int
    device: torch.device
    # Host-side agreement between ranks (gloo, CPU tensors): asking NCCL would make the CPU wait for the GPU.
    control_group: object = None  # None: the default group (gloo already when training on CPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_launcher(launcher: int) -> None:
    """End this rank when `launcher`, its parent (torchrun's elastic agent), dies.

    The agent starts every worker in a session of its own (start_new_session=True), so a signal to the launcher's
    process group never reaches the ranks, and an agent killed with SIGKILL cannot stop them: they would train on,
    writing into the warehouse of a run that was killed. `launcher` is the parent pid read as early as the rank
    could, before its slow imports: if the agent died before this call, the parent is already another process."""
    if not _kill_on_parent_death():
        threading.Thread(target=_exit_when_parent_changes, args=(launcher,), name="exit-with-launcher",
                         daemon=True).start()
    if os.getppid() != launcher:
        os._exit(1)


def _kill_on_parent_death() -> bool:
    """Linux: SIGKILL from the kernel when the parent exits (strictly, the parent's thread that started this
    process: the agent's main thread). False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_parent_changes(launcher: int, every_s: float = 0.5) -> None:
    while os.getppid() == launcher:
        time.sleep(every_s)
    os._exit(1)


def pick_device(preference: str = "auto") -> torch.device:
    """`train.device`: a fact of the node the step runs on, so checked here, not with the config (a cluster's
    driver that checks the run's config up front may have no GPU)."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RecsysError("train.device=cuda but no CUDA device is available")
    use_cuda = preference == "cuda" or (preference == "auto" and torch.cuda.is_available())
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")


def init_distributed(device_pref: str = "auto", cpu_threads: int | None = None) -> DistEnv:
    """Read torchrun's environment; NCCL on GPU, gloo on CPU. A single process needs no process group.

    On CPU each rank gets `cpu_threads` torch threads (default: the cores divided among the node's ranks), so
    two ranks on two cores do not fight over four threads."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(device_pref)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(cpu_threads or max(1, (os.cpu_count() or 1) // max(1, local_world)))
    control_group = None
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if dist.get_backend() != "gloo":
            control_group = dist.new_group(backend="gloo")
    return DistEnv(rank, world, local_rank, local_world, device, control_group)


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; plain float32 elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: t.to(device, non_blocking=True) for name, t in batch.items()}


def trim_left_padding(batch: dict[str, torch.Tensor], columns=("items", "timestamps", "targets")) -> dict:
    """Drop the leading columns that are padding in every row of the batch. Sequences are left-padded to max_len,
    and most users have far fewer items: the models' hidden state of an item does not depend on how much padding
    precedes it, so the cut changes no result, only the work."""
    items = batch["items"]
    if items.shape[1] == 0:
        return batch
    real = (items != 0).any(dim=0)
    first = int(real.int().argmax()) if bool(real.any()) else items.shape[1] - 1
    if first == 0:
        return batch
    return {name: (t[:, first:] if name in columns else t) for name, t in batch.items()}


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=env.device)
    if env.world > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()
