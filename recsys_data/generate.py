"""Synthetic MovieLens-25M-shaped data: ratings.csv, movies.csv, tags.csv, links.csv, README.txt, SHA256SUMS.

Needs numpy and pyarrow only (no Spark). Output layout is byte-compatible with the MovieLens releases
(ml-latest-small checked): same headers, `\\r\\n` line ends, `4.0`/`3.5` ratings, titles quoted only when they
contain a comma or quote (quotes doubled), genres `A|B` from ML's 19 genres or `(no genres listed)`, imdbId
zero-padded to 7 digits, tmdbId sometimes empty; ratings and tags sorted by (userId, movieId), movies and links
by movieId. Same config and seed -> the same bytes.

Generative process
------------------
Catalogue (`build_catalogue`):
  * movieIds: a sorted random sample of 1..~3.54*n_items (ML-25M: 59,047 rated movies, ids up to 209,171).
  * popularity: Zipf-like, weight (rank + 1 + n_items / 1200) ** -1.05 over a random permutation of the movies
    (the offset keeps the most rated movie near ML-25M's ~0.3% of all ratings at full size).
  * quality q_i ~ N(0, 0.45) + 0.2 * z(log popularity)  (popular movies are rated a little higher, as in ML).
  * genres: 1-6 genres (ML-like counts) drawn by ML genre frequency, 0.35% `(no genres listed)`;
    year ~ 2019 - Gamma(1.3, 18), 0.15% of titles without a year.
  * franchises (~8% of movies): series of 2-6 movies sharing genres, with increasing years and
    "Title", "Title 2", "Title 3: Subtitle" names; sequels less popular than the first film.
  * transition graph: every movie has 3 preferred successors (65% drawn from its own genre, by popularity),
    followed with weights 0.5/0.3/0.2; a franchise film's first successor is the next film in the series
    (weight 0.90).

Users (`allocate_user_counts`): activity = 20 + a log-normal(sigma 1.39) share of the remaining ratings, so the
minimum is 20 (when ratings/users allows it), the median ~ 70 and the mean the requested ratings/users; capped at
55% of the catalogue (ML-25M's heaviest user rated 55%); totals are exact. Each user has a bias b_u ~ N(0, 0.45),
a Dirichlet genre taste, and with p=0.25 rates in whole stars only.

Sequences (`simulate_chunk`, vectorised over a chunk of users): a user's history is a series of *segments*.
  * A segment starts at a seed movie: with p=0.25 by global popularity, otherwise by popularity inside the
    segment's genre. The segment genre is a per-user Markov chain: it stays the same as the previous segment's with
    p=0.6 ("genre runs"), otherwise it is redrawn from the user's genre taste. A seed inside a franchise is moved to
    the first film of the series with p=0.75.
  * From the seed, the segment walks the transition graph: after each movie it continues with p=0.45 (0.85
    inside a franchise) to a successor drawn with the successor weights. Mean segment length ~ 1.9.
  * Movies the user already rated are dropped (no duplicate pairs); segments are drawn until the user has exactly
    n_u movies (a final popularity-weighted fill without replacement covers the rare heavy user the walks cannot
    fill).
  Every position is labelled with how it was reached: `follow` (graph step), `same_genre` (new segment, same
  genre) or `new_genre`.

Time (`_timestamps`): the gap before each rating depends on that label, so time carries signal.
  * a user returns after the first visit with p = 0.3 + 0.6 * (1 - exp(-n_u / 300)) (as in ML, half the users
    rate everything in one sitting), at a personal pace ~ lognormal(0, 0.8);
  * long gap (a new visit: 30 min + lognormal, median 3 days, sigma 2) with p = pace * 0.025 after a `follow`,
    * 0.08 after `same_genre`, * 0.2 after `new_genre`; so within a visit the next movie follows the graph far
    more often than after a long gap;
  * otherwise a pause inside the visit (p=0.03, median 15 min) or an in-session gap: 0 s with p=0.15
    (identical-second ties, as in ML), else lognormal seconds with median 10 s after a `follow`, 35 s after a
    jump.
  * the user's first rating is placed so the whole history fits in ML-25M's range (1995-01-09 .. 2019-11-21);
    histories longer than the range are compressed.
Ratings: z = b_u + q_i + 0.3 * log(19 * taste_u[genre_i]) + N(0, 0.75), cut at per-chunk quantiles into the ML
half-star distribution (4.0 most common, then 3.0, 5.0, 3.5, 4.5, 2.0 ...). Ratings before 2003-02-18 (when
MovieLens introduced half stars) and ratings of whole-star users use whole stars only.
Tags: ~10% of users tag; they tag ~4.4% of all ratings in total with 1-3 tags (genre-specific or generic
vocabulary) a few minutes after rating. Every movie nobody rated gets one tag, so (as in ML) every movie in
movies.csv has a rating or a tag.

Corruption (`corrupt_fraction` F > 0): about F * n_ratings bad rows are *inserted* into ratings.csv (the clean rows
are exactly those of the F=0 output with the same seed), at least one of each class, each with exactly one defect:
  malformed (3 or 5 fields, or no commas), non_numeric, rating_out_of_range (0.0, 5.5, ...), not_half_star (3.7),
  missing_id (empty userId or movieId), non_positive (userId 0 or negative), bad_timestamp (0 or negative),
  non_utf8 (an otherwise valid row with an invalid UTF-8 byte in the timestamp: check UTF-8 first), duplicate
  (an exact copy of a clean row, placed after it), unknown_movie (a movieId absent from movies.csv).
Rows of the first eight classes use a (user, movie) pair the user has not rated, so they are unambiguous.
movies.csv gets max(4, F * n_items) bad rows: malformed, non_numeric, missing_id, non_positive (ids no rating uses).
corruptions.json counts them per file and reason and lists every bad row's 1-based line (header = line 1):
{"counts": {file: {reason: n}}, "lines": {file: [[line, reason], ...]}, "clean_rows": ..., ...}.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


ML_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09 11:46:49 UTC, first rating in ML-25M
ML_LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21 09:15:03 UTC, last rating in ML-25M
HALF_STARS_FROM = 1_045_526_400  # 2003-02-18: MovieLens added half-star ratings
ML_ID_SPAN = 209_171 / 59_047  # largest movieId / rated movies in ML-25M

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
# Movies per genre in ml-latest-small.
GENRE_WEIGHTS = np.array([1828, 1263, 611, 664, 3756, 1199, 440, 4361, 779, 87, 978, 158, 334, 573, 1596, 980,
                          1894, 382, 167], dtype=np.float64)
GENRE_COUNT_PROBS = np.array([0.29, 0.33, 0.24, 0.10, 0.03, 0.01])  # 1..6 genres per movie
NO_GENRES = "(no genres listed)"

RATING_LABELS = ("", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")  # index = half stars
# ML-25M's rating distribution (0.5 .. 5.0 stars), and the same folded onto whole stars (a half star's mass split
# between its two neighbours, 0.5 going to 1.0). Half-star ratings take whatever mix of the two makes the total ML's.
ML_RATING_PROBS = np.array([1.57, 3.12, 1.60, 6.64, 4.94, 19.6, 12.6, 26.6, 8.5, 14.5]) / 99.67
WHOLE_STAR_PROBS = np.array([ML_RATING_PROBS[0] + ML_RATING_PROBS[1] + ML_RATING_PROBS[2] / 2,
                             ML_RATING_PROBS[2] / 2 + ML_RATING_PROBS[3] + ML_RATING_PROBS[4] / 2,
                             ML_RATING_PROBS[4] / 2 + ML_RATING_PROBS[5] + ML_RATING_PROBS[6] / 2,
                             ML_RATING_PROBS[6] / 2 + ML_RATING_PROBS[7] + ML_RATING_PROBS[8] / 2,
                             ML_RATING_PROBS[8] / 2 + ML_RATING_PROBS[9]])

FOLLOW, SAME_GENRE, NEW_GENRE, FIRST = 1, 2, 3, 0  # how a position in a history was reached
LONG_GAP_PROB = np.array([0.0, 0.025, 0.08, 0.2])  # indexed by the labels above
SHORT_GAP_MEDIAN_S = np.array([10.0, 10.0, 35.0, 35.0])

RATINGS_REASONS = ("malformed", "non_numeric", "rating_out_of_range", "not_half_star", "missing_id",
                   "non_positive", "bad_timestamp", "non_utf8", "duplicate", "unknown_movie")
MOVIES_REASONS = ("malformed", "non_numeric", "missing_id", "non_positive")


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
    # Knobs of the planted structure (see the module docstring).
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


def _rng(cfg: GeneratorConfig, *stream: int) -> np.random.Generator:
    """An independent stream per purpose (and per chunk), so one part never shifts another's numbers."""
    return np.random.default_rng([cfg.seed, *stream])


