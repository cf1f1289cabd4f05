"""Model registry: name -> (model class, config dataclass), and `build_model`.

Each model class declares what it trains on (recsys_torch.trainer reads it; nothing branches on model names):
- `batches = "sequences"`: windows of train/, a next-item loss (recsys_torch.losses) over the tied `item_emb`;
  scored by `score_last(items, timestamps, query_timestamps)`.
- `batches = "pairs"`: (user_idx, item_idx) rows of the shard `pair_shard`, negatives sampled per row, the model's own
  `training_loss(users, positives, negatives)` and `loss_name`; scored by `score_users(users)`.
- `needs_graph = True`: the model is given the normalised user-item graph (`set_graph`, built by
  recsys_torch.graph from the edges/ shard) before it trains or scores.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from recsys_torch.models.lightgcn import LightGCN, LightGCNConfig
from recsys_torch.models.ncf import NCF, NCFConfig
from recsys_torch.models.sasrec import SASRec, SASRecConfig
from recsys_torch.models.ss4rec import SS4Rec, SS4RecConfig

MODELS = {
    "ncf": (NCF, NCFConfig),
    "sasrec": (SASRec, SASRecConfig),
    "ss4rec": (SS4Rec, SS4RecConfig),
    "lightgcn": (LightGCN, LightGCNConfig),
}


def build_config(name: str, cfg_dict: dict):
    """The config dataclass of model `name` from a plain dict; ValueError on an unknown model or key."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    cfg_cls = MODELS[name][1]
    known = {field.name for field in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(cfg_dict) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for model {name!r}; known keys: {sorted(known)}")
    try:
        return cfg_cls(**cfg_dict)
    except TypeError as error:  # a required key (n_items, n_users) is missing
        raise ValueError(f"bad config for model {name!r}: {error}") from None


def config_from_meta(name: str, section: dict | None, meta: dict) -> dict:
    """conf/<model>.yaml's section completed from the shards' meta.json (catalogue sizes, sequence length)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    if section is not None and not isinstance(section, dict):
        raise ValueError(f"config section {name!r} must be a mapping, got {section!r}")
    known = {field.name for field in dataclasses.fields(MODELS[name][1])}
    values = dict(section or {})
    for key in ("n_items", "n_users", "max_len"):
        if key in known:
            values[key] = int(meta[key])
    return values


def build_model(name: str, cfg_dict: dict, device: torch.device | str) -> nn.Module:
    """Build on the meta device (no memory), materialise once on `device`, initialise from the global seed."""
    cfg = build_config(name, cfg_dict)
    with torch.device("meta"):
        model = MODELS[name][0](cfg)
    model.to_empty(device=device)
    model.init_weights()
    return model


def model_class(name: str) -> type[nn.Module]:
    """The class of model `name`: what it trains on (`batches`, `pair_shard`) and whether it needs the graph."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name][0]


__all__ = ["MODELS", "build_config", "build_model", "config_from_meta", "model_class", "LightGCN", "LightGCNConfig",
           "NCF", "NCFConfig", "SASRec", "SASRecConfig", "SS4Rec", "SS4RecConfig"]
