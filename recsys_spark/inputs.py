"""What the ETL reads: the input formats, their files, their columns and how each column is checked.

Three formats (`etl.format`, detected from `--data` when `auto`):
- `movielens`: a folder with MovieLens' `ratings.csv` + `movies.csv` (`tags.csv`, `links.csv`), the older
  releases' `ratings.dat` + `movies.dat` (`::`-separated, ML-1M/10M, Latin-1 titles), or ML-100K's `u.data` +
  `u.item` (tab- and pipe-separated, genres as 19 flags);
- `events`: one interaction log, a CSV file (with a header), a Parquet file or folder, or a Delta table, whose
  columns `etl.columns.*` names; no rating means weight 1 (or a weight column, or a weight per event type), no
  timestamp means the file's order;
- `sequences`: the text files of the sequential-recommendation literature, `user item item ...` per line (S3-Rec,
  ICLRec: layout `lines`) or one `user item` pair per line in time order (SASRec: layout `pairs`); no timestamps.

Everything here is plain Python that runs before Spark starts, so a missing file or column fails fast with one line
naming it, before anything is written. CSV columns are mapped by name: the header may list them in any order, and
extra columns are ignored (but still count towards a row's expected field count).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from recsys_core import storage
from recsys_core.config import Config, checked, one_of
from recsys_core.errors import ConfigError
from recsys_core.published import has_commit
from recsys_spark.errors import InputError

# How a column is checked and typed (recsys_spark.row_checks):
ID = "id"                    # required positive integer -> long
RATING = "rating"            # 0.5 .. 5.0 in half stars -> double
TIMESTAMP = "timestamp"      # positive integer seconds -> long
EVENT_TIME = "event_time"    # an events log's time: integer (etl.columns.timestamp_unit) or ISO 8601 text -> seconds
WEIGHT = "weight"            # a positive number -> double
TEXT = "text"                # any string (CSV-unquoted) -> string
DIGITS = "digits"            # optional string of digits, leading zeros kept (imdbId) -> string, null when empty
OPTIONAL_ID = "optional_id"  # optional positive integer (tmdbId) -> long, null when empty

FORMATS = ("auto", "movielens", "events", "sequences")
SEQUENCE_LAYOUTS = ("auto", "lines", "pairs")
TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000}
# When time is unknown, interactions.timestamp holds the order key instead: line * ORDER_STRIDE + position in the line.
ORDER_STRIDE = 1 << 24


@dataclass(frozen=True)
class InputColumn:
    name: str
    kind: str


@dataclass(frozen=True)
class InputFile:
    name: str
    required: bool
    columns: tuple[InputColumn, ...]
    separator: str = ","          # a Java regex between fields; "," is CSV (quoted fields allowed)
    header: bool = True           # False: the columns are the first fields, in this order
    latin1_fallback: bool = False  # older MovieLens files are ISO-8859-1: a line that is no UTF-8 is read as Latin-1

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


_RATINGS = (InputColumn("userId", ID), InputColumn("movieId", ID), InputColumn("rating", RATING),
            InputColumn("timestamp", TIMESTAMP))
_MOVIES = (InputColumn("movieId", ID), InputColumn("title", TEXT), InputColumn("genres", TEXT))
_TAGS = (InputColumn("userId", ID), InputColumn("movieId", ID), InputColumn("tag", TEXT),
         InputColumn("timestamp", TIMESTAMP))
RATINGS = InputFile("ratings.csv", True, _RATINGS)
MOVIES = InputFile("movies.csv", True, _MOVIES)
TAGS = InputFile("tags.csv", False, _TAGS)
LINKS = InputFile("links.csv", False, (InputColumn("movieId", ID), InputColumn("imdbId", DIGITS),
                                       InputColumn("tmdbId", OPTIONAL_ID)))
# ML-100K's u.genre, in the order of u.item's 19 genre flags.
ML100K_GENRES = ("(no genres listed)", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western")
GENRE_FLAG = "genre_flag_"
MOVIELENS_LAYOUTS: dict[str, dict[str, InputFile]] = {  # layout -> role -> file; movies first (the others check ids)
    "csv": {"movies": MOVIES, "ratings": RATINGS, "tags": TAGS, "links": LINKS},
    "dat": {"movies": InputFile("movies.dat", True, _MOVIES, "::", header=False, latin1_fallback=True),
            "ratings": InputFile("ratings.dat", True, _RATINGS, "::", header=False),
            "tags": InputFile("tags.dat", False, _TAGS, "::", header=False, latin1_fallback=True)},
    "100k": {"movies": InputFile("u.item", True, (
                InputColumn("movieId", ID), InputColumn("title", TEXT), InputColumn("release_date", TEXT),
                InputColumn("video_release_date", TEXT), InputColumn("imdb_url", TEXT),
                *(InputColumn(f"{GENRE_FLAG}{i}", TEXT) for i in range(len(ML100K_GENRES)))),
                r"\|", header=False, latin1_fallback=True),
             "ratings": InputFile("u.data", True, _RATINGS, r"\t", header=False)},
}
INPUT_FILES = tuple(f for layout in MOVIELENS_LAYOUTS.values() for f in layout.values())

REJECT_REASONS = ("malformed", "non_numeric", "rating_out_of_range", "not_half_star", "missing_id", "non_positive",
                  "bad_timestamp", "non_utf8", "unknown_event", "duplicate", "repeat", "unknown_movie", "k-core")


@dataclass(frozen=True)
class ColumnsConfig(Config):
    """`etl.columns`: the events format's column names (CSV header, Parquet or Delta schema)."""

    section = "etl.columns"

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = None   # null: time unknown, the file's order is the history's order
    timestamp_unit: str = checked("s", one_of(*TIME_UNITS))  # of an integer timestamp column
    rating: str | None = None      # explicit ratings, 0.5..5 in half stars (explicit ALS runs only with them)
    weight: str | None = None      # an implicit strength > 0 (clicks, plays)
    event: str | None = None       # an event type; its weight from etl.event_weights

    def validate(self) -> None:
        given = [key for key in ("rating", "weight", "event") if getattr(self, key)]
        if len(given) > 1:
            raise ConfigError(f"etl.columns: set one of rating, weight, event (got {', '.join(given)})")
        names = [getattr(self, key) for key in ("user", "item", "timestamp", "rating", "weight", "event")
                 if getattr(self, key)]
        if len(set(names)) != len(names):
            raise ConfigError(f"etl.columns: one column named twice ({', '.join(names)})")

    def mapped(self) -> dict[str, str]:
        """Role (userId, movieId, timestamp, rating, weight, event) -> the input's column, for the columns set."""
        roles = {"userId": self.user, "movieId": self.item, "timestamp": self.timestamp, "rating": self.rating,
                 "weight": self.weight, "event": self.event}
        return {role: column for role, column in roles.items() if column}

    def key(self, role: str) -> str:
        return {"userId": "user", "movieId": "item"}.get(role, role)