# ----------------------------------------------------------------------------------------------------- catalogue

_ADJECTIVES = ("Silent", "Broken", "Golden", "Last", "Lost", "Dark", "Crimson", "Hidden", "Wild", "Secret", "Bitter",
               "Electric", "Frozen", "Burning", "Little", "Endless", "Savage", "Quiet", "Hollow", "Fallen", "Lucky",
               "Midnight", "Northern", "Perfect", "Restless", "Scarlet", "Strange", "Sweet", "Tender", "Wicked",
               "Blue", "Iron", "Paper", "Glass", "Velvet", "Distant", "Forgotten", "Brave", "Crazy", "Eternal")
_NOUNS = ("Harbor", "River", "Kingdom", "Summer", "Road", "Empire", "Garden", "Island", "City", "Heart", "Dream",
          "Shadow", "Storm", "Night", "Game", "Escape", "Promise", "Mirror", "Station", "Machine", "Ghost", "Valley",
          "Letter", "Circus", "Frontier", "Affair", "Detective", "Witness", "Journey", "Legacy", "Planet", "Hotel",
          "Winter", "Wedding", "Café", "Château", "Señorita", "Müller", "Noël", "Fiancée")
_NAMES = ("Jack", "Amélie", "Harry", "Lola", "Max", "Grace", "Oscar", "Vera", "Hugo", "Nina", "Felix", "Iris")
_ARTICLES = ("The", "A", "Les", "La", "Le", "Das", "El")
_SEQUEL_SUBTITLES = ("Reckoning", "Revenge", "Rising", "Origins", "Homecoming", "The Return", "Legacy", "Resurrection")


def _make_title(rng: np.random.Generator) -> str:
    a, n, n2 = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_NOUNS)
    pattern = rng.random()
    if pattern < 0.30:
        return f"{a} {n}"
    if pattern < 0.55:  # ML moves leading articles to the end: "American President, The"
        return f"{a} {n}, {rng.choice(_ARTICLES, p=[0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03])}"
    if pattern < 0.70:
        return f"{n} of the {n2}"
    if pattern < 0.82:
        return f"{rng.choice(_NAMES)}'s {n}"
    if pattern < 0.90:
        return f"{n}, {n2} and the {a} {rng.choice(_NOUNS)}"
    if pattern < 0.97:  # foreign title with its translation
        return f"{n}, {rng.choice(_ARTICLES[2:])} ({a} {n2})"
    return f'{a} "{n}" {n2}'  # a quote inside the title: CSV doubles it


