"""Synthetic MovieLens-25M-shaped data: ratings.csv, movies.csv, tags.csv, links.csv, README.txt, SHA256SUMS.

Needs numpy and pyarrow only (no Spark). Output layout is byte-compatible with the MovieLens releases
(ml-latest-small checked): same headers, `\\r\\n` line ends, `4.0`/`3.5` ratings, titles quoted only when they
contain a comma or quote (quotes doubled), genres `A|B` from ML's 19 genres or `(no genres listed)`, imdbId
zero-padded to 7 digits, tmdbId sometimes empty; ratings and tags sorted by (userId, movieId), movies and links
by movieId. Same config and seed -> the same bytes.

The parts, each a module of recsys_data: `movies` (the synthetic movies and their transition graph), `users` (how
many movies each user rates), `ratings` (each user's history, its times and stars), `tags`, `bad_rows` (the rows
planted as bad input, `corrupt_fraction` > 0), `writer` (CSV bytes and checksums); `movielens` holds the targets
they match and `config` the settings. Each part draws from its own seeded stream (`config.rng_for`), so the parts
never shift one another's numbers. This module runs them in order and writes the files.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys_data.bad_rows import (MOVIES_REASONS, RATINGS_REASONS, insert_bad_movie_lines, insert_bad_rows,
                                  plan_corruption)
from recsys_data.config import GenerateError, GeneratorConfig, rng_for
from recsys_data.movielens import RATING_LABELS
from recsys_data.movies import build_movies
from recsys_data.ratings import simulate_chunk
from recsys_data.tags import tags_for_chunk, write_tags
from recsys_data.users import allocate_user_counts
from recsys_data.writer import HashedFile, concat_bytes, csv_lines, csv_text, write_text

__all__ = ["GenerateError", "GeneratorConfig", "generate"]


def generate(out_dir, n_users: int = 162_541, n_items: int = 59_047, n_ratings: int = 25_000_095, seed: int = 0,
             corrupt_fraction: float = 0.0, *, config: GeneratorConfig | None = None, progress: bool = False) -> dict:
    """Write the MovieLens-shaped files into out_dir and return summary counts. `config` overrides the keywords."""
    cfg = config or GeneratorConfig(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed,
                                    corrupt_fraction=corrupt_fraction)
    out = make_out_dir(out_dir)
    movies = build_movies(cfg)
    counts = allocate_user_counts(cfg)
    known = np.zeros(int(movies.movie_ids[-1]) + 1, bool)
    known[movies.movie_ids] = True

    checksums: dict[str, str] = {}
    bad_lines: dict[str, list] = {"ratings.csv": [], "movies.csv": []}
    tag_rng = rng_for(cfg, 6)
    ratings = write_ratings(out, cfg, movies, counts, known, tag_rng, bad_lines["ratings.csv"], progress)
    checksums["ratings.csv"] = ratings.digest

    n_tags = write_tags(out, cfg, movies, ratings.tag_parts, ratings.rated, tag_rng, checksums)
    n_movie_lines = write_movies_and_links(out, cfg, movies, known, bad_lines["movies.csv"], checksums)
    write_text(out / "README.txt", readme(cfg).encode(), checksums)
    write_corruptions(out, cfg, bad_lines, checksums)
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(checksums.items())))

    return {
        "out_dir": str(out), "users": cfg.n_users, "movies": cfg.n_items, "ratings": cfg.n_ratings,
        "rated_movies": int((ratings.rated > 0).sum()), "tags": n_tags, "links": cfg.n_items,
        "ratings_lines": ratings.lines_written - 1, "movies_lines": n_movie_lines,
        "bad_ratings_rows": len(bad_lines["ratings.csv"]), "bad_movies_rows": len(bad_lines["movies.csv"]),
        "min_ratings_per_user": int(counts.min()), "max_ratings_per_user": int(counts.max()),
        "config": asdict(cfg),
    }


def make_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerateError(f"cannot create --out {out}: {exc.strerror}") from None
    return out


@dataclass
class WrittenRatings:
    """What writing ratings.csv leaves for the later files: its checksum and line count, each movie's number of
    ratings, and each chunk's tag draws."""

    digest: str
    lines_written: int
    rated: np.ndarray
    tag_parts: list[tuple[np.ndarray, ...]]


