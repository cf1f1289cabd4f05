"""Each chunk of users' histories: which movies, in what order, when, and the stars (`simulate_chunk`).

A user has a bias b_u ~ N(0, 0.45), a Dirichlet genre taste, and with p=0.25 rates in whole stars only.

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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_data.config import GeneratorConfig, rng_for
from recsys_data.movielens import (GENRES, HALF_STARS_FROM, ML_FIRST_TIMESTAMP, ML_LAST_TIMESTAMP, ML_RATING_PROBS,
                                   WHOLE_STAR_PROBS)
from recsys_data.movies import Movies

FOLLOW, SAME_GENRE, NEW_GENRE, FIRST = 1, 2, 3, 0  # how a position in a history was reached
LONG_GAP_PROB = np.array([0.0, 0.025, 0.08, 0.2])  # indexed by the labels above
SHORT_GAP_MEDIAN_S = np.array([10.0, 10.0, 35.0, 35.0])


@dataclass
class ChunkRatings:
    """One chunk of users' ratings in generation (time) order; user is the 0-based index inside the chunk."""

    user: np.ndarray
    item: np.ndarray  # item index into Movies
    link: np.ndarray  # FOLLOW / SAME_GENRE / NEW_GENRE / FIRST
    timestamp: np.ndarray
    half_stars: np.ndarray  # rating * 2, 1..10


def _segments(movies: Movies, cfg: GeneratorConfig, rng: np.random.Generator, seg_user: np.ndarray,
              taste_cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk one segment per entry of seg_user (sorted); returns (user, item, link) flattened in order."""
    s = len(seg_user)
    first = np.r_[True, seg_user[1:] != seg_user[:-1]]
    stay = (rng.random(s) < cfg.genre_stay_prob) & ~first
    fresh_genre = (taste_cdf[seg_user] < rng.random(s)[:, None]).sum(axis=1)
    fill = np.where(stay, 0, np.arange(s))
    genre = fresh_genre[np.maximum.accumulate(fill)]
    popular = rng.random(s) < cfg.popular_seed_prob
    seed = np.where(popular, movies.sampler.popular(rng, s), movies.sampler.in_genre(rng, genre))
    head = movies.franchise_head[seed]
    to_head = (head >= 0) & (rng.random(s) < 0.75)
    seed[to_head] = head[to_head]
    seed_link = np.where(first, FIRST, np.where(stay & ~popular, SAME_GENRE, NEW_GENRE))

    seg_ids, items = [np.arange(s)], [seed]
    alive, current = np.arange(s), seed.copy()
    for _ in range(60):
        alive = alive[rng.random(len(alive)) < movies.continue_prob[current[alive]]]
        if not len(alive):
            break
        c = current[alive]
        u = rng.random(len(alive))
        slot = (u >= movies.successor_cdf[c, 0]).astype(np.int64) + (u >= movies.successor_cdf[c, 1])
        current[alive] = movies.successors[c, slot]
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


def _histories(movies: Movies, cfg: GeneratorConfig, rng: np.random.Generator, counts: np.ndarray,
               taste_cdf: np.ndarray):
    n_users, n_items = len(counts), len(movies.movie_ids)
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
        u, i, l = _segments(movies, cfg, rng, np.repeat(wanted, n_seg), taste_cdf)
        if round_:
            l = np.where(l == FIRST, NEW_GENRE, l)
        user, item, link = np.r_[user, u], np.r_[item, i], np.r_[link, l]
        order = np.argsort(user, kind="stable")
        user, item, link = _dedupe(user[order], item[order], link[order], counts, n_items)
        deficit = counts - np.bincount(user, minlength=n_users)
    short = np.flatnonzero(deficit > 0)
    if len(short):  # rare heavy user: popularity-weighted fill without replacement (Gumbel top-k)
        log_pop = np.log(movies.popularity)
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


def _half_stars(rng, movies, user, item, timestamp, bias, taste, whole_star_user) -> np.ndarray:
    genre = movies.primary_genre[item]
    affinity = np.where(genre >= 0, np.log(len(GENRES) * taste[user, np.maximum(genre, 0)] + 1e-9), 0.0)
    z = bias[user] + movies.quality[item] + 0.3 * np.clip(affinity, -3, 2) + rng.normal(0, 0.75, len(user))
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


def simulate_chunk(movies: Movies, cfg: GeneratorConfig, counts: np.ndarray, chunk_index: int) -> ChunkRatings:
    """Histories of one chunk of users, in generation order (per user: time order)."""
    rng = rng_for(cfg, 10, chunk_index)
    n_users = len(counts)
    present = np.bincount(movies.genre_mask.nonzero()[1], minlength=len(GENRES)) > 0
    taste = rng.dirichlet(0.3 * np.ones(len(GENRES)), n_users) * present + 1e-12 * present
    taste /= taste.sum(axis=1, keepdims=True)
    taste_cdf = np.cumsum(taste, axis=1)
    taste_cdf[:, -1] = 1.0 + 1e-9
    bias = rng.normal(0.0, 0.45, n_users)
    whole_star_user = rng.random(n_users) < 0.25

    user, item, link = _histories(movies, cfg, rng, counts, taste_cdf)
    timestamp = _timestamps(rng, user, link, counts)
    half_stars = _half_stars(rng, movies, user, item, timestamp, bias, taste, whole_star_user)
    return ChunkRatings(user=user, item=item, link=link, timestamp=timestamp, half_stars=half_stars)
