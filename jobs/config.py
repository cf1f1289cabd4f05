"""Layered YAML configuration: conf/<section>.yaml < conf/<env>.yaml < --config FILE < key=value.

A section file holds a component's defaults; the environment file (local, cluster) overrides what differs there.
Every file a command names must exist: a missing one is an error, never a silent fall-back to code defaults.
conf/ ships inside the package as jobs/conf (a link to the top-level conf/ in the repository; real files in a
wheel), so an installed `recsys` finds the same files as a checkout.

Keys are dotted paths into nested dicts (`als.rank=20`, `train.epochs=3`). Values given on the command line are
parsed as YAML scalars, so `als.rank=20` is an int, `sasrec.loss=bce` a string and `etl.kcore=null` None.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from recsys_core.errors import ConfigError  # a config file or override that cannot be used (one line, exit 2)

CONF_DIR = Path(__file__).resolve().parent / "conf"


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def merge(base: dict, update: dict) -> dict:
    """Recursive merge: mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(cfg: dict, item: str) -> dict:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    node = cfg
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return cfg


def load_config(
    sections: Iterable[str] = (),
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    env: str = "local",
    conf_dir: Path = CONF_DIR,
) -> dict:
    """Resolve the config: each `<section>.yaml`, then `<env>.yaml`, then `config_file`, then overrides."""
    cfg: dict[str, Any] = {}
    for section in sections:
        path = conf_dir / f"{section}.yaml"
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (the defaults of section {section!r})")
        cfg = merge(cfg, _read_yaml(path))
    env_file = conf_dir / f"{env}.yaml"
    if not env_file.is_file():
        raise ConfigError(f"environment config not found: {env_file} (--env {env})")
    cfg = merge(cfg, _read_yaml(env_file))
    if config_file:
        cfg = merge(cfg, _read_yaml(Path(config_file)))
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def section(cfg: dict, name: str) -> dict:
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config section {name!r} must be a mapping")
    return value


def run_layer(config_file: str | Path | None = None, overrides: Iterable[str] = ()) -> dict:
    """Only what a run adds on top of conf/: its --config file and key=value overrides."""
    cfg = _read_yaml(Path(config_file)) if config_file else {}
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def qualify(overrides: Iterable[str], section_name: str, config_class) -> list[str]:
    """Bare keys of a config dataclass (`rank=20`) mean `<section>.rank=20` on that command's line."""
    fields = set(config_class.__dataclass_fields__)
    return [f"{section_name}.{item}" if item.split("=", 1)[0] in fields else item for item in overrides]