@dataclass
class Sampler:
    """Popularity-weighted draws over the whole catalogue or inside one genre (vectorised inverse-cdf lookups)."""

    popularity_cdf: np.ndarray
    genre_pool: np.ndarray  # item indices of every genre, concatenated
    genre_pool_cdf: np.ndarray  # genre g's popularity cdf, shifted into [g, g + 1)
    genre_pool_end: np.ndarray  # end offset of each genre's slice of genre_pool

    @classmethod
    def build(cls, popularity: np.ndarray, genre_mask: np.ndarray) -> "Sampler":
        pools, cdfs, ends = [], [], []
        for g in range(genre_mask.shape[1]):
            pool = np.flatnonzero(genre_mask[:, g])
            pools.append(pool)
            if len(pool):
                c = np.cumsum(popularity[pool])
                cdfs.append(g + c / c[-1] * (1 - 1e-12))
            ends.append(sum(len(p) for p in pools))
        return cls(np.cumsum(popularity) / popularity.sum(), np.concatenate(pools).astype(np.int64),
                   np.concatenate(cdfs) if cdfs else np.zeros(0), np.array(ends, dtype=np.int64))

    def popular(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.popularity_cdf, rng.random(size), side="right"),
                          len(self.popularity_cdf) - 1)

    def in_genre(self, rng: np.random.Generator, genre: np.ndarray) -> np.ndarray:
        """A movie of each given genre (genres without movies fall back to global popularity)."""
        pos = np.searchsorted(self.genre_pool_cdf, genre + rng.random(len(genre)), side="right")
        start = np.r_[0, self.genre_pool_end[:-1]][genre]
        end = self.genre_pool_end[genre]
        # an empty genre at the end of the pool has start == len(pool): clip into the pool, then replace below
        picked = np.minimum(np.clip(pos, start, np.maximum(end - 1, start)), len(self.genre_pool) - 1)
        out = self.genre_pool[picked] if len(self.genre_pool) else pos
        empty = end == start
        return np.where(empty, self.popular(rng, len(genre)), out) if empty.any() else out


@dataclass
class Catalogue:
    movie_ids: np.ndarray  # int64, sorted; item index -> movieId
    popularity: np.ndarray  # float64, sums to 1
    quality: np.ndarray
    genre_mask: np.ndarray  # bool (n_items, 19)
    primary_genre: np.ndarray  # int, -1 = no genres
    sampler: Sampler
    successors: np.ndarray  # int (n_items, 3)
    successor_cdf: np.ndarray  # float (n_items, 3)
    continue_prob: np.ndarray
    franchise_head: np.ndarray  # first film of the movie's series, -1 outside franchises
    titles: list[str]
    genres: list[str]
    imdb_ids: np.ndarray
    tmdb_ids: np.ndarray  # -1 = empty


def build_catalogue(cfg: GeneratorConfig) -> Catalogue:
    rng = _rng(cfg, 1)
    n = cfg.n_items
    max_id = max(n, int(round(n * ML_ID_SPAN)))
    movie_ids = np.sort(rng.choice(max_id, size=n, replace=False) + 1).astype(np.int64)

    weight = (rng.permutation(n) + 1.0 + n / 1200) ** -cfg.popularity_exponent  # head flattens with size

    n_genres = rng.choice(len(GENRE_COUNT_PROBS), size=n, p=GENRE_COUNT_PROBS) + 1
    keys = np.log(GENRE_WEIGHTS / GENRE_WEIGHTS.sum()) + rng.gumbel(size=(n, len(GENRES)))
    order = np.argsort(-keys, axis=1)  # genres drawn without replacement, by ML frequency
    genre_mask = np.argsort(order, axis=1) < n_genres[:, None]
    primary = order[:, 0].copy()
    no_genres = rng.random(n) < 0.0035
    genre_mask[no_genres] = False
    primary[no_genres] = -1

    years = np.clip(np.round(2019 - rng.gamma(1.3, 18.0, size=n)), 1891, 2019).astype(np.int64)
    title_rng = _rng(cfg, 2)
    base_titles = [_make_title(title_rng) for _ in range(n)]

    # Franchises: series of 2-6 films; the most popular member becomes the first film.
    franchise_head = np.full(n, -1, dtype=np.int64)
    franchise_next = np.full(n, -1, dtype=np.int64)
    sizes = []
    while sum(sizes) < 0.08 * n and n >= 12:
        sizes.append(int(rng.choice([2, 3, 4, 5, 6], p=[0.45, 0.25, 0.15, 0.10, 0.05])))
    members = rng.choice(n, size=sum(sizes), replace=False, p=np.sqrt(weight) / np.sqrt(weight).sum())
    titles = list(base_titles)
    for series in np.split(members, np.cumsum(sizes)[:-1]) if sizes else []:
        series = series[np.argsort(-weight[series], kind="stable")]
        head = series[0]
        years[series] = np.minimum(years[head] + np.r_[0, np.cumsum(rng.integers(1, 5, len(series) - 1))], 2019)
        genre_mask[series] = genre_mask[head]
        primary[series] = primary[head]
        weight[series] = weight[head] * 0.7 ** np.arange(len(series))
        franchise_head[series] = head
        franchise_next[series[:-1]] = series[1:]
        base = base_titles[head].split(", ")[0] if ", " in base_titles[head] else base_titles[head]
        for k, item in enumerate(series[1:], start=2):
            titles[item] = f"{base} {k}" if rng.random() < 0.6 else f"{base} {k}: {rng.choice(_SEQUEL_SUBTITLES)}"

    popularity = weight / weight.sum()
    log_pop = np.log(popularity)
    quality = rng.normal(0.0, 0.45, n) + 0.2 * (log_pop - log_pop.mean()) / (log_pop.std() + 1e-12)

    sampler = Sampler.build(popularity, genre_mask)

    # Transition graph: 3 preferred successors per movie, mostly from the movie's own genre.
    in_genre = sampler.in_genre(rng, np.repeat(np.maximum(primary, 0), 3)).reshape(n, 3)
    anywhere = sampler.popular(rng, 3 * n).reshape(n, 3)
    successors = np.where((rng.random((n, 3)) < 0.65) & (primary >= 0)[:, None], in_genre, anywhere)
    selfloop = successors == np.arange(n)[:, None]
    successors[selfloop] = sampler.popular(rng, int(selfloop.sum()))
    successor_cdf = np.tile(np.cumsum(cfg.successor_weights) / sum(cfg.successor_weights), (n, 1))
    continue_prob = np.full(n, cfg.continue_prob)
    in_series = franchise_next >= 0
    successors[in_series, 0] = franchise_next[in_series]
    successor_cdf[in_series] = [0.90, 0.97, 1.0]
    continue_prob[in_series] = cfg.franchise_continue_prob

    missing_year = rng.random(n) < 0.0015
    names = np.array(GENRES, dtype=object)
    # imdb ids grow with release year, as on IMDb; tmdb ids are unrelated; 0.1% of movies lack a tmdb id.
    imdb_ids = np.empty(n, np.int64)
    imdb_ids[np.argsort(years + rng.normal(0, 8, n), kind="stable")] = np.sort(
        rng.choice(9_999_999, size=n, replace=False) + 1)
    tmdb_ids = rng.choice(max(700_000, 2 * n), size=n, replace=False) + 2
    tmdb_ids[rng.random(n) < 0.001] = -1
    return Catalogue(
        movie_ids=movie_ids, popularity=popularity, quality=quality, genre_mask=genre_mask, primary_genre=primary,
        sampler=sampler, successors=successors, successor_cdf=successor_cdf, continue_prob=continue_prob,
        franchise_head=franchise_head,
        titles=[t if missing_year[i] else f"{t} ({years[i]})" for i, t in enumerate(titles)],
        genres=["|".join(names[row]) if row.any() else NO_GENRES for row in genre_mask],
        imdb_ids=imdb_ids, tmdb_ids=tmdb_ids)


