"""The MovieLens-shaped generator: layout, counts, realism, planted structure, corruption, determinism, CLI."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recsys_data.bad_rows import MOVIES_REASONS, RATINGS_REASONS
from recsys_data.config import GenerateError, GeneratorConfig
from recsys_data.generate import generate
from recsys_data.movielens import GENRES, ML_FIRST_TIMESTAMP, ML_LAST_TIMESTAMP, NO_GENRES
from recsys_data.movies import build_movies
from recsys_data.ratings import simulate_chunk
from recsys_data.users import allocate_user_counts

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(n_users=300, n_items=2000, n_ratings=20_000, seed=7)
HALF_STARS = {f"{k / 2:.1f}" for k in range(1, 11)}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, **SMALL)
    return out


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corrupt")
    generate(out, **SMALL, corrupt_fraction=0.02)
    return out


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def ratings(clean) -> np.ndarray:
    """(userId, movieId, half stars, timestamp) as int64, file order."""
    rows = read_rows(clean / "ratings.csv")[1:]
    return np.array([(int(u), int(m), round(float(r) * 2), int(t)) for u, m, r, t in rows], dtype=np.int64)


@pytest.fixture(scope="module")
def movie_ids(clean) -> set[int]:
    return {int(r[0]) for r in read_rows(clean / "movies.csv")[1:]}


def test_files_headers_and_line_ends_match_movielens(clean):
    expected = {"ratings.csv": b"userId,movieId,rating,timestamp\r\n", "movies.csv": b"movieId,title,genres\r\n",
                "tags.csv": b"userId,movieId,tag,timestamp\r\n", "links.csv": b"movieId,imdbId,tmdbId\r\n"}
    for name, header in expected.items():
        data = (clean / name).read_bytes()
        assert data.startswith(header), name
        assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n"), name
    sums = dict(line.split("  ")[::-1] for line in (clean / "SHA256SUMS").read_text().splitlines())
    assert {"ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt", "corruptions.json"} <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((clean / name).read_bytes()).hexdigest() == digest, name


def test_ratings_counts_ranges_order_and_uniqueness(ratings, movie_ids):
    user, movie, stars, ts = ratings.T
    assert len(ratings) == SMALL["n_ratings"]
    assert set(np.unique(user)) == set(range(1, SMALL["n_users"] + 1))
    assert np.bincount(user)[1:].min() >= 20
    assert stars.min() >= 1 and stars.max() <= 10
    assert ts.min() >= ML_FIRST_TIMESTAMP and ts.max() <= ML_LAST_TIMESTAMP
    assert set(np.unique(movie)) <= movie_ids
    key = user * 10_000_000 + movie
    assert (np.diff(key) > 0).all(), "sorted by (userId, movieId) with no duplicate pair"


def test_rating_text_is_movielens_formatted(clean):
    lines = (clean / "ratings.csv").read_bytes().decode().split("\r\n")[1:-1]
    pattern = re.compile(r"[1-9]\d*,[1-9]\d*,(0\.5|[1-4]\.[05]|5\.0),[1-9]\d{8,9}")
    assert all(pattern.fullmatch(line) for line in lines)


def test_movies_and_links_look_like_movielens(clean):
    raw = (clean / "movies.csv").read_bytes().decode().split("\r\n")[1:-1]
    rows = read_rows(clean / "movies.csv")[1:]
    assert len(rows) == SMALL["n_items"] and all(len(r) == 3 for r in rows)
    ids = [int(r[0]) for r in rows]
    assert ids == sorted(set(ids)) and max(ids) > 2 * len(ids), "sparse ids with gaps, like ML"
    assert any(line.count('"') >= 2 and ", The (" in line for line in raw), "titles with commas are quoted"
    with_year = [r for r in rows if re.search(r" \((1[89]\d\d|20[01]\d)\)$", r[1])]
    assert len(with_year) >= 0.98 * len(rows)
    for _, _, genres in rows:
        assert genres == NO_GENRES or set(genres.split("|")) <= set(GENRES)
    sequels = [r for r in rows if re.search(r" [2-6](: [^(]+)? \(\d{4}\)$", r[1])]
    assert sequels, "franchise sequels are named like their first film"

    links = read_rows(clean / "links.csv")[1:]
    assert [int(r[0]) for r in links] == ids
    assert all(re.fullmatch(r"\d{7}", imdb) and (tmdb == "" or tmdb.isdigit()) for _, imdb, tmdb in links)


def test_tags_sorted_and_every_movie_rated_or_tagged(clean, ratings, movie_ids):
    tags = read_rows(clean / "tags.csv")[1:]
    assert len(tags) > 0
    keys = [(int(u), int(m)) for u, m, _, _ in tags]
    assert keys == sorted(keys)
    tagged = {m for _, m in keys}
    assert tagged <= movie_ids
    assert movie_ids == tagged | set(ratings[:, 1].tolist())


def test_same_seed_same_bytes_other_seed_other_bytes(clean, tmp_path):
    generate(tmp_path / "again", **SMALL)
    for name in ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "SHA256SUMS"):
        assert (tmp_path / "again" / name).read_bytes() == (clean / name).read_bytes(), name
    generate(tmp_path / "other", **{**SMALL, "seed": 8})
    assert (tmp_path / "other" / "ratings.csv").read_bytes() != (clean / "ratings.csv").read_bytes()


def test_long_tailed_items_and_users(ratings):
    item_counts = np.sort(np.bincount(ratings[:, 1]))[::-1]
    top_tenth = item_counts[: SMALL["n_items"] // 10].sum() / len(ratings)
    assert top_tenth > 0.4
    user_counts = np.bincount(ratings[:, 0])[1:]
    assert user_counts.max() > 4 * np.median(user_counts), "log-normal-ish user activity"


def test_rating_distribution_is_movielens_like(ratings):
    share = Counter(ratings[:, 2].tolist())
    order = [k for k, _ in share.most_common()]
    assert order[0] == 8, "4.0 is the most common rating"
    assert set(order[:3]) == {6, 8, 10}, "then 3.0 and 5.0"
    whole = sum(v for k, v in share.items() if k % 2 == 0)
    assert whole > 0.6 * len(ratings)
    user_means = [ratings[ratings[:, 0] == u, 2].mean() / 2 for u in range(1, 51)]
    assert np.std(user_means) > 0.2, "per-user bias"


def test_histories_in_generation_order_have_increasing_times_and_ties():
    cfg = GeneratorConfig(**SMALL)
    movies = build_movies(cfg)
    counts = allocate_user_counts(cfg)[:50]
    chunk = simulate_chunk(movies, cfg, counts, 0)
    assert (np.bincount(chunk.user, minlength=50) == counts).all()
    assert len(np.unique(chunk.user * len(movies.movie_ids) + chunk.item)) == len(chunk.user)
    same_user = chunk.user[1:] == chunk.user[:-1]
    gaps = np.diff(chunk.timestamp)[same_user]
    assert (gaps >= 0).all()
    assert 0.05 < (gaps == 0).mean() < 0.4, "identical-second ties, as in ML"
    assert (gaps > 86_400).any() and np.median(gaps) < 120, "sessions: seconds apart, days between"


def successor_hits(ratings: np.ndarray):
    """Most frequent successor learnt on each user's first 80%, scored on the rest; also by the gap before it."""
    order = np.lexsort((ratings[:, 1], ratings[:, 3], ratings[:, 0]))
    user, movie, ts = ratings[order, 0], ratings[order, 1], ratings[order, 3]
    same = user[1:] == user[:-1]
    start = np.searchsorted(user, user)
    size = np.bincount(user)[user]
    position = np.arange(len(user)) - start
    train = same & (position[1:] < 0.8 * size[1:])
    test = same & ~train
    follows = Counter(zip(movie[:-1][train].tolist(), movie[1:][train].tolist()))
    best: dict[int, tuple[int, int]] = {}
    for (a, b), n in follows.items():
        if n > best.get(a, (0, -1))[0]:
            best[a] = (n, b)
    predicted = np.array([best.get(a, (0, -1))[1] for a in movie[:-1][test]])
    hit = predicted == movie[1:][test]
    most_popular = Counter(movie[1:][train].tolist()).most_common(1)[0][0]
    gap = (ts[1:] - ts[:-1])[test]
    return hit, movie[1:][test] == most_popular, gap


