"""The served state: an immutable Snapshot of the warehouse, replaced whole when a table's Delta version moves.

`Store.refresh()` compares the versions of the tables it serves with those of its snapshot; what changed is
reloaded (a new run date, or a partition whose files a re-run replaced, or a new ETL), what did not is reused, and
the new snapshot replaces the old one in one assignment, so a request always sees one consistent state and none
fails while a reload runs. A background thread calls it every `reload_interval` seconds.

Once the nightly has published (a `runs` table, recsys_core.published), the snapshot is the last published one: the
tables are read at the versions its newest row names (Delta time travel), each model's list is the one the
regression gate left served for it (its run date, at its `recommendations` version), and what is "changed" is the
`runs` version: tables a running night is rewriting are not looked at until its publish commits. A warehouse with no
`runs` table is served as before: each table's latest version.

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
from recsys_core.published import PublishedRun, latest_published, runs_version
from recsys_serve.errors import BadRequest, NotFound, Unavailable
from recsys_serve.index import Histories, ItemVectors, Movies, TopLists
from recsys_serve.reader import FACTORS_SUFFIX, Warehouse

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
    published: PublishedRun | None = None  # the published run served (None: no `runs` table, latest versions)
    view: Warehouse | None = None  # the warehouse pinned to the served versions (what later loads read)

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

    def current(self, old: Snapshot | None) -> tuple[dict[str, int | None], PublishedRun | None]:
        """The versions to serve and the published run naming them: the newest `runs` row's versions once there is
        one (re-read only when `runs` moved), else each table's latest version."""
        version = runs_version(self.warehouse.root)
        if version is None:
            return self.versions(), None
        run = old.published if old is not None and old.published and old.published.version == version \
            else latest_published(self.warehouse.root)
        if run is None:  # a `runs` table without a row
            return self.versions(), None
        watched = [*WATCHED_TABLES, *(t for t in run.tables if t.endswith(FACTORS_SUFFIX))]
        return {**{t: run.tables.get(t) for t in watched}, "runs": run.version}, run

    def refresh(self) -> bool:
        """Reload what changed since the last snapshot; True when a new snapshot is served."""
        with self._refresh_lock:
            self.checked_at = time.time()
            old = self._snapshot
            try:
                self.warehouse.require(*SERVED_TABLES)
                versions, run = self.current(old)
                changed = old is None or versions != old.versions
                if changed:
                    self._snapshot = self._build(versions, old, run)
            except Exception as exc:
                self.failing = True
                self.last_error, self.last_error_at = one_line(exc), time.time()
                raise
            self.failing = False
            self.reloads += changed and old is not None
            return changed

    def _build(self, versions: dict[str, int | None], old: Snapshot | None, run: PublishedRun | None) -> Snapshot:
        view = self.warehouse.at(versions) if run is not None else self.warehouse
        base_changed = old is None or any(versions[t] != old.versions.get(t) for t in BASE_TABLES)
        if base_changed:
            movies = Movies.load(view)
            histories = Histories.load(view, movies, self.history_len)
        else:
            movies, histories = old.movies, old.histories
        partitions = {key: files for key, files in view.partitions("recommendations").items() if known_model(key[0])}
        served = self._served_lists(view, partitions, run)
        if run is not None:  # a model's dates up to the one served: a held-back list of tonight is not offered
            partitions = {(m, d): f for (m, d), f in partitions.items() if m in served and d <= served[m][0]}
        latest = {}
        for model, (run_date, files, source) in sorted(served.items()):
            current = None if old is None or base_changed else old.latest.get(model)
            if current is not None and (current.run_date, current.files) == (run_date, files):
                latest[model] = current
            else:
                latest[model] = TopLists.load(source, histories, movies, model, run_date, files)
                log.info("loaded %s %s: %d users", model, run_date, latest[model].users)
                _warn_dropped(latest[model])
        embeddings: dict[str, dt.date] = {}
        for model, run_date in view.partitions("item_embeddings"):
            if known_model(model) and (run is None or (model in served and run_date <= served[model][0])):
                embeddings[model] = max(run_date, embeddings.get(model, run_date))
        if run is None:
            factor_tables = {m: t for m, t in self.warehouse.factor_tables().items() if known_model(m)}
        else:
            factor_tables = {t[:-len(FACTORS_SUFFIX)]: t for t in run.tables if t.endswith(FACTORS_SUFFIX)
                             and known_model(t[:-len(FACTORS_SUFFIX)])}
        with self._cache_lock:
            if base_changed:
                self._older.clear()
                self._vectors.clear()
        if run is not None:
            committed_at = run.published_at.timestamp()
        else:
            committed = [self.warehouse.committed_at(t) for t in SERVED_TABLES]
            committed_at = max((c for c in committed if c is not None), default=None)
        metrics = self._load_metrics(view, {m: d for m, (d, _, _) in served.items()} if run is not None else None)
        return Snapshot(versions, movies, histories, partitions, latest, metrics, factor_tables, embeddings,
                        committed_at, published=run, view=view)

    @staticmethod
    def _served_lists(view: Warehouse, partitions: dict, run: PublishedRun | None) -> dict:
        """model -> (run date, files, the warehouse view to read them from) of the list served for it: its latest
        run date (nothing published), or the one the published run names, at that entry's `recommendations`
        version (a model the gate held back keeps its last published list)."""
        if run is None:
            dates: dict[str, dt.date] = {}
            for model, day in partitions:
                dates[model] = max(day, dates.get(model, day))
            return {m: (d, partitions[(m, d)], view) for m, d in dates.items()}
        served, by_version = {}, {}
        for entry in run.models:
            if not entry.served or not known_model(entry.model):
                continue
            version = entry.recommendations_version
            if version not in by_version:
                source = view.at({**view.pinned, "recommendations": version})
                by_version[version] = (source, source.partitions("recommendations"))
            source, parts = by_version[version]
            files = parts.get((entry.model, entry.run_date))
            if files is None:
                log.warning("%s: its published list of %s is gone from recommendations version %s; not served",
                            entry.model, entry.run_date, version)
                continue
            served[entry.model] = (entry.run_date, files, source)
        return served

    def _load_metrics(self, view: Warehouse, served: dict[str, dt.date] | None) -> dict[str, list[dict]]:
        """Rows of `metrics` for each model's latest run date, or (published) for the run date served for it."""
        if not view.exists("metrics"):
            return {}
        latest = "WHERE (model, run_date) IN (SELECT (model, max(run_date)) FROM {m} GROUP BY model) " \
            if served is None else ""
        cols = view.query(
            "SELECT model, run_id, run_date, split, metric, k, value, ci_low, ci_high FROM {m} " + latest +
            "ORDER BY model, split, metric, k NULLS FIRST", m="metrics")
        rows: dict[str, list[dict]] = {}
        for i, model in enumerate(cols["model"]):
            if not known_model(model) or not np.isfinite(cols["value"][i]):  # a NaN metric is not shown
                continue
            if served is not None and served.get(str(model)) != _date(cols["run_date"][i]):
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
            raise BadRequest(str(catalogue.unknown_model(name)))
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
                lists = TopLists.load(snapshot.view or self.warehouse, snapshot.histories, snapshot.movies, model,
                                      run_date, files)
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
                    source_warehouse = snapshot.view or self.warehouse
                    if table is not None:
                        vectors = ItemVectors.load_factors(source_warehouse, snapshot.movies, table)
                    else:
                        vectors = ItemVectors.load_embeddings(source_warehouse, snapshot.movies, model, run_date)
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