# --------------------------------------------------------------------------------------------------------- users

def allocate_user_counts(cfg: GeneratorConfig) -> np.ndarray:
    """Ratings per user: exactly n_ratings in total, >= min_ratings_per_user where possible, log-normal tail."""
    rng = _rng(cfg, 3)
    n_users, total = cfg.n_users, cfg.n_ratings
    floor = min(cfg.min_ratings_per_user, total // n_users, cfg.n_items)
    cap = min(cfg.n_items, max(int(np.ceil(0.55 * cfg.n_items)), -(-total // n_users)))
    counts = np.full(n_users, floor, dtype=np.int64)
    weight = rng.lognormal(0.0, 1.39, n_users)
    remaining = total - counts.sum()
    while remaining > 0:
        room = cap - counts
        open_ = room > 0
        share = np.floor(remaining * weight * open_ / weight[open_].sum()).astype(np.int64)
        add = np.minimum(share, room)
        if add.sum() == 0:  # fewer than one rating per open user left: give them to the heaviest open users
            order = np.argsort(-(weight * open_), kind="stable")[:remaining]
            add = np.zeros(n_users, np.int64)
            add[order] = 1
        counts += add
        remaining -= int(add.sum())
    return counts


# ------------------------------------------------------------------------------------------------------ sequences

@dataclass
class ChunkRatings:
    """One chunk of users' ratings in generation (time) order; user is the 0-based index inside the chunk."""

    user: np.ndarray
    item: np.ndarray  # item index into the catalogue
    link: np.ndarray  # FOLLOW / SAME_GENRE / NEW_GENRE / FIRST
    timestamp: np.ndarray
    half_stars: np.ndarray  # rating * 2, 1..10


def _segments(cat: Catalogue, cfg: GeneratorConfig, rng: np.random.Generator, seg_user: np.ndarray,
              taste_cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk one segment per entry of seg_user (sorted); returns (user, item, link) flattened in order."""
    s = len(seg_user)
    first = np.r_[True, seg_user[1:] != seg_user[:-1]]
    stay = (rng.random(s) < cfg.genre_stay_prob) & ~first
    fresh_genre = (taste_cdf[seg_user] < rng.random(s)[:, None]).sum(axis=1)
    fill = np.where(stay, 0, np.arange(s))
    genre = fresh_genre[np.maximum.accumulate(fill)]
    popular = rng.random(s) < cfg.popular_seed_prob
    seed = np.where(popular, cat.sampler.popular(rng, s), cat.sampler.in_genre(rng, genre))
    head = cat.franchise_head[seed]
    to_head = (head >= 0) & (rng.random(s) < 0.75)
    seed[to_head] = head[to_head]
    seed_link = np.where(first, FIRST, np.where(stay & ~popular, SAME_GENRE, NEW_GENRE))

    seg_ids, items = [np.arange(s)], [seed]
    alive, current = np.arange(s), seed.copy()
    for _ in range(60):
        alive = alive[rng.random(len(alive)) < cat.continue_prob[current[alive]]]
        if not len(alive):
            break
        c = current[alive]
        u = rng.random(len(alive))
        slot = (u >= cat.successor_cdf[c, 0]).astype(np.int64) + (u >= cat.successor_cdf[c, 1])
        current[alive] = cat.successors[c, slot]
        seg_ids.append(alive)
        items.append(current[alive])
    seg_of = np.concatenate(seg_ids)
    order = np.argsort(seg_of, kind="stable")  # segment by segment, steps in walk order
    seg_of, item = seg_of[order], np.concatenate(items)[order]
    is_seed = np.r_[True, seg_of[1:] != seg_of[:-1]]
    link = np.where(is_seed, seed_link[seg_of], FOLLOW)
    return seg_user[seg_of], item, link


def _dedupe(user, item, link, counts, n_items):
    """Keep each user's first rating of a movie and at most counts[user] ratings; arrays sorted by user."""
    key = user.astype(np.int64) * n_items + item
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(key), bool)
    keep[first] = True
    user, item, link = user[keep], item[keep], link[keep]
    start = np.searchsorted(user, np.arange(len(counts)))
    keep = (np.arange(len(user)) - start[user]) < counts[user]
    return user[keep], item[keep], link[keep]


def _histories(cat: Catalogue, cfg: GeneratorConfig, rng: np.random.Generator, counts: np.ndarray,
               taste_cdf: np.ndarray):
    n_users, n_items = len(counts), len(cat.movie_ids)
    mean_len = 1.0 / (1.0 - cfg.continue_prob)
    user = np.zeros(0, np.int64)
    item = np.zeros(0, np.int64)
    link = np.zeros(0, np.int64)
    deficit = counts.copy()
    for round_ in range(6):
        wanted = np.flatnonzero(deficit > 0)
        if not len(wanted):
            break
        n_seg = (np.ceil(deficit[wanted] * 1.25 * 2 ** round_ / mean_len) + 1).astype(np.int64)
        u, i, l = _segments(cat, cfg, rng, np.repeat(wanted, n_seg), taste_cdf)
        if round_:
            l = np.where(l == FIRST, NEW_GENRE, l)
        user, item, link = np.r_[user, u], np.r_[item, i], np.r_[link, l]
        order = np.argsort(user, kind="stable")
        user, item, link = _dedupe(user[order], item[order], link[order], counts, n_items)
        deficit = counts - np.bincount(user, minlength=n_users)
    short = np.flatnonzero(deficit > 0)
    if len(short):  # rare heavy user: popularity-weighted fill without replacement (Gumbel top-k)
        log_pop = np.log(cat.popularity)
        fills = []
        for u in short:
            keys = log_pop + rng.gumbel(size=n_items)
            keys[item[user == u]] = -np.inf
            fills.append(np.argpartition(-keys, deficit[u] - 1)[: deficit[u]])
        user = np.r_[user, np.repeat(short, deficit[short])]
        item = np.r_[item, np.concatenate(fills)]
        link = np.r_[link, np.full(int(deficit[short].sum()), NEW_GENRE)]
        order = np.argsort(user, kind="stable")
        user, item, link = user[order], item[order], link[order]
    link[np.searchsorted(user, np.arange(n_users))] = FIRST
    return user, item, link


def _timestamps(rng: np.random.Generator, user: np.ndarray, link: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n, n_users = len(user), len(counts)
    # Many users rate everything in their first visit and never return (ML: half the users span < 2 hours);
    # heavy users come back more, at their own pace.
    returns = rng.random(n_users) < 0.3 + 0.6 * (1.0 - np.exp(-counts / 300.0))
    pace = np.where(returns, rng.lognormal(0.0, 0.8, n_users), 0.0)
    long_gap = rng.random(n) < np.minimum(0.5, LONG_GAP_PROB[link] * pace[user])
    pause = ~long_gap & (rng.random(n) < 0.03)  # a break inside a visit: minutes to hours
    in_session = np.where(rng.random(n) < 0.15, 0.0,
                          np.maximum(1.0, rng.lognormal(np.log(SHORT_GAP_MEDIAN_S[link]), 1.2)))
    pause_gap = np.minimum(rng.lognormal(np.log(900.0), 1.0, n), 6 * 3600.0)
    between = np.minimum(1800.0 + rng.lognormal(np.log(3 * 86400.0), 2.0, n), 3 * 365 * 86400.0)
    gap = np.floor(np.where(long_gap, between, np.where(pause, pause_gap, in_session)))
    start = np.searchsorted(user, np.arange(n_users))
    gap[start] = 0
    span = np.bincount(user, weights=gap, minlength=n_users)
    room = ML_LAST_TIMESTAMP - ML_FIRST_TIMESTAMP
    squeeze = np.minimum(1.0, 0.95 * room / np.maximum(span, 1.0))
    gap = np.floor(gap * squeeze[user])
    offset = np.cumsum(gap)
    offset -= offset[start][user]
    span = np.bincount(user, weights=gap, minlength=n_users)
    # When users joined: an early-MovieLens wave and a larger recent one.
    when = np.where(rng.random(n_users) < 0.3, rng.beta(1.5, 6.0, n_users), rng.beta(1.3, 1.0, n_users))
    first = ML_FIRST_TIMESTAMP + np.floor(when * (room - span))
    return (first[user] + offset).astype(np.int64)


def _half_stars(rng, cat, user, item, timestamp, bias, taste, whole_star_user) -> np.ndarray:
    genre = cat.primary_genre[item]
    affinity = np.where(genre >= 0, np.log(len(GENRES) * taste[user, np.maximum(genre, 0)] + 1e-9), 0.0)
    z = bias[user] + cat.quality[item] + 0.3 * np.clip(affinity, -3, 2) + rng.normal(0, 0.75, len(user))
    whole = whole_star_user[user] | (timestamp < HALF_STARS_FROM)
    whole_share = whole.mean()
    half_probs = ML_RATING_PROBS.copy()
    half_probs[1::2] -= whole_share * WHOLE_STAR_PROBS
    half_probs = np.maximum(half_probs / max(1.0 - whole_share, 1e-9), 0.002)
    out = np.empty(len(user), np.int64)
    for mask, probs, step in ((whole, WHOLE_STAR_PROBS, 2), (~whole, half_probs, 1)):
        if mask.any():
            cuts = np.quantile(z[mask], np.cumsum(probs)[:-1] / probs.sum())
            out[mask] = (np.searchsorted(cuts, z[mask], side="right") + 1) * step
    return out


def simulate_chunk(cat: Catalogue, cfg: GeneratorConfig, counts: np.ndarray, chunk_index: int) -> ChunkRatings:
    """Histories of one chunk of users, in generation order (per user: time order)."""
    rng = _rng(cfg, 10, chunk_index)
    n_users = len(counts)
    present = np.bincount(cat.genre_mask.nonzero()[1], minlength=len(GENRES)) > 0
    taste = rng.dirichlet(0.3 * np.ones(len(GENRES)), n_users) * present + 1e-12 * present
    taste /= taste.sum(axis=1, keepdims=True)
    taste_cdf = np.cumsum(taste, axis=1)
    taste_cdf[:, -1] = 1.0 + 1e-9
    bias = rng.normal(0.0, 0.45, n_users)
    whole_star_user = rng.random(n_users) < 0.25

    user, item, link = _histories(cat, cfg, rng, counts, taste_cdf)
    timestamp = _timestamps(rng, user, link, counts)
    half_stars = _half_stars(rng, cat, user, item, timestamp, bias, taste, whole_star_user)
    return ChunkRatings(user=user, item=item, link=link, timestamp=timestamp, half_stars=half_stars)


# -------------------------------------------------------------------------------------------------------- output

class _HashedFile:
    """A binary file that keeps a running SHA-256 of what it wrote."""

    def __init__(self, path: Path):
        self.path, self.handle, self.sha256, self.lines = path, open(path, "wb"), hashlib.sha256(), 0

    def write(self, data) -> None:
        self.handle.write(data)
        self.sha256.update(data)

    def close(self) -> str:
        self.handle.close()
        return self.sha256.hexdigest()


def _csv_lines(columns: list[pa.Array], eol: str) -> pa.Array:
    """Each row as one binary value `a,b,c<eol>` (pyarrow kernels, no Python loop)."""
    text = [c if pa.types.is_string(c.type) else pc.cast(c, pa.string()) for c in columns]
    line = pc.binary_join_element_wise(*text, ",")
    return pc.binary_join_element_wise(line, pa.scalar(eol), "").cast(pa.binary())


def _concat_bytes(lines: pa.Array) -> memoryview:
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]]


def _csv_text(rows: list[list], eol: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=eol).writerows(rows)  # QUOTE_MINIMAL: quotes only commas/quotes, doubles quotes
    return buf.getvalue().encode("utf-8")


@dataclass
class _CorruptionPlan:
    after_row: np.ndarray  # global clean-row index each bad row follows
    reason: np.ndarray  # index into RATINGS_REASONS


def _plan_corruption(cfg: GeneratorConfig) -> _CorruptionPlan:
    if cfg.corrupt_fraction <= 0:
        return _CorruptionPlan(np.zeros(0, np.int64), np.zeros(0, np.int64))
    rng = _rng(cfg, 4)
    n_bad = max(len(RATINGS_REASONS), int(round(cfg.corrupt_fraction * cfg.n_ratings)))
    reason = np.r_[np.arange(len(RATINGS_REASONS)), rng.integers(0, len(RATINGS_REASONS), n_bad - len(RATINGS_REASONS))]
    after = rng.integers(0, cfg.n_ratings, n_bad)
    order = np.argsort(after, kind="stable")
    return _CorruptionPlan(after[order], reason[order])


def _unrated_movies(rng, cat, users, rated_keys) -> np.ndarray:
    """A catalogue movie each given user has not rated (keys = user * n_items + item, sorted)."""
    n_items = len(cat.movie_ids)
    out = rng.integers(0, n_items, len(users))
    for _ in range(50):
        clash = np.isin(users * n_items + out, rated_keys)
        if not clash.any():
            break
        out[clash] = rng.integers(0, n_items, int(clash.sum()))
    return out


def _bad_rating_lines(rng, reasons, user_ids, movie_ids, half_stars, timestamps, unrated_movie_ids,
                      unknown_ids, eol) -> list[bytes]:
    """One line per planted row, built from the clean row it follows (or an unrated movie of that user)."""
    lines = []
    for k, reason in enumerate(RATINGS_REASONS[r] for r in reasons):
        u, m, ts = int(user_ids[k]), int(unrated_movie_ids[k]), int(timestamps[k])
        r = RATING_LABELS[int(half_stars[k])]
        variant = int(rng.integers(0, 4))
        if reason == "malformed":
            line = [f"{u},{m},{r}", f"{u},{m},{r},{ts},{ts}", f"{u};{m};{r};{ts}", f"{u},{m},{r},{ts},"][variant]
        elif reason == "non_numeric":
            line = [f"abc,{m},{r},{ts}", f"{u},m{m},{r},{ts}", f"{u},{m},four,{ts}", f"{u},{m},{r},yesterday"][variant]
        elif reason == "rating_out_of_range":
            line = f"{u},{m},{['0.0', '5.5', '6.0', '-1.0'][variant]},{ts}"
        elif reason == "not_half_star":
            line = f"{u},{m},{['3.7', '4.25', '2.2', '0.7'][variant]},{ts}"
        elif reason == "missing_id":
            line = f",{m},{r},{ts}" if variant % 2 else f"{u},,{r},{ts}"
        elif reason == "non_positive":
            line = f"0,{m},{r},{ts}" if variant % 2 else f"-{u},{m},{r},{ts}"
        elif reason == "bad_timestamp":
            line = f"{u},{m},{r},0" if variant % 2 else f"{u},{m},{r},-{ts}"
        elif reason == "non_utf8":
            lines.append(f"{u},{m},{r},{ts}".encode() + [b"\xff", b"\xe9", b"\xc3\x28", b"\x80"][variant] +
                         eol.encode())
            continue
        elif reason == "duplicate":
            line = f"{u},{int(movie_ids[k])},{r},{ts}"
        else:  # unknown_movie
            line = f"{u},{int(unknown_ids[k])},{r},{ts}"
        lines.append((line + eol).encode())
    return lines


def _insert_bad_rows(rng, cat, known, clean, at, reasons, user, user_ids, movie_ids, stars, ts, eol):
    """Clean lines with one bad line inserted after each clean row `at`; returns (lines, positions of bad lines)."""
    if not len(at):
        return clean, np.zeros(0, np.int64)
    n_items = len(cat.movie_ids)
    unrated = _unrated_movies(rng, cat, user[at], np.sort(user * n_items + np.searchsorted(cat.movie_ids, movie_ids)))
    unknown = rng.integers(1, len(known) + 1000, len(at))
    while (clash := (unknown < len(known)) & known[np.minimum(unknown, len(known) - 1)]).any():
        unknown[clash] = rng.integers(1, len(known) + 1000, int(clash.sum()))
    bad = _bad_rating_lines(rng, reasons, user_ids[at], movie_ids[at], stars[at], ts[at], cat.movie_ids[unrated],
                            unknown, eol)
    keys = np.r_[2 * np.arange(len(clean)) + 1, 2 * at + 2]  # clean row j -> 2j+1, a bad row after j -> 2j+2
    merge = np.argsort(keys, kind="stable")
    position = np.empty(len(merge), np.int64)
    position[merge] = np.arange(len(merge))
    return pa.concat_arrays([clean, pa.array(bad, pa.binary())]).take(pa.array(merge)), position[len(clean):]


def generate(out_dir, n_users: int = 162_541, n_items: int = 59_047, n_ratings: int = 25_000_095, seed: int = 0,
             corrupt_fraction: float = 0.0, *, config: GeneratorConfig | None = None, progress: bool = False) -> dict:
    """Write the MovieLens-shaped files into out_dir and return summary counts. `config` overrides the keywords."""
    cfg = config or GeneratorConfig(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed,
                                    corrupt_fraction=corrupt_fraction)
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerateError(f"cannot create --out {out}: {exc.strerror}") from None
    eol = cfg.line_terminator

    cat = build_catalogue(cfg)
    counts = allocate_user_counts(cfg)
    plan = _plan_corruption(cfg)
    corrupt_rng = _rng(cfg, 5)
    tag_rng = _rng(cfg, 6)
    known = np.zeros(int(cat.movie_ids[-1]) + 1, bool)
    known[cat.movie_ids] = True

    checksums: dict[str, str] = {}
    bad_lines: dict[str, list] = {"ratings.csv": [], "movies.csv": []}
    rated = np.zeros(len(cat.movie_ids), np.int64)
    tag_parts: list[tuple[np.ndarray, ...]] = []
    ratings_file = _HashedFile(out / "ratings.csv")
    ratings_file.write(f"userId,movieId,rating,timestamp{eol}".encode())
    lines_written, rows_done = 1, 0

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("ratings.csv"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                       TimeRemainingColumn())
        task = bar.add_task("ratings", total=cfg.n_ratings)
        bar.start()
    try:
        for chunk_index, first in enumerate(range(0, cfg.n_users, cfg.users_per_chunk)):
            chunk_counts = counts[first:first + cfg.users_per_chunk]
            chunk = simulate_chunk(cat, cfg, chunk_counts, chunk_index)
            # ML order: by userId, then movieId (movie ids ascend with item index).
            order = np.argsort(chunk.user * len(cat.movie_ids) + chunk.item, kind="stable")
            user, item = chunk.user[order], chunk.item[order]
            stars, ts = chunk.half_stars[order], chunk.timestamp[order]
            user_ids, movie_ids = user + first + 1, cat.movie_ids[item]
            rated += np.bincount(item, minlength=len(cat.movie_ids))
            clean = _csv_lines([pa.array(user_ids), pa.array(movie_ids),
                                pa.array(RATING_LABELS, pa.string()).take(pa.array(stars)), pa.array(ts)], eol)

            lo, hi = np.searchsorted(plan.after_row, [rows_done, rows_done + len(user)])
            lines, bad_positions = _insert_bad_rows(
                corrupt_rng, cat, known, clean, plan.after_row[lo:hi] - rows_done, plan.reason[lo:hi],
                user, user_ids, movie_ids, stars, ts, eol)
            bad_lines["ratings.csv"] += [[int(lines_written + 1 + p), RATINGS_REASONS[r]]
                                         for p, r in zip(bad_positions, plan.reason[lo:hi])]
            ratings_file.write(_concat_bytes(lines))
            lines_written += len(lines)
            rows_done += len(user)
            tag_parts.append(_tags_for_chunk(tag_rng, cfg, cat, user_ids, item, ts, first, len(chunk_counts)))
            if bar is not None:
                bar.update(task, advance=len(user))
    finally:
        if bar is not None:
            bar.stop()
    checksums["ratings.csv"] = ratings_file.close()

    n_tags = _write_tags(out, cfg, cat, tag_parts, rated, tag_rng, checksums)
    n_movie_lines = _write_movies(out, cfg, cat, known, bad_lines, checksums)
    _write_text(out / "links.csv", _csv_text(
        [["movieId", "imdbId", "tmdbId"]] +
        [[int(m), f"{int(i):07d}", "" if t < 0 else int(t)] for m, i, t in zip(cat.movie_ids, cat.imdb_ids,
                                                                                cat.tmdb_ids)], eol), checksums)
    _write_text(out / "README.txt", _readme(cfg).encode(), checksums)

    counts_by_reason = {name: {reason: sum(r == reason for _, r in bad_lines[name]) for reason in reasons}
                        for name, reasons in (("ratings.csv", RATINGS_REASONS), ("movies.csv", MOVIES_REASONS))}
    corruptions = {"seed": cfg.seed, "corrupt_fraction": cfg.corrupt_fraction,
                   "clean_rows": {"ratings.csv": cfg.n_ratings, "movies.csv": cfg.n_items},
                   "counts": counts_by_reason, "lines": bad_lines}
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in corruptions.items()) + "\n}\n"
    _write_text(out / "corruptions.json", text.encode(), checksums)
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(checksums.items())))

    return {
        "out_dir": str(out), "users": cfg.n_users, "movies": cfg.n_items, "ratings": cfg.n_ratings,
        "rated_movies": int((rated > 0).sum()), "tags": n_tags, "links": cfg.n_items,
        "ratings_lines": lines_written - 1, "movies_lines": n_movie_lines,
        "bad_ratings_rows": len(bad_lines["ratings.csv"]), "bad_movies_rows": len(bad_lines["movies.csv"]),
        "min_ratings_per_user": int(counts.min()), "max_ratings_per_user": int(counts.max()),
        "config": asdict(cfg),
    }


