"""The generator's settings (`GeneratorConfig`), the error its bad arguments raise, and its seeded random streams."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_core.config import NON_NEGATIVE, POSITIVE, Config, checked, number_in
from recsys_core.errors import ConfigError


class GenerateError(ConfigError):
    """Arguments the generator cannot honour (printed as one line, exit code 2)."""


@dataclass(frozen=True)
class GeneratorConfig(Config):
    """Built from `recsys generate`'s flags, so a rule's message names the flag (`--users`)."""

    n_users: int = checked(162_541, POSITIVE, label="--users")
    n_items: int = checked(59_047, POSITIVE, label="--items")
    n_ratings: int = checked(25_000_095, POSITIVE, label="--ratings")
    seed: int = checked(0, NON_NEGATIVE, label="--seed")
    corrupt_fraction: float = checked(0.0, number_in(0, 0.5), label="--corrupt-fraction")
    min_ratings_per_user: int = 20
    # part of the output's identity: another value gives other (equally valid) bytes
    users_per_chunk: int = checked(4096, POSITIVE, label="users_per_chunk")
    line_terminator: str = "\r\n"  # ml-latest-small uses CRLF
    # Knobs of the planted structure (recsys_data/movies.py, ratings.py say what each does).
    popularity_exponent: float = 1.05
    continue_prob: float = 0.45
    successor_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    franchise_continue_prob: float = 0.85
    genre_stay_prob: float = 0.6
    popular_seed_prob: float = 0.25
    tag_rate: float = 0.044  # tags per rating (ML-25M: 1,093,360 / 25,000,095)

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except GenerateError:
            raise
        except ConfigError as exc:
            raise GenerateError(str(exc)) from None

    def validate(self) -> None:
        if self.n_ratings < self.n_users:
            raise GenerateError(f"--ratings ({self.n_ratings}) must be at least --users ({self.n_users}): "
                                "every user rates at least one movie")
        if self.n_ratings > self.n_users * self.n_items:
            raise GenerateError(f"--ratings ({self.n_ratings}) exceeds --users x --items "
                                f"({self.n_users * self.n_items}): a user rates a movie at most once")


def rng_for(cfg: GeneratorConfig, *stream: int) -> np.random.Generator:
    """An independent stream per purpose (and per chunk), so one part never shifts another's numbers."""
    return np.random.default_rng([cfg.seed, *stream])
