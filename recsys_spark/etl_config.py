"""The ETL's settings: the `etl` config section and its `etl.kcore` part (recsys_spark.etl runs them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recsys_core.errors import ConfigError
from recsys_core.config import NON_NEGATIVE, POSITIVE, Config, checked, number_in, one_of
from recsys_spark.inputs import FORMATS, SEQUENCE_LAYOUTS, ColumnsConfig, ItemsConfig, Source, check_source
from recsys_spark.splits import TIE_BREAKS


@dataclass(frozen=True)
class KcoreConfig(Config):
    section = "etl.kcore"

    min_user_interactions: int = checked(0, NON_NEGATIVE)   # 0 = off
    min_item_interactions: int = checked(0, NON_NEGATIVE)   # 0 = off
    max_iterations: int = checked(30, POSITIVE)

    @property
    def enabled(self) -> bool:
        return self.min_user_interactions > 0 or self.min_item_interactions > 0


@dataclass(frozen=True)
class EtlConfig(Config):
    section = "etl"

    format: str = checked("auto", one_of(*FORMATS))  # of --data (recsys_spark/inputs.py); auto: detected
    sequence_layout: str = checked("auto", one_of(*SEQUENCE_LAYOUTS))  # sequences: lines | pairs
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)  # events: the log's column names
    event_weights: dict[str, float] = field(default_factory=dict)  # events: etl.columns.event's weight per type
    items: ItemsConfig = field(default_factory=ItemsConfig)  # events: an optional item table (titles, genres)
    tie_break: str = checked("hash", one_of(*TIE_BREAKS))  # order of a user's ratings given in the same second
    seed: int = 42                   # seeds the hash tie-break
    # global temporal split: train up to this quantile of timestamps
    temporal_quantile: float = checked(0.8, number_in(0, 1, low_open=True))
    kcore: KcoreConfig = field(default_factory=KcoreConfig)
    # refuse a load with fewer ratings/users/movies than this share below the last
    max_shrink: float = checked(0.2, number_in(0, 1))
    # refuse a load (over an existing one) rejecting more of a file's rows
    max_reject_fraction: float = checked(0.05, number_in(0, 1))

    def validate(self) -> None:
        for event, weight in self.event_weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise ConfigError(f"etl.event_weights.{event} must be a number > 0, got {weight!r}")

    def source(self, data: str | Path) -> Source:
        """`--data` checked for this config's format, before Spark starts."""
        return check_source(data, self.format, self.sequence_layout, self.columns, self.event_weights, self.items)
