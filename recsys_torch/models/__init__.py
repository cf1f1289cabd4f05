"""Model registry: name -> (model class, config dataclass), and `build_model`."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from recsys_torch.models.ncf import NCF, NCFConfig
from recsys_torch.models.sasrec import SASRec, SASRecConfig
from recsys_torch.models.ss4rec import SS4Rec, SS4RecConfig

MODELS = {
    "ncf": (NCF, NCFConfig),
    "sasrec": (SASRec, SASRecConfig),
    "ss4rec": (SS4Rec, SS4RecConfig),
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


__all__ = ["MODELS", "build_config", "build_model", "config_from_meta", "NCF", "NCFConfig", "SASRec", "SASRecConfig", "SS4Rec", "SS4RecConfig"]
