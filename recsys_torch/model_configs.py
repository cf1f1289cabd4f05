"""The config sections of the torch models (`sasrec:`, `ncf:`, ...), one Config class each (recsys_core.config).

Torch-free, so that `recsys pipeline` checks them with every other section before its first step without importing
torch. The catalogue names each model's class here (recsys_core.catalogue, Model.config_class). The sizes in META_SIZES
are not the user's to set: they come from the shards' meta.json when the model is built (`with_sizes`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from recsys_core.config import (BOOLEAN, NON_NEGATIVE, POSITIVE, Config, Rule, above, at_least, checked,
                                number_in)
from recsys_core.errors import ConfigError

META_SIZES = ("n_items", "n_users", "max_len")  # from meta.json: catalogue sizes, longest sequence
DROPOUT = number_in(0, 1, high_open=True)
MLP_WIDTHS = Rule(lambda v: len(v) >= 2 and all(isinstance(d, int) and d >= 1 for d in v) and v[0] % 2 == 0,
                  "at least two positive widths, the first even")


def with_sizes(cls: type[Config], section: dict | None, meta: dict) -> dict:
    """A model's config section completed with the sizes in `meta` (the shards' meta.json) its class has."""
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"the {cls.section} config section must be a mapping, got {section!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    return {**(section or {}), **{key: int(meta[key]) for key in META_SIZES if key in known}}


def _at_most(config: Config, low: str, high: str) -> None:
    if getattr(config, low) > getattr(config, high):
        raise ConfigError(f"{config.section}.{low} must be at most {config.section}.{high} "
                          f"({getattr(config, high)!r}), got {getattr(config, low)!r}")


@dataclass
class SASRecConfig(Config):
    section = "sasrec"

    n_items: int = checked(rule=POSITIVE)  # largest item index; 0 is padding, so tables have n_items + 1 rows
    hidden: int = checked(64, POSITIVE)
    n_layers: int = checked(2, NON_NEGATIVE)
    n_heads: int = checked(2, POSITIVE)
    dropout: float = checked(0.2, DROPOUT)
    max_len: int = checked(200, POSITIVE)  # longest input sequence (size of the positional table)

    def validate(self) -> None:
        if self.hidden % self.n_heads:
            raise ConfigError(f"sasrec.hidden must be a multiple of sasrec.n_heads ({self.n_heads}), "
                              f"got {self.hidden!r}")


@dataclass
class NCFConfig(Config):
    section = "ncf"

    n_users: int = checked(rule=POSITIVE)  # largest user index; tables have n_users + 1 rows
    n_items: int = checked(rule=POSITIVE)  # largest item index; tables have n_items + 1 rows
    gmf_dim: int = checked(32, POSITIVE)
    # the MLP's input width (user + item embedding, so even) and its layer widths
    mlp_dims: tuple[int, ...] = checked((128, 64, 32), MLP_WIDTHS)
    dropout: float = checked(0.1, DROPOUT)


@dataclass
class LightGCNConfig(Config):
    section = "lightgcn"

    n_users: int = checked(rule=POSITIVE)  # largest user index; tables have n_users + 1 rows
    n_items: int = checked(rule=POSITIVE)  # largest item index; tables have n_items + 1 rows
    dim: int = checked(64, POSITIVE)
    n_layers: int = checked(3, NON_NEGATIVE)
    reg: float = checked(1e-4, at_least(0))  # L2 on the batch's layer-0 embeddings, 0.5 * sum of squares per triple
    negatives: int = checked(1, POSITIVE)  # sampled negatives per positive; BPR is averaged over them
    per_user: bool = checked(True, BOOLEAN)  # weigh a user's edges 1/degree: every user counts the same


@dataclass
class SS4RecConfig(Config):
    section = "ss4rec"

    n_items: int = checked(rule=POSITIVE)  # largest item index; 0 is padding, so tables have n_items + 1 rows
    hidden: int = checked(64, POSITIVE)
    n_layers: int = checked(2, NON_NEGATIVE)
    state_size: int = checked(32, POSITIVE)  # selective (S6) state per channel, paper d_state
    time_state_size: int = checked(32, POSITIVE)  # time-aware (S5) complex state, paper d_P
    conv_kernel: int = checked(4, POSITIVE)  # paper d_conv
    expand: int = checked(2, POSITIVE)  # S6 inner width = expand * hidden
    dropout: float = checked(0.2, DROPOUT)
    # initial range of the time-aware SSM's base step (multiplied by the gap scale)
    time_dt_min: float = checked(0.01, above(0))
    time_dt_max: float = checked(1.0, above(0))
    dt_min: float = checked(0.001, above(0))  # initial range of the selective SSM's step (Mamba's defaults)
    dt_max: float = checked(0.1, above(0))
    time_unit_seconds: float = checked(86400.0, above(0))  # gaps are scaled as log1p(gap / time_unit)
    max_len: int = checked(200, POSITIVE)  # longest input sequence; no positional table, only checked

    def validate(self) -> None:
        _at_most(self, "time_dt_min", "time_dt_max")
        _at_most(self, "dt_min", "dt_max")