# ----------------------------------------------------------------------------------------- tags, movies, readme

_GENERIC_TAGS = ("atmospheric", "thought-provoking", "funny", "twist ending", "visually appealing", "quirky",
                 "dark comedy", "surreal", "based on a book", "great soundtrack", "cult film", "classic",
                 "overrated", "predictable", "slow", "beautiful", "emotional", "In Netflix queue", "must see",
                 "boring", "dialogue", "cinematography", "true story", "nonlinear", "original", "remake",
                 "Oscar (Best Picture)", "stylized", "sequel", "franchise", "criterion", "book was better",
                 "good, not great", 'so bad it\'s "good"', "Tom Hanks", "Meryl Streep")
_GENRE_TAGS = {
    "Action": ("action", "explosions", "car chase", "martial arts"), "Adventure": ("adventure", "treasure", "quest"),
    "Animation": ("animation", "Pixar", "anime"), "Children": ("Disney", "family", "kids"),
    "Comedy": ("comedy", "hilarious", "satire"), "Crime": ("heist", "mafia", "crime"),
    "Documentary": ("documentary", "history", "politics"), "Drama": ("drama", "sad", "mental illness"),
    "Fantasy": ("magic", "fantasy", "dragons"), "Film-Noir": ("noir", "black and white"),
    "Horror": ("scary", "zombies", "gore"), "IMAX": ("IMAX", "3D"), "Musical": ("music", "musical", "dance"),
    "Mystery": ("mystery", "suspense", "whodunit"), "Romance": ("romance", "love story", "romantic"),
    "Sci-Fi": ("sci-fi", "time travel", "aliens", "space", "dystopia"), "Thriller": ("suspense", "tense", "thriller"),
    "War": ("war", "World War II", "anti-war"), "Western": ("western", "cowboys"),
}
TAG_VOCABULARY = _GENERIC_TAGS + tuple(tag for tags in _GENRE_TAGS.values() for tag in tags)
_GENRE_TAG_START = np.cumsum([len(_GENERIC_TAGS)] + [len(_GENRE_TAGS[g]) for g in GENRES])


