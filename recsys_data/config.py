"""The generator's settings (`GeneratorConfig`), the error its bad arguments raise, and its seeded random streams."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class GenerateError(ValueError):
    """Arguments the generator cannot honour (printed as one line, exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class GeneratorConfig:
    n_users: int = 162_541
    n_items: int = 59_047
    n_ratings: int = 25_000_095
    seed: int = 0
    corrupt_fraction: float = 0.0
    min_ratings_per_user: int = 20
    users_per_chunk: int = 4096  # part of the output's identity: another value gives other (equally valid) bytes
    line_terminator: str = "\r\n"  # ml-latest-small uses CRLF
    # Knobs of the planted structure (recsys_data/movies.py, ratings.py say what each does).
    popularity_exponent: float = 1.05
    continue_prob: float = 0.45
    successor_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    franchise_continue_prob: float = 0.85
    genre_stay_prob: float = 0.6
    popular_seed_prob: float = 0.25
    tag_rate: float = 0.044  # tags per rating (ML-25M: 1,093,360 / 25,000,095)

    def validate(self) -> None:
        for name in ("n_users", "n_items", "n_ratings"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise GenerateError(f"{name.replace('n_', '--')} must be a positive integer, got {value!r}")
        if self.n_ratings < self.n_users:
            raise GenerateError(f"--ratings ({self.n_ratings}) must be at least --users ({self.n_users}): "
                                "every user rates at least one movie")
        if self.n_ratings > self.n_users * self.n_items:
            raise GenerateError(f"--ratings ({self.n_ratings}) exceeds --users x --items "
                                f"({self.n_users * self.n_items}): a user rates a movie at most once")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise GenerateError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= self.corrupt_fraction <= 0.5:
            raise GenerateError(f"--corrupt-fraction must be between 0 and 0.5, got {self.corrupt_fraction}")
        if self.users_per_chunk < 1:
            raise GenerateError(f"users_per_chunk must be positive, got {self.users_per_chunk}")


def rng_for(cfg: GeneratorConfig, *stream: int) -> np.random.Generator:
    """An independent stream per purpose (and per chunk), so one part never shifts another's numbers."""
    return np.random.default_rng([cfg.seed, *stream])
