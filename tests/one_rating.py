"""The smallest MovieLens folder the ETL takes: one rating of one movie (for the checks made before anything runs)."""
from __future__ import annotations

from pathlib import Path


def make_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    (data / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
    return data