@dataclass(frozen=True)
class ItemsConfig(Config):
    """`etl.items`: the events format's optional item table: a CSV file with a header, or a Parquet file or folder."""

    section = "etl.items"

    path: str | None = None        # null: the items are the ids the log names (title = the id, no genres)
    id: str = "item_id"            # the column holding etl.columns.item's ids
    title: str | None = None
    genres: str | None = None      # categories, one string per item
    genre_separator: str = "|"

    def mapped(self) -> dict[str, str]:
        roles = {"movieId": self.id, "title": self.title, "genres": self.genres}
        return {role: column for role, column in roles.items() if column}


@dataclass(frozen=True)
class CheckedInput:
    """An input file whose header was found good: its path and the position of each column in a row."""

    spec: InputFile
    path: Path
    header: tuple[str, ...]
    layout: str = "csv"  # csv (a text file, read line by line) | parquet (a Parquet file or folder: an item table)

    @property
    def n_fields(self) -> int:
        return len(self.header)

    def position(self, column: str) -> int:
        return self.header.index(column)


@dataclass(frozen=True)
class Source:
    """The checked input of one ETL run: its format and layout, the files by role, what the data holds."""

    format: str                    # movielens | events | sequences
    layout: str                    # csv | dat | 100k (movielens); csv | parquet | delta (events); lines | pairs
    path: Path
    files: dict[str, CheckedInput] = field(default_factory=dict)  # role -> text file (ratings, movies, tags, links)
    columns: dict[str, str] = field(default_factory=dict)         # events: role -> column
    item_columns: dict[str, str] = field(default_factory=dict)    # events' item table: role -> column
    genre_separator: str = "|"
    time_known: bool = True        # False: timestamps are the file's order (docs/SCHEMAS.md)
    explicit: bool = True          # ratings on a scale (explicit ALS); False: implicit weights
    genres: bool = True            # items carry genres (the genre model)

    def fingerprint_files(self) -> list[Path]:
        """The files whose bytes decide the ETL's output (the pipeline's fingerprint hashes them)."""
        files = [p for f in self.files.values() for p in (parquet_files(f.path) if f.layout == "parquet" else [f.path])]
        if "ratings" in self.files:
            return files
        if self.layout == "delta":  # the data files of the table's current version
            import deltalake

            uris = deltalake.DeltaTable(str(self.path)).file_uris()
            return files + sorted(Path(storage.local_path(uri)) for uri in uris)
        return files + parquet_files(self.path)

    def features(self) -> dict[str, bool]:
        """What the data holds, as recsys_core.catalogue.DATA_FEATURES names it (a model's `requires`)."""
        return {"ratings": self.explicit, "genres": self.genres}

    def describe(self) -> str:
        return f"{self.format} ({self.layout}) {self.path}"


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


