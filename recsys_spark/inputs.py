"""The MovieLens input files: which are required, their columns and how each column is checked.

Headers are read in plain Python before Spark starts, so a missing file or column fails fast, with one line naming
it, before anything is written. Columns are mapped by name: the header may list them in any order, and extra
columns are ignored (but still count towards a row's expected field count).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from recsys_spark.errors import InputError

# How a column is checked and typed (recsys_spark.row_checks):
ID = "id"                    # required positive integer -> long
RATING = "rating"            # 0.5 .. 5.0 in half stars -> double
TIMESTAMP = "timestamp"      # positive integer seconds -> long
TEXT = "text"                # any string (CSV-unquoted) -> string
DIGITS = "digits"            # optional string of digits, leading zeros kept (imdbId) -> string, null when empty
OPTIONAL_ID = "optional_id"  # optional positive integer (tmdbId) -> long, null when empty


@dataclass(frozen=True)
class InputColumn:
    name: str
    kind: str


@dataclass(frozen=True)
class InputFile:
    name: str
    required: bool
    columns: tuple[InputColumn, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


RATINGS = InputFile("ratings.csv", True, (InputColumn("userId", ID), InputColumn("movieId", ID),
                                          InputColumn("rating", RATING), InputColumn("timestamp", TIMESTAMP)))
MOVIES = InputFile("movies.csv", True, (InputColumn("movieId", ID), InputColumn("title", TEXT),
                                        InputColumn("genres", TEXT)))
TAGS = InputFile("tags.csv", False, (InputColumn("userId", ID), InputColumn("movieId", ID), InputColumn("tag", TEXT),
                                     InputColumn("timestamp", TIMESTAMP)))
LINKS = InputFile("links.csv", False, (InputColumn("movieId", ID), InputColumn("imdbId", DIGITS),
                                       InputColumn("tmdbId", OPTIONAL_ID)))
INPUT_FILES = (MOVIES, RATINGS, TAGS, LINKS)  # movies first: the others are checked against its movie ids

REJECT_REASONS = ("malformed", "non_numeric", "rating_out_of_range", "not_half_star", "missing_id", "non_positive",
                  "bad_timestamp", "non_utf8", "duplicate", "unknown_movie", "k-core")


@dataclass(frozen=True)
class CheckedInput:
    """An input file whose header was found good: its path and the position of each column in a row."""

    spec: InputFile
    path: Path
    header: tuple[str, ...]

    @property
    def n_fields(self) -> int:
        return len(self.header)

    def position(self, column: str) -> int:
        return self.header.index(column)


def read_header(path: Path, name: str) -> tuple[str, ...]:
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise InputError(f"{name}: empty file or empty first line, expected a header ({path})")
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(f"{name}: the header line is not valid UTF-8 ({path})") from None
    header = tuple(field.strip() for field in next(csv.reader([text])))
    seen = set()
    for column in header:
        if column in seen:
            raise InputError(f"{name}: column {column!r} appears twice in the header ({path})")
        seen.add(column)
    return header


def check_inputs(data_dir: str | Path) -> dict[str, CheckedInput]:
    """Every present input file with a good header, by file name; raises InputError naming the file (and column)."""
    data = Path(data_dir)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a directory")
    found: dict[str, CheckedInput] = {}
    for spec in INPUT_FILES:
        path = data / spec.name
        if not path.is_file():
            if spec.required:
                raise InputError(f"{spec.name}: required file missing from {data}")
            continue
        header = read_header(path, spec.name)
        for column in spec.column_names:
            if column not in header:
                raise InputError(f"{spec.name}: required column {column!r} missing from the header "
                                 f"(found: {','.join(header)}) in {path}")
        found[spec.name] = CheckedInput(spec, path.resolve(), header)
    return found
