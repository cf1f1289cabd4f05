"""Model registry: name -> (model class, config dataclass), derived from the catalogue (recsys_core.catalogue), and
`build_model`.

What a model trains on, its loss, how it scores and its item vectors are its base class's contract
(recsys_torch/models/base.py: SequenceModel or PairModel); nothing here or in the trainer branches on a model's name.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from recsys_core import catalogue
from recsys_core.config import build
from recsys_torch.model_configs import with_sizes
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


def _entry(name: str) -> tuple[type[nn.Module], type]:
    if name not in MODELS:
        raise catalogue.unknown_model(name, family=catalogue.TORCH)
    return MODELS[name]


def build_config(name: str, cfg_dict: dict):
    """The config of model `name` (recsys_torch.model_configs) from a plain dict; a ConfigError, which is a
    ValueError, naming `<name>.<key>` on an unknown model or a bad value."""
    return build(_entry(name)[1], cfg_dict, name)


def config_from_meta(name: str, section: dict | None, meta: dict) -> dict:
    """conf/<model>.yaml's section completed from the shards' meta.json (catalogue sizes, sequence length)."""
    return with_sizes(_entry(name)[1], section, meta)


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
    return _entry(name)[0]


__all__ = ["MODELS", "build_config", "build_model", "config_from_meta", "model_class", "LightGCN", "LightGCNConfig",
           "NCF", "NCFConfig", "SASRec", "SASRecConfig", "SS4Rec", "SS4RecConfig"]