def _checked_file(spec: InputFile, path: Path) -> CheckedInput:
    if not spec.header:
        return CheckedInput(spec, path.resolve(), tuple(spec.column_names))
    header = read_header(path, spec.name)
    for column in spec.column_names:
        if column not in header:
            raise InputError(f"{spec.name}: required column {column!r} missing from the header "
                             f"(found: {','.join(header)}) in {path}")
    return CheckedInput(spec, path.resolve(), header)


def movielens_layout(data: Path) -> str | None:
    for layout, files in MOVIELENS_LAYOUTS.items():
        if (data / files["ratings"].name).is_file():
            return layout
    return None


def check_inputs(data_dir: str | Path) -> dict[str, CheckedInput]:
    """A MovieLens folder's present files with good headers, by role; raises InputError naming the file (and
    column)."""
    data = Path(data_dir)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a directory")
    layout = movielens_layout(data) or "csv"
    found: dict[str, CheckedInput] = {}
    for role, spec in MOVIELENS_LAYOUTS[layout].items():
        path = data / spec.name
        if not path.is_file():
            if spec.required:
                raise InputError(f"{spec.name}: required file missing from {data}")
            continue
        found[role] = _checked_file(spec, path)
    return found


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in
                                                                p.relative_to(path).parts))


def detect_format(path: Path) -> str:
    """The format of `--data` from what is there (etl.format: auto)."""
    if path.is_dir():
        if movielens_layout(path):
            return "movielens"
        if has_commit(path) or parquet_files(path):
            return "events"
        if (path / MOVIES.name).is_file():
            return "movielens"  # movies.csv without ratings.csv: check_inputs names the missing file
        raise InputError(f"--data {path}: no MovieLens files (ratings.csv, ratings.dat, u.data), no Delta table "
                         f"and no Parquet files; set etl.format, or point --data at a file")
    if path.suffix.lower() in (".csv", ".parquet", ".tsv"):
        return "events"
    return "sequences"


def sequence_layout(path: Path, sample_lines: int = 1000) -> str:
    """lines when some line has more than one item after the user, pairs when every sampled line is `user item`."""
    with open(path, "rb") as handle:
        for _, line in zip(range(sample_lines), handle):
            if len(line.split()) > 2:
                return "lines"
    return "pairs"


def _events_columns(path: Path, layout: str) -> list[str]:
    if layout == "csv":
        return list(read_header(path, path.name))
    if layout == "delta":
        import deltalake

        return [f.name for f in deltalake.DeltaTable(str(path)).schema().fields]
    import pyarrow.parquet as pq

    files = parquet_files(path)
    if not files:
        raise InputError(f"--data {path}: no Parquet files in the folder")
    return list(pq.read_schema(files[0]).names)


