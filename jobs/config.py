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
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from recsys_core import catalogue
from recsys_core.errors import ConfigError  # a config file or override that cannot be used (one line, exit 2)

CONF_DIR = Path(__file__).resolve().parent / "conf"

# The class of each config section a command builds ("module:Class", imported when built: importing this imports
# neither Spark nor torch). A torch model's section is the class its catalogue entry names (Model.config_class).
SECTION_CLASSES = {
    "etl": "recsys_spark.etl:EtlConfig",
    "sequences": "recsys_spark.sequences:SequenceConfig",
    "als": "recsys_spark.als:AlsConfig",
    "baselines": "recsys_spark.baselines:BaselinesConfig",
    "ensemble": "recsys_spark.ensemble:EnsembleConfig",
    "train": "recsys_torch.config:TrainConfig",
    "evaluate": "recsys_spark.evaluate:EvaluateConfig",
    "drift": "recsys_spark.drift:DriftConfig",
    "retention": "recsys_spark.retention:RetentionConfig",
    "publish": "recsys_spark.publish:PublishConfig",
    "pipeline": "jobs.plan:PipelineConfig",
}


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
        raise ConfigError(f"the {name} config section must be a mapping, got {value!r}")  # as recsys_core.config's
    return value


def config_class(name: str) -> type:
    """The Config class of section `name` (SECTION_CLASSES, or a torch model's in the catalogue)."""
    model = catalogue.MODELS.get(name)
    path = SECTION_CLASSES.get(name) or (model.config_class if model else None)
    if path is None:
        raise ConfigError(f"config section {name!r} has no config class")
    module, cls = path.split(":")
    return getattr(importlib.import_module(module), cls)


def build_section(cfg: dict, name: str):
    """Section `name` of the resolved config `cfg` as its class, every rule checked. A torch model's sizes come from
    the shards when it trains (recsys_torch.model_configs.with_sizes): here, placeholders."""
    cls, values = config_class(name), cfg.get(name)
    if name in catalogue.names(catalogue.TORCH):
        from recsys_torch.model_configs import META_SIZES, with_sizes

        values = with_sizes(cls, values, dict.fromkeys(META_SIZES, 1))
    return cls.from_dict(values)


def check_steps(steps: Iterable, resolve: Callable[[list[str]], dict]) -> None:
    """Build every section each step's command reads, from what that step resolves (`resolve(sections)`: the run's
    config) and its own overrides, as the step will: a bad value anywhere is one ConfigError before any step runs."""
    for step in steps:
        reads = step.sections
        if step.command == "topn":  # its model's sections (part of its fit step's fingerprint, not of its own)
            reads = catalogue.find(step.lists_of[0]).sections
        cfg = resolve(reads)
        for item in step.overrides:
            cfg = apply_override(cfg, item)
        for name in reads:
            build_section(cfg, name)


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
