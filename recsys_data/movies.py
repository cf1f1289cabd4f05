"""The synthetic movies (`build_movies`): ids, popularity, quality, genres, years, titles, franchises, links and
the transition graph the histories walk.

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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_data.config import GeneratorConfig, rng_for
from recsys_data.movielens import GENRE_COUNT_PROBS, GENRE_WEIGHTS, GENRES, ML_ID_SPAN, NO_GENRES


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
    """Popularity-weighted draws over all movies or inside one genre (vectorised inverse-cdf lookups)."""

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
class Movies:
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


def build_movies(cfg: GeneratorConfig) -> Movies:
    # One stream for every draw below but the titles: the order of the draws is part of the output.
    rng = rng_for(cfg, 1)
    n = cfg.n_items
    max_id = max(n, int(round(n * ML_ID_SPAN)))
    movie_ids = np.sort(rng.choice(max_id, size=n, replace=False) + 1).astype(np.int64)

    weight = (rng.permutation(n) + 1.0 + n / 1200) ** -cfg.popularity_exponent  # head flattens with size
    genre_mask, primary = _draw_genres(rng, n)
    years = np.clip(np.round(2019 - rng.gamma(1.3, 18.0, size=n)), 1891, 2019).astype(np.int64)
    title_rng = rng_for(cfg, 2)
    base_titles = [_make_title(title_rng) for _ in range(n)]
    franchise_head, franchise_next, titles = _make_franchises(rng, weight, years, genre_mask, primary, base_titles)

    popularity = weight / weight.sum()
    log_pop = np.log(popularity)
    quality = rng.normal(0.0, 0.45, n) + 0.2 * (log_pop - log_pop.mean()) / (log_pop.std() + 1e-12)

    sampler = Sampler.build(popularity, genre_mask)
    successors, successor_cdf, continue_prob = _transition_graph(rng, cfg, sampler, primary, franchise_next)

    missing_year = rng.random(n) < 0.0015
    names = np.array(GENRES, dtype=object)
    imdb_ids, tmdb_ids = _link_ids(rng, years)
    return Movies(
        movie_ids=movie_ids, popularity=popularity, quality=quality, genre_mask=genre_mask, primary_genre=primary,
        sampler=sampler, successors=successors, successor_cdf=successor_cdf, continue_prob=continue_prob,
        franchise_head=franchise_head,
        titles=[t if missing_year[i] else f"{t} ({years[i]})" for i, t in enumerate(titles)],
        genres=["|".join(names[row]) if row.any() else NO_GENRES for row in genre_mask],
        imdb_ids=imdb_ids, tmdb_ids=tmdb_ids)


def _draw_genres(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each movie's genre mask (n, 19) and primary genre (-1: `(no genres listed)`)."""
    n_genres = rng.choice(len(GENRE_COUNT_PROBS), size=n, p=GENRE_COUNT_PROBS) + 1
    keys = np.log(GENRE_WEIGHTS / GENRE_WEIGHTS.sum()) + rng.gumbel(size=(n, len(GENRES)))
    order = np.argsort(-keys, axis=1)  # genres drawn without replacement, by ML frequency
    genre_mask = np.argsort(order, axis=1) < n_genres[:, None]
    primary = order[:, 0].copy()
    no_genres = rng.random(n) < 0.0035
    genre_mask[no_genres] = False
    primary[no_genres] = -1
    return genre_mask, primary


def _make_franchises(rng: np.random.Generator, weight: np.ndarray, years: np.ndarray, genre_mask: np.ndarray,
                     primary: np.ndarray, base_titles: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Series of 2-6 films; the most popular member becomes the first film. A series shares its first film's
    genres, and `weight`, `years`, `genre_mask` and `primary` are changed in place. Returns each movie's first film
    and next film (-1 outside franchises) and the titles, sequels renamed."""
    n = len(weight)
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
    return franchise_head, franchise_next, titles


def _transition_graph(rng: np.random.Generator, cfg: GeneratorConfig, sampler: Sampler, primary: np.ndarray,
                      franchise_next: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 preferred successors per movie, mostly from the movie's own genre; a franchise film's first successor is
    the next film. Returns the successors, their cdf and each movie's probability of continuing."""
    n = len(primary)
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
    return successors, successor_cdf, continue_prob


def _link_ids(rng: np.random.Generator, years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """imdb ids grow with release year, as on IMDb; tmdb ids are unrelated; 0.1% of movies lack a tmdb id (-1)."""
    n = len(years)
    imdb_ids = np.empty(n, np.int64)
    imdb_ids[np.argsort(years + rng.normal(0, 8, n), kind="stable")] = np.sort(
        rng.choice(9_999_999, size=n, replace=False) + 1)
    tmdb_ids = rng.choice(max(700_000, 2 * n), size=n, replace=False) + 2
    tmdb_ids[rng.random(n) < 0.001] = -1
    return imdb_ids, tmdb_ids
