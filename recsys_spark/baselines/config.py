"""Typed config of the baselines: the `baselines:` section of conf/baselines.yaml (every key overridable)."""
from __future__ import annotations

from dataclasses import dataclass, field

from recsys_spark.config import from_mapping
from recsys_spark.errors import RecsysError

MODELS = ("popularity", "genre", "markov", "ar2", "hybrid")


@dataclass(frozen=True)
class PopularityConfig:
    recent_days: int | None = None  # None: global train counts; N: only the last N days before the train cut-off


@dataclass(frozen=True)
class GenreConfig:
    top_genres: int = 3  # the user's favourite genres that are scored
    items_per_genre: int = 300  # most popular items kept per genre (the rest of a list is padded by popularity)


@dataclass(frozen=True)
class MarkovConfig:
    top_k: int = 50  # successors kept per state in transitions_ar1 / transitions_ar2


@dataclass(frozen=True)
class HybridConfig:
    alpha: float = 0.5  # weight of the AR(1) score; 1 - alpha goes to popularity


@dataclass(frozen=True)
class BaselinesConfig:
    models: tuple[str, ...] = MODELS
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    genre: GenreConfig = field(default_factory=GenreConfig)
    markov: MarkovConfig = field(default_factory=MarkovConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)

    def __post_init__(self):
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise RecsysError(f"baselines.models: {list(self.models)} must be a non-empty subset of {list(MODELS)}")
        days = self.popularity.recent_days
        if days is not None and (not _is_int(days) or days < 1):
            raise RecsysError(f"baselines.popularity.recent_days must be null or a positive integer, got {days!r}")
        for name, value in (("genre.top_genres", self.genre.top_genres),
                            ("genre.items_per_genre", self.genre.items_per_genre),
                            ("markov.top_k", self.markov.top_k)):
            if not _is_int(value) or value < 1:
                raise RecsysError(f"baselines.{name} must be a positive integer, got {value!r}")
        alpha = self.hybrid.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise RecsysError(f"baselines.hybrid.alpha must be a number in [0, 1], got {alpha!r}")

    @classmethod
    def from_dict(cls, section: dict | None) -> "BaselinesConfig":
        """Build from the `baselines:` config mapping; unknown keys are an error, not silently ignored."""
        nested = {"popularity": PopularityConfig, "genre": GenreConfig, "markov": MarkovConfig,
                  "hybrid": HybridConfig}
        if section is not None and not isinstance(section, dict):
            raise RecsysError(f"baselines config must be a mapping, got {section!r}")
        section = dict(section or {})
        kwargs = {name: from_mapping(klass, section.pop(name, None), f"baselines.{name}")
                  for name, klass in nested.items() if name in section}
        if "models" in section:
            models = section.pop("models")
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise RecsysError(f"baselines.models must be a list of model names, got {models!r}")
            kwargs["models"] = tuple(models)
        if section:
            raise RecsysError(f"baselines config: unknown keys {sorted(section)}; known: {sorted(['models', *nested])}")
        return cls(**kwargs)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