def check_items(items: ItemsConfig) -> CheckedInput:
    path = Path(storage.local_path(items.path))
    layout = "csv" if path.suffix.lower() in (".csv", ".tsv") else "parquet"
    if not (path.is_file() or (layout == "parquet" and path.is_dir())):
        raise InputError(f"etl.items.path {items.path}: no such file (the item table is a CSV file with a header, "
                         "or a Parquet file or folder)")
    if layout == "csv":
        header = read_header(path, path.name)
    else:
        import pyarrow.parquet as pq

        files = parquet_files(path)
        if not files:
            raise InputError(f"etl.items.path {items.path}: no Parquet files in the folder")
        try:
            header = tuple(pq.read_schema(files[0]).names)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise InputError(f"etl.items.path {items.path}: cannot read its columns as a Parquet table ({exc})") \
                from None
    for role, column in items.mapped().items():
        if column not in header:
            key = {"movieId": "id"}.get(role, role)
            raise InputError(f"etl.items.{key}: column {column!r} is not in {path.name} (its columns: "
                             f"{', '.join(header)})")
    kinds = {"movieId": ID, "title": TEXT, "genres": TEXT}
    spec = InputFile(path.name, True, tuple(InputColumn(c, kinds[role]) for role, c in items.mapped().items()))
    return CheckedInput(spec, path.resolve(), header, layout)


def check_events(path: Path, columns: ColumnsConfig, event_weights: dict, items: ItemsConfig | None = None) -> Source:
    layout = "delta" if path.is_dir() and has_commit(path) else "csv" if path.suffix.lower() in (".csv", ".tsv") \
        else "parquet"
    if layout == "csv" and not path.is_file():
        raise InputError(f"--data {path}: the events format reads one CSV file (or a Parquet folder, a Delta table)")
    try:
        found = _events_columns(path, layout)
    except (OSError, ValueError, RuntimeError) as exc:  # pyarrow's and delta-rs' errors derive from these
        raise InputError(f"--data {path}: cannot read its columns as a {layout} table ({exc})") from None
    mapped = columns.mapped()
    for role, column in mapped.items():
        if column not in found:
            raise InputError(f"etl.columns.{columns.key(role)}: column {column!r} is not in {path.name} "
                             f"(its columns: {', '.join(found)})")
    if columns.event and not event_weights:
        raise ConfigError("etl.event_weights must give a weight per event type when etl.columns.event is set "
                          "(e.g. etl.event_weights.view=1 etl.event_weights.purchase=5)")
    files = {}
    if layout == "csv":
        kinds = {"userId": ID, "movieId": ID, "timestamp": EVENT_TIME, "rating": RATING, "weight": WEIGHT,
                 "event": TEXT}
        spec = InputFile(path.name, True, tuple(InputColumn(column, kinds[role]) for role, column in mapped.items()))
        files["ratings"] = CheckedInput(spec, path.resolve(), tuple(read_header(path, path.name)))
    items = items or ItemsConfig()
    if items.path:
        files["movies"] = check_items(items)
    return Source("events", layout, path.resolve(), files, dict(mapped), items.mapped() if items.path else {},
                  items.genre_separator, time_known="timestamp" in mapped, explicit="rating" in mapped,
                  genres=bool(items.path and items.genres))


def check_source(data: str | Path, fmt: str = "auto", layout: str = "auto",
                 columns: ColumnsConfig | None = None, event_weights: dict | None = None,
                 items: ItemsConfig | None = None) -> Source:
    """The ETL's input, checked without Spark: raises InputError (or ConfigError) naming the file and column."""
    text = str(data)
    if not storage.is_local(text):
        raise InputError(f"--data {text}: the ETL reads local or file:// inputs (a mount of the lake)")
    path = Path(storage.local_path(text))
    if not path.exists():
        raise InputError(f"--data {path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "movielens":
        files = check_inputs(path)
        layout_ = movielens_layout(path) or "csv"
        return Source("movielens", layout_, path.resolve(), files)
    if fmt == "events":
        return check_events(path, columns or ColumnsConfig(), event_weights or {}, items)
    if fmt == "sequences":
        if not path.is_file():
            raise InputError(f"--data {path}: the sequences format reads one text file")
        layout_ = sequence_layout(path) if layout == "auto" else layout
        spec = InputFile(path.name, True, (InputColumn("userId", ID), InputColumn("movieId", ID)), r"\s+",
                         header=False)
        return Source("sequences", layout_, path.resolve(), {"ratings": CheckedInput(spec, path.resolve(),
                                                                                    ("userId", "movieId"))},
                      time_known=False, explicit=False, genres=False)
    raise ConfigError(f"etl.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