def _tags_for_chunk(rng, cfg, cat, user_ids, item, ts, first_user, n_users):
    """Some users tag some of their rated movies with 1-3 distinct tags, a few minutes after rating them."""
    tagger = rng.random(n_users) < 0.10
    row_tagger = tagger[user_ids - first_user - 1]
    share = max(row_tagger.mean(), 1e-9)
    pick = np.flatnonzero(row_tagger & (rng.random(len(item)) < min(1.0, cfg.tag_rate / 1.7 / share)))
    n_tags = 1 + (rng.random(len(pick)) < 0.45) + (rng.random(len(pick)) < 0.25)
    row = np.repeat(pick, n_tags)
    genre = cat.primary_genre[item[row]]
    generic = rng.zipf(1.6, len(row)) - 1
    generic = np.where(generic < len(_GENERIC_TAGS), generic, rng.integers(0, len(_GENERIC_TAGS), len(row)))
    g = np.maximum(genre, 0)
    specific = _GENRE_TAG_START[g] + (rng.random(len(row)) * (_GENRE_TAG_START[g + 1] - _GENRE_TAG_START[g]))
    tag = np.where((genre >= 0) & (rng.random(len(row)) < 0.5), specific.astype(np.int64), generic)
    _, keep = np.unique(row * len(TAG_VOCABULARY) + tag, return_index=True)
    keep.sort()
    row, tag = row[keep], tag[keep]
    stamp = np.minimum(ts[row] + rng.integers(0, 600, len(row)), ML_LAST_TIMESTAMP)
    return user_ids[row], item[row], tag, stamp