def test_planted_sequences_beat_popularity_and_time_gaps_carry_signal(ratings):
    hit, popular_hit, gap = successor_hits(ratings)
    assert hit.mean() > 0.08
    assert hit.mean() > 10 * max(popular_hit.mean(), 1e-3)
    within_session, after_long_gap = hit[gap < 3600].mean(), hit[gap >= 86_400].mean()
    assert within_session > 1.5 * after_long_gap


def test_genre_runs(clean, ratings):
    genres = {int(r[0]): set(r[2].split("|")) for r in read_rows(clean / "movies.csv")[1:]}
    order = np.lexsort((ratings[:, 1], ratings[:, 3], ratings[:, 0]))
    user, movie = ratings[order, 0], ratings[order, 1]
    same = user[1:] == user[:-1]
    pairs = list(zip(movie[:-1][same].tolist(), movie[1:][same].tolist()))
    shared = np.mean([bool(genres[a] & genres[b]) for a, b in pairs])
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(movie)
    baseline = np.mean([bool(genres[a] & genres[b]) for a, b in zip(shuffled[:-1].tolist(), shuffled[1:].tolist())])
    assert shared > baseline + 0.1


def classify(line: bytes, movies: set[int], seen: set[tuple[int, int]]) -> str | None:
    """An independent check of a ratings line: the reject reason, or None for a good row."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "non_utf8"
    fields = text.split(",")
    if len(fields) != 4:
        return "malformed"
    if fields[0] == "" or fields[1] == "":
        return "missing_id"
    try:
        user, movie, rating, ts = int(fields[0]), int(fields[1]), float(fields[2]), int(fields[3])
    except ValueError:
        return "non_numeric"
    if user <= 0 or movie <= 0:
        return "non_positive"
    if ts <= 0:
        return "bad_timestamp"
    if not 0.5 <= rating <= 5.0:
        return "rating_out_of_range"
    if rating * 2 != int(rating * 2):
        return "not_half_star"
    if movie not in movies:
        return "unknown_movie"
    if (user, movie) in seen:
        return "duplicate"
    seen.add((user, movie))
    return None


def test_corrupt_mode_plants_every_class_and_lists_it(clean, corrupt, movie_ids):
    report = json.loads((corrupt / "corruptions.json").read_text())
    counts = report["counts"]
    assert all(counts["ratings.csv"][reason] >= 1 for reason in RATINGS_REASONS)
    assert all(counts["movies.csv"][reason] >= 1 for reason in MOVIES_REASONS)
    n_bad = sum(counts["ratings.csv"].values())
    assert abs(n_bad - 0.02 * SMALL["n_ratings"]) <= len(RATINGS_REASONS)

    lines = (corrupt / "ratings.csv").read_bytes().split(b"\r\n")[:-1]
    assert len(lines) == 1 + SMALL["n_ratings"] + n_bad
    listed = {line: reason for line, reason in report["lines"]["ratings.csv"]}
    seen: set[tuple[int, int]] = set()
    found = {n: classify(raw, movie_ids, seen) for n, raw in enumerate(lines[1:], start=2)}
    assert {n: r for n, r in found.items() if r} == listed
    assert Counter(listed.values()) == {k: v for k, v in counts["ratings.csv"].items() if v}

    good = [raw for n, raw in enumerate(lines[1:], start=2) if n not in listed]
    assert good == (clean / "ratings.csv").read_bytes().split(b"\r\n")[1:-1], "clean rows = the F=0 output"

    movie_lines = (corrupt / "movies.csv").read_bytes().decode().split("\r\n")[:-1]
    bad_movies = {line for line, _ in report["lines"]["movies.csv"]}
    assert len(movie_lines) == 1 + SMALL["n_items"] + len(bad_movies)
    for n, text in enumerate(movie_lines[1:], start=2):
        row = next(csv.reader(io.StringIO(text)))
        valid = len(row) == 3 and row[0].isdigit() and int(row[0]) > 0
        assert valid == (n not in bad_movies), (n, text)


def test_few_movies_and_low_ratio_still_exact():
    cfg = GeneratorConfig(n_users=4, n_items=6, n_ratings=24, seed=1)  # everyone rates everything
    counts = allocate_user_counts(cfg)
    assert counts.tolist() == [6, 6, 6, 6]
    chunk = simulate_chunk(build_movies(cfg), cfg, counts, 0)
    assert sorted(zip(chunk.user.tolist(), chunk.item.tolist())) == [(u, i) for u in range(4) for i in range(6)]
    counts = allocate_user_counts(GeneratorConfig(n_users=100, n_items=1000, n_ratings=1234))
    assert counts.sum() == 1234 and counts.min() == 12


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_users=10, n_ratings=5), "at least --users"),
    (dict(n_users=2, n_items=3, n_ratings=7), "exceeds"),
    (dict(n_users=0), "--users"),
    (dict(corrupt_fraction=0.9), "--corrupt-fraction"),
])
def test_bad_arguments_raise_generate_error(tmp_path, kwargs, message):
    with pytest.raises(GenerateError, match=message):
        generate(tmp_path, **{**SMALL, **kwargs})


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "jobs" / "generate.py"), *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_writes_files(tmp_path):
    done = run_cli("--out", str(tmp_path), "--users", "40", "--items", "80", "--ratings", "1000", "--seed", "3",
                   "--corrupt-fraction", "0.05")
    assert done.returncode == 0, done.stderr
    assert "1,000 ratings" in done.stdout
    assert sum(json.loads((tmp_path / "corruptions.json").read_text())["counts"]["ratings.csv"].values()) == 50


@pytest.mark.parametrize("args", [("--users", "10", "--ratings", "5"), ("--users", "abc"), ("--items", "-3")])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, args):
    done = run_cli("--out", str(tmp_path / "x"), *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_sampler_draws_for_a_genre_without_movies_at_the_end_of_the_pool():
    import numpy as np

    from recsys_data.movies import Sampler

    genre_mask = np.array([[1, 0], [1, 0], [1, 0]], dtype=bool)  # genre 1 (the last) has no movie
    sampler = Sampler.build(np.array([3.0, 2.0, 1.0]), genre_mask)
    drawn = sampler.in_genre(np.random.default_rng(0), np.array([1, 0, 1, 1]))
    assert drawn.shape == (4,) and set(drawn.tolist()) <= {0, 1, 2}


# The bytes of two tiny sets, pinned when the generator was one module: splitting or renaming its parts must not
# change a byte (a deliberate change to the generated data updates these and says so in its commit).
PINNED = {
    "clean": (dict(n_users=40, n_items=300, n_ratings=2000, seed=3), {
        "README.txt": "e96737013e998d44bdd3815873b86febc0925c2c4098c7b7c949826ad84b76a6",
        "corruptions.json": "f21533fd30e9392a46b32a386e861c18d4c39fcde4ebe8a1cdb0a518cef73a3f",
        "links.csv": "4fb612d5aea9cf90112c3a0e6b92c00eb97e62a5129b4718504cddc2e7ecc842",
        "movies.csv": "9bfcec57d6d28dfb8654803ff9f587b92a40b5b5b114f57547903b649eebff98",
        "ratings.csv": "3fbba83f0d4d7508f2bc79916db02aa5d3001c014a7198bdf760e37bff8a8f92",
        "tags.csv": "99a952bb5957592191dff002b64efbc89b1b0a8d7b57b393a5c583229f89e55c"}),
    "corrupt, several chunks": (dict(n_users=40, n_items=300, n_ratings=2000, seed=3, corrupt_fraction=0.05,
                                     users_per_chunk=16), {
        "README.txt": "87b521510da1e7fa4f17c39e2f6ec91d98e59ffb04f638cc9d64dbe8efc1153d",
        "corruptions.json": "aea2c9162c11b019164decb5b7deabb54067f59549978d2781bf0c3c479ba91a",
        "links.csv": "4fb612d5aea9cf90112c3a0e6b92c00eb97e62a5129b4718504cddc2e7ecc842",
        "movies.csv": "f8a93ff125920eedf298b88c1873ea18b7f804dab4dd80971636c8af85c857c5",
        "ratings.csv": "ed44aa91be5904293b9bff754f218e4b38acd5563b0ed5ff6807d67a35fdfd35",
        "tags.csv": "09bac87b118f873d334d4ae5f36305ceae7ce6edb47c5240db760662a634c2d4"}),
}


@pytest.mark.parametrize("name", PINNED)
def test_a_tiny_set_keeps_its_pinned_bytes(tmp_path, name):
    values, expected = PINNED[name]
    generate(tmp_path, config=GeneratorConfig(**values))
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()
            if p.name != "SHA256SUMS"} == expected
