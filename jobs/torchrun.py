"""The torchrun flags of a training run, from the `train:` section (docs/TRAINING.md "Multi-node").

One node: `--standalone --nproc-per-node=N` (a private rendezvous on a free local port). Several nodes
(`train.nnodes > 1`, or a `train.rdzv_endpoint` set): every node starts the same command and meets the others at
the c10d rendezvous `train.rdzv_endpoint` (host:port of one of the nodes, reachable from all) under the job name
`train.rdzv_id`; torchrun then numbers the ranks across the nodes. The job name must be the same on every node and
new for each job: by default `recsys-<model>-<run date>`, which the nodes share when they are given the same run date.

`${NAME}` in `train.rdzv_endpoint` or in a `train.launch_env` value is read from the environment at launch, so one
conf/cluster.yaml serves every node and every cluster.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Mapping

from recsys_core.config import build
from recsys_core.errors import ConfigError
from recsys_torch.config import ENV_REFERENCE, TrainConfig


def launch_config(train_cfg: dict | None) -> TrainConfig:
    """The section checked as every key's rule says, but without the device check of a run: the plan printed on a
    machine without GPUs still shows the GPU nodes' launch."""
    return build(TrainConfig, train_cfg, "train")


def expand(value: str, key: str, environ: Mapping[str, str]) -> str:
    """`${NAME}` references in a config value, from `environ`; an unset one is a one-line error naming the key."""
    def lookup(match) -> str:
        name = match.group(1)
        if name not in environ or environ[name] == "":
            raise ConfigError(f"train.{key} reads ${{{name}}}, which is not set in the environment")
        return environ[name]

    return ENV_REFERENCE.sub(lookup, value)


def is_multi_node(cfg: TrainConfig) -> bool:
    return cfg.nnodes > 1 or cfg.rdzv_endpoint is not None


def rdzv_id(cfg: TrainConfig, model: str | None, run_date: str | dt.date | None) -> str:
    if cfg.rdzv_id:
        return cfg.rdzv_id
    date = str(run_date) if run_date else dt.datetime.now(dt.timezone.utc).date().isoformat()
    return "-".join(["recsys", *([model] if model else []), date])


def torchrun_args(train_cfg: dict, *, model: str | None = None, run_date: str | dt.date | None = None,
                  environ: Mapping[str, str] | None = None, expand_env: bool = True) -> list[str]:
    """The torchrun flags before the script, for the `train:` section `train_cfg` (raw or resolved mapping).

    `model` and `run_date` name the default rendezvous (`recsys-<model>-<run date>`; run date: today in UTC);
    `environ` (default os.environ) fills `${NAME}` in `train.rdzv_endpoint`; with `expand_env=False` the reference
    stays as written (a printed plan: the node's shell fills it, inside double quotes)."""
    cfg = launch_config(train_cfg)
    environ = os.environ if environ is None else environ
    if not is_multi_node(cfg):
        return ["--standalone", f"--nproc-per-node={cfg.nproc}"]
    if cfg.rdzv_endpoint is None:
        raise ConfigError(f"train.nnodes={cfg.nnodes} needs train.rdzv_endpoint (host:port of the c10d rendezvous "
                          f"on one of the nodes, the same on every node)")
    endpoint = cfg.rdzv_endpoint
    if expand_env:
        endpoint = expand(endpoint, "rdzv_endpoint", environ)
        launch_config({**(train_cfg or {}), "rdzv_endpoint": endpoint})  # the value the variable gave, checked too
    args = [f"--nnodes={cfg.nnodes}", f"--nproc-per-node={cfg.nproc}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={rdzv_id(cfg, model, run_date)}"]
    if cfg.node_rank is not None:
        args.append(f"--node-rank={cfg.node_rank}")
    if cfg.max_restarts:
        args.append(f"--max-restarts={cfg.max_restarts}")
    return args


def torchrun_env(train_cfg: dict, environ: Mapping[str, str] | None = None,
                 expand_env: bool = True) -> dict[str, str]:
    """`train.launch_env` as strings, `${NAME}` filled from `environ` (unless `expand_env=False`): what the launcher
    adds to the environment of torchrun, which its workers inherit (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, ...)."""
    cfg = launch_config(train_cfg)
    environ = os.environ if environ is None else environ
    env = {}
    for name, value in cfg.launch_env.items():
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        env[str(name)] = expand(text, f"launch_env.{name}", environ) if expand_env else text
    return env


__all__ = ["expand", "is_multi_node", "launch_config", "rdzv_id", "torchrun_args", "torchrun_env"]