def _write_tags(out, cfg, cat, parts, rated, rng, checksums) -> int:
    user = np.concatenate([p[0] for p in parts])
    item = np.concatenate([p[1] for p in parts])
    tag = np.concatenate([p[2] for p in parts])
    stamp = np.concatenate([p[3] for p in parts])
    orphans = np.flatnonzero(rated == 0)  # every listed movie has a rating or a tag, as in MovieLens
    if len(orphans):
        user = np.r_[user, rng.integers(1, cfg.n_users + 1, len(orphans))]
        item = np.r_[item, orphans]
        tag = np.r_[tag, rng.integers(0, len(_GENERIC_TAGS), len(orphans))]
        stamp = np.r_[stamp, rng.integers(ML_FIRST_TIMESTAMP, ML_LAST_TIMESTAMP + 1, len(orphans))]
    order = np.lexsort((item, user))
    vocabulary = np.array(TAG_VOCABULARY, dtype=object)
    rows = [["userId", "movieId", "tag", "timestamp"]]
    rows += zip(user[order].tolist(), cat.movie_ids[item[order]].tolist(), vocabulary[tag[order]].tolist(),
                stamp[order].tolist())
    _write_text(out / "tags.csv", _csv_text(rows, cfg.line_terminator), checksums)
    return len(order)


