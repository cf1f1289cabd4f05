"""The bad rows planted in ratings.csv and movies.csv, one defect each, for the ETL's reject handling to find.

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

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recsys_data.config import GeneratorConfig, rng_for
from recsys_data.movielens import RATING_LABELS
from recsys_data.writer import csv_text

RATINGS_REASONS = ("malformed", "non_numeric", "rating_out_of_range", "not_half_star", "missing_id",
                   "non_positive", "bad_timestamp", "non_utf8", "duplicate", "unknown_movie")
MOVIES_REASONS = ("malformed", "non_numeric", "missing_id", "non_positive")


@dataclass
class CorruptionPlan:
    after_row: np.ndarray  # global clean-row index each bad row follows
    reason: np.ndarray  # index into RATINGS_REASONS


def plan_corruption(cfg: GeneratorConfig) -> CorruptionPlan:
    if cfg.corrupt_fraction <= 0:
        return CorruptionPlan(np.zeros(0, np.int64), np.zeros(0, np.int64))
    rng = rng_for(cfg, 4)
    n_bad = max(len(RATINGS_REASONS), int(round(cfg.corrupt_fraction * cfg.n_ratings)))
    reason = np.r_[np.arange(len(RATINGS_REASONS)), rng.integers(0, len(RATINGS_REASONS), n_bad - len(RATINGS_REASONS))]
    after = rng.integers(0, cfg.n_ratings, n_bad)
    order = np.argsort(after, kind="stable")
    return CorruptionPlan(after[order], reason[order])


def _unrated_movies(rng, movies, users, rated_keys) -> np.ndarray:
    """A movie each given user has not rated (keys = user * n_items + item, sorted)."""
    n_items = len(movies.movie_ids)
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


def insert_bad_rows(rng, movies, known, clean, at, reasons, user, user_ids, movie_ids, stars, ts, eol):
    """Clean lines with one bad line inserted after each clean row `at`; returns (lines, positions of bad lines)."""
    if not len(at):
        return clean, np.zeros(0, np.int64)
    n_items = len(movies.movie_ids)
    rated_keys = np.sort(user * n_items + np.searchsorted(movies.movie_ids, movie_ids))
    unrated = _unrated_movies(rng, movies, user[at], rated_keys)
    unknown = rng.integers(1, len(known) + 1000, len(at))
    while (clash := (unknown < len(known)) & known[np.minimum(unknown, len(known) - 1)]).any():
        unknown[clash] = rng.integers(1, len(known) + 1000, int(clash.sum()))
    bad = _bad_rating_lines(rng, reasons, user_ids[at], movie_ids[at], stars[at], ts[at], movies.movie_ids[unrated],
                            unknown, eol)
    keys = np.r_[2 * np.arange(len(clean)) + 1, 2 * at + 2]  # clean row j -> 2j+1, a bad row after j -> 2j+2
    merge = np.argsort(keys, kind="stable")
    position = np.empty(len(merge), np.int64)
    position[merge] = np.arange(len(merge))
    return pa.concat_arrays([clean, pa.array(bad, pa.binary())]).take(pa.array(merge)), position[len(clean):]



def insert_bad_movie_lines(cfg: GeneratorConfig, movies, known: np.ndarray, lines: list[bytes],
                           bad_lines: list) -> list[bytes]:
    """movies.csv's lines (header first) with its bad rows inserted; each bad row's [line, reason] is appended to
    `bad_lines`. Ids are ones no rating uses (`known` marks the movieIds of movies.csv)."""
    eol = cfg.line_terminator
    rng = rng_for(cfg, 7)
    n_bad = max(len(MOVIES_REASONS), int(round(cfg.corrupt_fraction * cfg.n_items)))
    reasons = np.r_[np.arange(len(MOVIES_REASONS)), rng.integers(0, len(MOVIES_REASONS), n_bad - len(MOVIES_REASONS))]
    fresh_ids = len(known) + 1000 + rng.choice(10 * n_bad, n_bad, replace=False)  # ids no rating uses
    bad = []
    for k, reason in enumerate(MOVIES_REASONS[r] for r in reasons):
        title, genres = movies.titles[k % len(movies.titles)], movies.genres[k % len(movies.genres)]
        if reason == "malformed":  # unquoted and comma-free, so the field count is really wrong
            title = title.replace('"', "").replace(",", "")
            text = (f"{fresh_ids[k]},{title}" if k % 2 else f"{fresh_ids[k]},{title},{genres},extra") + eol
        elif reason == "non_numeric":
            text = csv_text([[f"id{fresh_ids[k]}", title, genres]], eol).decode()
        elif reason == "missing_id":
            text = csv_text([["", title, genres]], eol).decode()
        else:
            text = csv_text([[0 if k % 2 else -int(fresh_ids[k]), title, genres]], eol).decode()
        bad.append((text.encode(), reason))
    after = np.sort(rng.integers(1, len(lines) + 1, n_bad))  # never before the header
    merged, line_no, j = [], 0, 0
    for i, text in enumerate(lines):
        merged.append(text)
        line_no += 1
        while j < n_bad and after[j] == i + 1:
            merged.append(bad[j][0])
            line_no += 1
            bad_lines.append([line_no, bad[j][1]])
            j += 1
    return merged
