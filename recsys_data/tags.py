"""tags.csv: who tags what, with which words, and when.

About 10% of users tag; they tag ~4.4% of all ratings in total with 1-3 tags (genre-specific or generic
vocabulary) a few minutes after rating. Every movie nobody rated gets one tag, so (as in ML) every movie in
movies.csv has a rating or a tag.
"""
from __future__ import annotations

import numpy as np

from recsys_data.movielens import GENRES, ML_FIRST_TIMESTAMP, ML_LAST_TIMESTAMP
from recsys_data.writer import csv_text, write_text

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


def tags_for_chunk(rng, cfg, movies, user_ids, item, ts, first_user, n_users):
    """Some users tag some of their rated movies with 1-3 distinct tags, a few minutes after rating them."""
    tagger = rng.random(n_users) < 0.10
    row_tagger = tagger[user_ids - first_user - 1]
    share = max(row_tagger.mean(), 1e-9)
    pick = np.flatnonzero(row_tagger & (rng.random(len(item)) < min(1.0, cfg.tag_rate / 1.7 / share)))
    n_tags = 1 + (rng.random(len(pick)) < 0.45) + (rng.random(len(pick)) < 0.25)
    row = np.repeat(pick, n_tags)
    genre = movies.primary_genre[item[row]]
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


def write_tags(out, cfg, movies, parts, rated, rng, checksums) -> int:
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
    rows += zip(user[order].tolist(), movies.movie_ids[item[order]].tolist(), vocabulary[tag[order]].tolist(),
                stamp[order].tolist())
    write_text(out / "tags.csv", csv_text(rows, cfg.line_terminator), checksums)
    return len(order)
