"""Model registry: name -> (model class, config dataclass), derived from the catalogue (recsys_core.catalogue), and
`build_model`.

What a model trains on, its loss, how it scores and its item vectors are its base class's contract
(recsys_torch/models/base.py: SequenceModel or PairModel); nothing here or in the trainer branches on a model's name.
"""
from __future__ import annotations

import dataclasses
import importlib

import torch
from torch import nn

from recsys_core import catalogue
from recsys_core.config import build
from recsys_core.errors import ConfigError
from recsys_torch.models.lightgcn import LightGCN, LightGCNConfig
from recsys_torch.models.ncf import NCF, NCFConfig
from recsys_torch.models.sasrec import SASRec, SASRecConfig
from recsys_torch.models.ss4rec import SS4Rec, SS4RecConfig


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


# The torch models of the catalogue (recsys_core.catalogue), each with the classes it names: name -> (model, config).
MODELS = {model.name: (_load(model.implementation), _load(model.config_class))
          for model in catalogue.MODELS.values() if model.family is catalogue.TORCH}


def build_config(name: str, cfg_dict: dict):
    """The config dataclass of model `name` from a plain dict (recsys_core.config.build: unknown keys and wrong
    types named as `<name>.<key>`); a ConfigError, which is a ValueError, on an unknown model or a bad value."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return build(MODELS[name][1], cfg_dict, name)


def config_from_meta(name: str, section: dict | None, meta: dict) -> dict:
    """conf/<model>.yaml's section completed from the shards' meta.json (catalogue sizes, sequence length)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"the {name} config section must be a mapping, got {section!r}")
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
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name][0]


__all__ = ["MODELS", "build_config", "build_model", "config_from_meta", "model_class", "LightGCN", "LightGCNConfig",
           "NCF", "NCFConfig", "SASRec", "SASRecConfig", "SS4Rec", "SS4RecConfig"]
