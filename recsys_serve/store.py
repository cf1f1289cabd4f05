"""The served state: an immutable Snapshot of the warehouse, replaced whole when a table's Delta version moves.

`Store.refresh()` compares the versions of the tables it serves with those of its snapshot; what changed is
reloaded (a new run date, or a partition whose files a re-run replaced, or a new ETL), what did not is reused, and
the new snapshot replaces the old one in one assignment, so a request always sees one consistent state and none
fails while a reload runs. A background thread calls it every `reload_interval` seconds.

A reload that fails (a table being rewritten, a file gone) keeps the previous snapshot served and is remembered
(`last_error`, shown by /health); when nothing could be loaded yet, every request is a 503 naming the error until a
reload succeeds. Rows the server cannot answer honestly are dropped at load, with a warning in the log: list rows
whose score is NaN or infinite (the evaluator counts them as misses too) and item vectors that are NULL, of
another length than the model's, or not finite (the movie has no vector: /similar answers 404).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import duckdb
import numpy as np

from recsys_core import catalogue, storage
from recsys_core.errors import ConfigError
from recsys_serve.errors import BadRequest, NotFound, Unavailable
from recsys_serve.index import Histories, ItemVectors, Movies, TopLists
from recsys_serve.reader import Warehouse

log = logging.getLogger("recsys_serve")

BASE_TABLES = ("items", "users", "interactions")
SERVED_TABLES = (*BASE_TABLES, "recommendations")  # what must exist; the others are served when they do
WATCHED_TABLES = (*SERVED_TABLES, "metrics", "item_embeddings")


def known_model(name: str) -> catalogue.Model | None:
    try:
        return catalogue.find(name)
    except ConfigError:
        return None


@dataclass(frozen=True)
class Snapshot:
    versions: dict[str, int | None]  # of WATCHED_TABLES and each <model>_item_factors table
    movies: Movies
    histories: Histories
    partitions: dict[tuple[str, dt.date], tuple[str, ...]]  # recommendations: (model, run_date) -> files
    latest: dict[str, TopLists]  # each catalogue model's latest run date, loaded
    metrics: dict[str, list[dict]]  # model -> rows of its latest run date in `metrics`
    factor_tables: dict[str, str]  # ALS model -> its item factors table
    embeddings: dict[str, dt.date]  # torch model -> latest run date in item_embeddings
    committed_at: float | None = None  # the newest commit of the served tables (seconds since 1970)
    loaded_at: float = field(default_factory=time.time)

    @property
    def run_date(self) -> dt.date | None:
        """The newest run date of the lists being served."""
        return max((lists.run_date for lists in self.latest.values()), default=None)

    def run_dates(self, model: str) -> list[dt.date]:
        return sorted((d for m, d in self.partitions if m == model), reverse=True)

    def has_vectors(self, model: str) -> bool:
        return model in self.factor_tables or model in self.embeddings


class Store:
    def __init__(self, warehouse: Warehouse, history_len: int = 10, cached_partitions: int = 2):
        self.warehouse = warehouse
        self.history_len = history_len
        self.cached_partitions = cached_partitions  # older run dates kept loaded beside the latest ones
        self._snapshot: Snapshot | None = None
        self._refresh_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._older: OrderedDict[tuple, TopLists] = OrderedDict()
        self._vectors: dict[tuple, ItemVectors] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        self.checked_at: float | None = None  # the last refresh, successful or not
        self.failing = False  # whether that refresh failed
        self.last_error: str | None = None  # the last refresh error, one line (kept after a later success)
        self.last_error_at: float | None = None
        self._logged: str | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The served snapshot; Unavailable (503) when none could be loaded yet."""
        if self._snapshot is None:
            raise Unavailable(f"nothing to serve yet: {self.last_error or 'the warehouse is still being loaded'}")
        return self._snapshot

    def load(self) -> Snapshot:
        self.refresh()
        return self.snapshot

    def versions(self) -> dict[str, int | None]:
        tables = [*WATCHED_TABLES, *self.warehouse.factor_tables().values()]
        return {t: self.warehouse.version(t) for t in tables}

    def refresh(self) -> bool:
        """Reload what changed since the last snapshot; True when a new snapshot is served."""
        with self._refresh_lock:
            self.checked_at = time.time()
            old = self._snapshot
            try:
                self.warehouse.require(*SERVED_TABLES)
                versions = self.versions()
                changed = old is None or versions != old.versions
                if changed:
                    self._snapshot = self._build(versions, old)
            except Exception as exc:
                self.failing = True
                self.last_error, self.last_error_at = one_line(exc), time.time()
                raise
            self.failing = False
            self.reloads += changed and old is not None
            return changed

    def _build(self, versions: dict[str, int | None], old: Snapshot | None) -> Snapshot:
        base_changed = old is None or any(versions[t] != old.versions.get(t) for t in BASE_TABLES)
        if base_changed:
            movies = Movies.load(self.warehouse)
            histories = Histories.load(self.warehouse, movies, self.history_len)
        else:
            movies, histories = old.movies, old.histories
        partitions = {key: files for key, files in self.warehouse.partitions("recommendations").items()
                      if known_model(key[0])}
        latest = {}
        for model in sorted({m for m, _ in partitions}):
            run_date = max(d for m, d in partitions if m == model)
            files = partitions[(model, run_date)]
            current = None if old is None or base_changed else old.latest.get(model)
            if current is not None and (current.run_date, current.files) == (run_date, files):
                latest[model] = current
            else:
                latest[model] = TopLists.load(self.warehouse, histories, movies, model, run_date, files)
                log.info("loaded %s %s: %d users", model, run_date, latest[model].users)
                _warn_dropped(latest[model])
        embeddings: dict[str, dt.date] = {}
        for model, run_date in self.warehouse.partitions("item_embeddings"):
            if known_model(model):
                embeddings[model] = max(run_date, embeddings.get(model, run_date))
        factor_tables = {m: t for m, t in self.warehouse.factor_tables().items() if known_model(m)}
        with self._cache_lock:
            if base_changed:
                self._older.clear()
                self._vectors.clear()
        committed = [self.warehouse.committed_at(t) for t in SERVED_TABLES]
        return Snapshot(versions, movies, histories, partitions, latest, self._load_metrics(), factor_tables,
                        embeddings, max((c for c in committed if c is not None), default=None))

    def _load_metrics(self) -> dict[str, list[dict]]:
        if not self.warehouse.exists("metrics"):
            return {}
        cols = self.warehouse.query(
            "SELECT model, run_id, run_date, split, metric, k, value, ci_low, ci_high FROM {m} "
            "WHERE (model, run_date) IN (SELECT (model, max(run_date)) FROM {m} GROUP BY model) "
            "ORDER BY model, split, metric, k NULLS FIRST", m="metrics")
        rows: dict[str, list[dict]] = {}
        for i, model in enumerate(cols["model"]):
            if not known_model(model) or not np.isfinite(cols["value"][i]):  # a NaN metric is not shown
                continue
            rows.setdefault(str(model), []).append({
                "run_id": str(cols["run_id"][i]), "run_date": _date(cols["run_date"][i]),
                "split": str(cols["split"][i]), "metric": str(cols["metric"][i]), "k": _optional(cols["k"], i, int),
                "value": float(cols["value"][i]), "ci_low": _optional(cols["ci_low"], i, float),
                "ci_high": _optional(cols["ci_high"], i, float)})
        return rows

    # -- what a request asks for ---------------------------------------------------------------------------------

    def model(self, name: str) -> catalogue.Model:
        """The catalogue's model of that name (a BadRequest when the catalogue has none)."""
        model = known_model(name)
        if model is None:
            raise BadRequest(f"unknown model {name!r}; one of: {', '.join(catalogue.names())} "
                             "(or als_<name> for an ALS variant)")
        return model

    def top_lists(self, snapshot: Snapshot, model: str, run_date: dt.date | None) -> TopLists:
        """The model's lists of `run_date` (default: its latest); older dates are loaded on demand and a few kept."""
        self.model(model)
        latest = snapshot.latest.get(model)
        if latest is None:
            raise NotFound(f"model {model!r} has no recommendations in this warehouse; served: "
                           f"{', '.join(snapshot.latest) or 'none'}")
        if run_date is None or run_date == latest.run_date:
            return latest
        files = snapshot.partitions.get((model, run_date))
        if files is None:
            dates = ", ".join(d.isoformat() for d in snapshot.run_dates(model))
            raise NotFound(f"model {model!r} has no run on {run_date.isoformat()}; run dates: {dates}")
        key = (model, run_date, files, id(snapshot.histories))
        with self._cache_lock:
            if key in self._older:
                self._older.move_to_end(key)
                return self._older[key]
            try:
                lists = TopLists.load(self.warehouse, snapshot.histories, snapshot.movies, model, run_date, files)
            except (duckdb.Error, OSError) as exc:
                try:
                    gone = any(not storage.exists(f) for f in files)
                except OSError:  # the store itself cannot be reached: not a sign the run is gone
                    gone = False
                if gone:
                    raise NotFound(f"model {model!r}'s run on {run_date.isoformat()} is gone: its files were "
                                   f"removed from the warehouse") from None
                raise Unavailable(f"could not read model {model!r}'s run on {run_date.isoformat()}: "
                                  f"{one_line(exc)}") from None
            if lists.users == 0:
                raise NotFound(f"model {model!r}'s run on {run_date.isoformat()} is gone: the table no longer has "
                               f"its rows")
            _warn_dropped(lists)
            self._older[key] = lists
            while len(self._older) > self.cached_partitions:
                self._older.popitem(last=False)
            return lists

    def needs_loading(self, snapshot: Snapshot, model: str, run_date: dt.date | None) -> bool:
        latest = snapshot.latest.get(model)
        return run_date is not None and latest is not None and run_date != latest.run_date

    def vectors(self, snapshot: Snapshot, model: str) -> ItemVectors:
        """The model's item vectors: ALS item factors, or the torch model's latest item_embeddings."""
        self.model(model)
        table = snapshot.factor_tables.get(model)
        run_date = snapshot.embeddings.get(model)
        if table is None and run_date is None:
            raise NotFound(f"model {model!r} has no item vectors in this warehouse (similar items come from ALS "
                           "item factors and the torch models' item_embeddings)")
        source = table or f"item_embeddings/{model}"
        key = (source, snapshot.versions.get(table or "item_embeddings"), id(snapshot.movies))
        with self._cache_lock:
            if key not in self._vectors:
                try:
                    if table is not None:
                        vectors = ItemVectors.load_factors(self.warehouse, snapshot.movies, table)
                    else:
                        vectors = ItemVectors.load_embeddings(self.warehouse, snapshot.movies, model, run_date)
                except (duckdb.Error, OSError) as exc:
                    raise Unavailable(f"could not read {model!r}'s item vectors from {source}: "
                                      f"{one_line(exc)}") from None
                if vectors.dropped:
                    log.warning("%s: %d item vectors dropped (NULL, of another length, or not finite)", source,
                                vectors.dropped)
                self._vectors = {k: v for k, v in self._vectors.items() if k[0] != source}  # older versions
                self._vectors[key] = vectors
            return self._vectors[key]

    # -- hot reload ----------------------------------------------------------------------------------------------

    def start_reloading(self, interval: float) -> None:
        if interval <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    if self.refresh():
                        log.info("serving a new snapshot of the warehouse")
                except Exception:  # noqa: BLE001 - a half-written table must not stop the reloads; keep serving
                    # a warning once per distinct error, not every interval; the traceback at debug level
                    level = logging.WARNING if self.last_error != self._logged else logging.DEBUG
                    serving = "still serving the previous snapshot" if self._snapshot else "nothing to serve yet"
                    log.log(level, "reload failed (%s): %s", serving, self.last_error, exc_info=log.isEnabledFor(
                        logging.DEBUG))
                    self._logged = self.last_error

        self._thread = threading.Thread(target=loop, name="recsys-serve-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _warn_dropped(lists: TopLists) -> None:
    if lists.dropped:
        log.warning("%s %s: %d rows with a NaN or infinite score dropped", lists.model, lists.run_date, lists.dropped)


def _date(value) -> dt.date:
    """A DuckDB date as fetchnumpy gives it (numpy datetime64) as a date."""
    return dt.date.fromisoformat(str(np.datetime64(value, "D")))


def _optional(column: np.ndarray, i: int, kind):
    value = column[i]
    if np.ma.is_masked(value) or value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return kind(value)