def _write_movies(out, cfg, cat, known, bad_lines, checksums) -> int:
    eol = cfg.line_terminator
    lines = [_csv_text([["movieId", "title", "genres"]], eol)]
    lines += [_csv_text([[int(m), t, g]], eol) for m, t, g in zip(cat.movie_ids, cat.titles, cat.genres)]
    if cfg.corrupt_fraction > 0:
        rng = _rng(cfg, 7)
        n_bad = max(len(MOVIES_REASONS), int(round(cfg.corrupt_fraction * cfg.n_items)))
        reasons = np.r_[np.arange(len(MOVIES_REASONS)), rng.integers(0, len(MOVIES_REASONS), n_bad - len(MOVIES_REASONS))]
        fresh_ids = len(known) + 1000 + rng.choice(10 * n_bad, n_bad, replace=False)  # ids no rating uses
        bad = []
        for k, reason in enumerate(MOVIES_REASONS[r] for r in reasons):
            title, genres = cat.titles[k % len(cat.titles)], cat.genres[k % len(cat.genres)]
            if reason == "malformed":  # unquoted and comma-free, so the field count is really wrong
                title = title.replace('"', "").replace(",", "")
                text = (f"{fresh_ids[k]},{title}" if k % 2 else f"{fresh_ids[k]},{title},{genres},extra") + eol
            elif reason == "non_numeric":
                text = _csv_text([[f"id{fresh_ids[k]}", title, genres]], eol).decode()
            elif reason == "missing_id":
                text = _csv_text([["", title, genres]], eol).decode()
            else:
                text = _csv_text([[0 if k % 2 else -int(fresh_ids[k]), title, genres]], eol).decode()
            bad.append((text.encode(), reason))
        after = np.sort(rng.integers(1, len(lines) + 1, n_bad))  # never before the header
        merged, line_no, j = [], 0, 0
        for i, text in enumerate(lines):
            merged.append(text)
            line_no += 1
            while j < n_bad and after[j] == i + 1:
                merged.append(bad[j][0])
                line_no += 1
                bad_lines["movies.csv"].append([line_no, bad[j][1]])
                j += 1
        lines = merged
    _write_text(out / "movies.csv", b"".join(lines), checksums)
    return len(lines) - 1


def _write_text(path: Path, data: bytes, checksums: dict) -> None:
    path.write_bytes(data)
    checksums[path.name] = hashlib.sha256(data).hexdigest()


def _readme(cfg: GeneratorConfig) -> str:
    return (
        "Summary\n=======\n\n"
        "SYNTHETIC data in the MovieLens 25M layout, written by `recsys generate` (recsys_data/generate.py).\n"
        "It is not MovieLens data. Files, headers, formats and sort orders follow the MovieLens releases.\n\n"
        f"users={cfg.n_users} movies={cfg.n_items} ratings={cfg.n_ratings} seed={cfg.seed} "
        f"corrupt_fraction={cfg.corrupt_fraction}\n\n"
        "corruptions.json lists the rows planted as bad input (per file and reason, with line numbers).\n"
    )