def write_ratings(out: Path, cfg: GeneratorConfig, movies, counts: np.ndarray, known: np.ndarray, tag_rng,
                  bad_lines: list, progress: bool) -> WrittenRatings:
    """ratings.csv, a chunk of users at a time, with the planted bad rows; `bad_lines` gets [line, reason]s."""
    eol = cfg.line_terminator
    plan = plan_corruption(cfg)
    corrupt_rng = rng_for(cfg, 5)
    rated = np.zeros(len(movies.movie_ids), np.int64)
    tag_parts: list[tuple[np.ndarray, ...]] = []
    ratings_file = HashedFile(out / "ratings.csv")
    ratings_file.write(f"userId,movieId,rating,timestamp{eol}".encode())
    lines_written, rows_done = 1, 0
    with progress_bar(progress, cfg.n_ratings) as advance:
        for chunk_index, first in enumerate(range(0, cfg.n_users, cfg.users_per_chunk)):
            chunk_counts = counts[first:first + cfg.users_per_chunk]
            chunk = simulate_chunk(movies, cfg, chunk_counts, chunk_index)
            # ML order: by userId, then movieId (movie ids ascend with item index).
            order = np.argsort(chunk.user * len(movies.movie_ids) + chunk.item, kind="stable")
            user, item = chunk.user[order], chunk.item[order]
            stars, ts = chunk.half_stars[order], chunk.timestamp[order]
            user_ids, movie_ids = user + first + 1, movies.movie_ids[item]
            rated += np.bincount(item, minlength=len(movies.movie_ids))
            clean = csv_lines([pa.array(user_ids), pa.array(movie_ids),
                               pa.array(RATING_LABELS, pa.string()).take(pa.array(stars)), pa.array(ts)], eol)

            lo, hi = np.searchsorted(plan.after_row, [rows_done, rows_done + len(user)])
            lines, bad_positions = insert_bad_rows(
                corrupt_rng, movies, known, clean, plan.after_row[lo:hi] - rows_done, plan.reason[lo:hi],
                user, user_ids, movie_ids, stars, ts, eol)
            bad_lines += [[int(lines_written + 1 + p), RATINGS_REASONS[r]]
                          for p, r in zip(bad_positions, plan.reason[lo:hi])]
            ratings_file.write(concat_bytes(lines))
            lines_written += len(lines)
            rows_done += len(user)
            tag_parts.append(tags_for_chunk(tag_rng, cfg, movies, user_ids, item, ts, first, len(chunk_counts)))
            advance(len(user))
    return WrittenRatings(ratings_file.close(), lines_written, rated, tag_parts)


@contextlib.contextmanager
def progress_bar(progress: bool, total: int):
    """Yields advance(n): a rich progress bar over ratings.csv's rows when `progress`, else a no-op."""
    if not progress:
        yield lambda n: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("ratings.csv"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                   TimeRemainingColumn())
    task = bar.add_task("ratings", total=total)
    bar.start()
    try:
        yield lambda n: bar.update(task, advance=n)
    finally:
        bar.stop()


def write_movies_and_links(out: Path, cfg: GeneratorConfig, movies, known: np.ndarray, bad_lines: list,
                           checksums: dict[str, str]) -> int:
    """movies.csv (with its planted bad lines, listed in `bad_lines`) and links.csv; returns movies.csv's rows."""
    eol = cfg.line_terminator
    movie_lines = [csv_text([["movieId", "title", "genres"]], eol)]
    movie_lines += [csv_text([[int(m), t, g]], eol) for m, t, g in zip(movies.movie_ids, movies.titles, movies.genres)]
    if cfg.corrupt_fraction > 0:
        movie_lines = insert_bad_movie_lines(cfg, movies, known, movie_lines, bad_lines)
    write_text(out / "movies.csv", b"".join(movie_lines), checksums)
    write_text(out / "links.csv", csv_text(
        [["movieId", "imdbId", "tmdbId"]] +
        [[int(m), f"{int(i):07d}", "" if t < 0 else int(t)] for m, i, t in zip(movies.movie_ids, movies.imdb_ids,
                                                                                movies.tmdb_ids)], eol), checksums)
    return len(movie_lines) - 1


def write_corruptions(out: Path, cfg: GeneratorConfig, bad_lines: dict[str, list], checksums: dict[str, str]) -> None:
    """corruptions.json: the planted bad rows, counted per file and reason, with their line numbers."""
    counts_by_reason = {name: {reason: sum(r == reason for _, r in bad_lines[name]) for reason in reasons}
                        for name, reasons in (("ratings.csv", RATINGS_REASONS), ("movies.csv", MOVIES_REASONS))}
    corruptions = {"seed": cfg.seed, "corrupt_fraction": cfg.corrupt_fraction,
                   "clean_rows": {"ratings.csv": cfg.n_ratings, "movies.csv": cfg.n_items},
                   "counts": counts_by_reason, "lines": bad_lines}
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in corruptions.items()) + "\n}\n"
    write_text(out / "corruptions.json", text.encode(), checksums)


def readme(cfg: GeneratorConfig) -> str:
    return (
        "Summary\n=======\n\n"
        "SYNTHETIC data in the MovieLens 25M layout, written by `recsys generate` (recsys_data/generate.py).\n"
        "It is not MovieLens data. Files, headers, formats and sort orders follow the MovieLens releases.\n\n"
        f"users={cfg.n_users} movies={cfg.n_items} ratings={cfg.n_ratings} seed={cfg.seed} "
        f"corrupt_fraction={cfg.corrupt_fraction}\n\n"
        "corruptions.json lists the rows planted as bad input (per file and reason, with line numbers).\n"
    )
