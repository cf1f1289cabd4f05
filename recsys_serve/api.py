"""The FastAPI application: read-only endpoints over the warehouse, and the web page at `/`.

Every answer comes from the Store's current snapshot (recsys_serve.store); the latest lists are in memory, so those
handlers are plain coroutines. What may read the warehouse (an older run date, a model's item vectors the first
time) runs in the thread pool. Bad input is a 4xx whose body is one line ({"detail": ...}), never a 500; what the
warehouse cannot give right now (nothing loaded yet, a table that cannot be read) is a 503, one line too.

Only requests whose Host header names this server are answered (Starlette's TrustedHostMiddleware, loopback names
by default): a page on another origin cannot read the users' histories through DNS rebinding.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import re
import time
from pathlib import Path as FilePath
from typing import Annotated, Callable

from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from pydantic_core import PydanticSerializationError, to_json

from recsys_core import catalogue
from recsys_serve import responses as r
from recsys_serve.drift import drift_report
from recsys_serve.errors import BadRequest, NotFound, Unavailable
from recsys_serve.reader import Warehouse
from recsys_serve.realtime import Realtime
from recsys_serve.store import Snapshot, Store

log = logging.getLogger("recsys_serve")

STATIC = FilePath(__file__).parent / "static"
MAX_ID = 2**63 - 1  # ids are Delta `long`s
MAX_K = 100
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
UNAVAILABLE = {503: {"model": r.Error, "description": "nothing can be served right now (the reason, in one line)"}}
ERRORS = {404: {"model": r.Error, "description": "no such user, movie, model or run date in this warehouse"},
          422: {"model": r.Error, "description": "a malformed or out-of-range request value"}, **UNAVAILABLE}
BODY_ERRORS = {400: {"model": r.Error, "description": "a body that is not JSON"}, **ERRORS}
# The names a browser on this machine uses for it ("testserver": FastAPI's TestClient); `--allowed-hosts` adds more.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "testserver")


class ReportPlot(str, enum.Enum):
    """The plots recsys_spark.report writes beside reports/<run_date>/report.md."""

    ndcg_hr = "ndcg_hr.png"
    metric_at_k = "metric_at_k.png"
    training_curves = "training_curves.png"
    drift = "drift.png"




def model_query():
    """The `model` parameter: the catalogue's names, and als_<name> for an ALS fitted under another name, as the
    catalogue stands when the app is made (a model declared at run time included): the schema says exactly what
    exists."""
    pattern = "^(?:" + "|".join(catalogue.names()) + "|" + catalogue.ALS_VARIANT_PATTERN + ")$"
    return Query(pattern=pattern, description="a model of the catalogue (recsys_core/catalogue.py)")
# Text checked here rather than pydantic's date, which also takes a number as seconds since 1970.
RunDate = Annotated[str | None, Query(pattern=DATE_PATTERN, json_schema_extra={"format": "date"},
                                      description="YYYY-MM-DD; default: the latest")]
TopK = Annotated[int, Query(ge=1, le=MAX_K, description="list length")]


StoreGetter = Callable[[], Store]


def create_app(warehouse: str | FilePath, reload_interval: float = 10.0, reports: str | FilePath | None = None,
               history_len: int = 10, allowed_hosts: list[str] | tuple[str, ...] = LOOPBACK_HOSTS,
               checkpoint_interval: float = 1.0, torch_threads: int | None = None) -> FastAPI:
    """The app over `warehouse`; it loads the served tables at start-up and checks their Delta versions every
    `reload_interval` seconds (0: never). `reports`: where recsys_spark.report wrote reports/<run_date>/.
    `allowed_hosts`: the Host header values answered (host names or addresses, `*.example.com`, or `*` for any).
    A start-up load that fails does not stop the server: it answers 503 with the reason until a reload succeeds.
    `checkpoint_interval`: how often (seconds) a real-time request looks whether a sequence model's checkpoint was
    replaced; `torch_threads`: torch's intra-op threads for them (None: torch's default)."""
    state: dict = {}
    lifespan = serving_lifespan(state, warehouse, reload_interval, history_len, checkpoint_interval, torch_threads)
    app = FastAPI(title="recsys", version="1", lifespan=lifespan,
                  description="Read-only API over the nightly recommendations warehouse (Delta tables).")
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=host_patterns(allowed_hosts))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)

    def store() -> Store:
        return state["store"]

    def realtime_scorer() -> Realtime:
        return state["realtime"]

    # The order of registration is the order of the OpenAPI schema's paths.
    add_status_routes(app, store, reports)
    add_browse_routes(app, store)
    add_list_routes(app, store)
    add_realtime_routes(app, store, realtime_scorer)
    add_report_routes(app, reports)
    return app


def serving_lifespan(state: dict, warehouse: str | FilePath, reload_interval: float, history_len: int,
                     checkpoint_interval: float, torch_threads: int | None):
    """The app's lifespan: puts the Store and the Realtime scorer in `state` at start-up, stops them at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        store = Store(Warehouse(warehouse), history_len=history_len)
        try:
            await run_in_threadpool(store.load)
        except Exception:  # noqa: BLE001 - served as 503 (and in /health) until a reload succeeds
            log.warning("nothing to serve yet: %s", store.last_error)
        store.start_reloading(reload_interval)
        state["store"] = store
        state["realtime"] = Realtime(store.warehouse, checkpoint_interval, torch_threads)
        try:
            yield
        finally:
            store.stop()
            store.warehouse.close()

    return lifespan


def add_error_handlers(app: FastAPI) -> None:
    """Every error answered as one line, {"detail": ...}, under its status code."""

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": one_line(exc)}, status_code=422)


def add_status_routes(app: FastAPI, store: StoreGetter, reports: str | FilePath | None) -> None:
    """The web page, /health and /models."""

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/health", response_model=r.Health, responses=UNAVAILABLE)
    async def health():
        return health_body(store())

    @app.get("/models", response_model=r.Models, responses=UNAVAILABLE)
    async def models():
        snap = store().snapshot
        return {"models": [model_info(store(), snap, name) for name in snap.latest],
                "report_plots": [p.value for p in ReportPlot if latest_report(reports, p) is not None]}


def add_browse_routes(app: FastAPI, store: StoreGetter) -> None:
    """The user and movie searches the web page's pickers use."""

    @app.get("/users", response_model=r.Users, responses=ERRORS)
    async def users(prefix: Annotated[str, Query(pattern=r"^[0-9]{0,19}$", description="userId starts with")] = "",
                    limit: Annotated[int, Query(ge=1, le=100)] = 20):
        histories = store().snapshot.histories
        positions = histories.with_prefix(prefix)
        return {"users": [{"userId": int(histories.user_ids[p]), "n_interactions": int(histories.n_interactions[p])}
                          for p in positions[:limit]], "total": len(positions)}

    @app.get("/movies", response_model=r.MovieSearch, responses=ERRORS)
    async def movies(q: Annotated[str, Query(min_length=1, max_length=100, description="part of the title")],
                     limit: Annotated[int, Query(ge=1, le=100)] = 20):
        cat = store().snapshot.movies
        found = cat.search(q.strip() or q)
        return {"movies": [cat.movie(p) for p in found[:limit]], "total": len(found)}


def add_list_routes(app: FastAPI, store: StoreGetter) -> None:
    """What the nightly wrote: a user's list, a movie's neighbours, the drift report."""

    @app.get("/users/{userId}/recommendations", response_model=r.Recommendations, responses=ERRORS)
    async def recommendations(userId: Annotated[int, Path(ge=0, le=MAX_ID)], model: str = model_query(),  # noqa: N803
                              k: TopK = 10,
                              run_date: RunDate = None):
        s = store()
        snap = s.snapshot
        day = parse_date(run_date)
        user = snap.histories.position(userId)
        if user is None:
            raise NotFound(f"unknown user {userId}")
        if s.needs_loading(snap, model, day):
            lists = await run_in_threadpool(s.top_lists, snap, model, day)
        else:
            lists = s.top_lists(snap, model, day)
        return shaped_json(user_lists(snap, lists, userId, user, model, k))

    @app.get("/items/{movieId}/similar", response_model=r.Similar, responses=ERRORS)
    def similar(movieId: Annotated[int, Path(ge=0, le=MAX_ID)], model: str = model_query(),  # noqa: N803
                k: TopK = 10):
        return shaped_json(similar_items(store(), movieId, model, k))

    @app.get("/drift", response_model=r.Drift, responses=ERRORS)
    def drift(run_date: RunDate = None):
        """How far a run's input and lists moved from the last published run's (the nightly's drift step)."""
        return drift_report(store().warehouse, parse_date(run_date))


def add_realtime_routes(app: FastAPI, store: StoreGetter, realtime_scorer: Callable[[], Realtime]) -> None:
    """Lists for histories posted now (docs/SERVING.md, Real-time lists)."""

    @app.post("/recommendations", response_model=r.RealtimeList, responses=BODY_ERRORS)
    def realtime(body: r.RealtimeRequest):
        """The model's top-k for a history posted now (docs/SERVING.md, Real-time lists)."""
        return realtime_scorer().lists(body.model, [body], body.k, store().snapshot)[0]

    @app.post("/recommendations/batch", response_model=r.RealtimeBatch, responses=BODY_ERRORS)
    def realtime_batch(body: r.RealtimeBatchRequest):
        """Many histories at once; a sequence model scores them in one forward."""
        return {"model": body.model, "k": body.k,
                "lists": realtime_scorer().lists(body.model, body.requests, body.k, store().snapshot, batch=True)}


def add_report_routes(app: FastAPI, reports: str | FilePath | None) -> None:
    """The comparison report's plots."""

    @app.get("/report/{plot}", response_class=FileResponse, responses=ERRORS)
    async def report_plot(plot: ReportPlot):
        path = latest_report(reports, plot)
        if path is None:
            raise NotFound(f"no comparison report has {plot.value} (the pipeline writes reports/<run_date>/)")
        return FileResponse(path, media_type="image/png")


def host_patterns(hosts) -> list[str]:
    """Host header patterns as TrustedHostMiddleware compares them: an IPv6 address in brackets, lower case."""
    patterns = []
    for host in hosts:
        host = host.strip().lower()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if host:
            patterns.append(host)
    return patterns


def health_body(s: Store) -> dict:
    snap = s.snapshot  # none loaded yet: 503 with the reason
    now = time.time()
    return {"status": "stale" if s.failing else "ok", "run_date": snap.run_date,
            "committed_at": timestamp(snap.committed_at),
            "age_s": round(now - snap.committed_at, 1) if snap.committed_at is not None else None,
            "loaded_at": timestamp(snap.loaded_at), "checked_at": timestamp(s.checked_at),
            "last_error": s.last_error, "last_error_at": timestamp(s.last_error_at),
            "models": len(snap.latest), "users": len(snap.histories.user_ids),
            "movies": len(snap.movies.movie_ids), "reloads": s.reloads, "versions": snap.versions,
            "published_run": published_run(snap)}


def similar_items(s: Store, movie_id: int, model: str, k: int) -> dict:
    snap = s.snapshot
    pos = snap.movies.position(movie_id)
    if pos is None:
        raise NotFound(f"unknown movie {movie_id}")
    vectors = s.vectors(snap, model)
    found = vectors.similar(pos, k)
    if found is None:
        raise NotFound(f"movie {movie_id} has no vector in {model}'s {vectors.source}")
    cat = snap.movies
    return {"model": model, "source": vectors.source, "run_date": vectors.run_date,
            "item": cat.movie(pos), "items": [{**cat.movie(p), "rank": i + 1, "similarity": float(c)}
                                              for i, (p, c) in enumerate(zip(*found))]}


def timestamp(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def one_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    if where == "query.model" and first.get("type") == "string_pattern_mismatch":
        return str(catalogue.unknown_model(first.get("input"), "query.model"))
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid value')}{more}"


def parse_date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"run_date {value!r} is not a date (YYYY-MM-DD)") from None


def shaped_json(body: dict) -> Response | dict:
    """A body built field for field as its response model, written as JSON by pydantic's serializer without the
    validation FastAPI would run first: a third of the time of validating and writing a recommendation list, which
    was a quarter of a request's cost under load (docs/SERVING.md). The schema tests check these bodies against
    the OpenAPI schema. A body the serializer does not know goes through FastAPI's validation instead."""
    try:
        text = to_json(body, inf_nan_mode="null")  # what the response models write for a NaN
    except PydanticSerializationError:
        return body
    return Response(text, media_type="application/json")


def published_run(snap: Snapshot) -> dict | None:
    run = snap.published
    return None if run is None else {"run_id": run.run_id, "run_date": run.run_date, "published_at": run.published_at}


def model_info(store: Store, snap: Snapshot, name: str) -> dict:
    model = store.model(name)
    lists = snap.latest[name]
    metrics = snap.metrics.get(name, [])
    entry = snap.published.model(name) if snap.published is not None else None
    return {"published_run_id": snap.published.run_id if entry else None,
            "published": entry.published if entry else None, "reason": entry.reason if entry else None, "name": name, "family": model.family.name, "summary": model.summary, "run_date": lists.run_date,
            "run_id": lists.run_id, "run_dates": snap.run_dates(name), "users": lists.users, "max_k": lists.max_k,
            "similar_items": snap.has_vectors(name),
            "metrics_run_date": metrics[0]["run_date"] if metrics else None, "metrics": metrics}


def user_lists(snap: Snapshot, lists, user_id: int, user: int, model: str, k: int) -> dict:
    cat, histories = snap.movies, snap.histories
    held = int(histories.held_out_pos[user])
    found = lists.of(user, k)
    if found is None:
        positions, scores = histories.fallback(user, k)
        run_date = run_id = None
        fallback = catalogue.FALLBACK_MODEL
    else:
        (positions, scores), run_date, run_id, fallback = found, lists.run_date, lists.run_id, None
    items = [{**cat.movie(p), "rank": i + 1, "score": float(s), "held_out": p == held}
             for i, (p, s) in enumerate(zip(positions.tolist(), scores.tolist()))]
    history = histories.history(user)
    return {
        "userId": user_id, "model": model, "run_date": run_date, "run_id": run_id, "fallback": fallback, "k": k,
        "items": items,
        "held_out": None if held < 0 else {**cat.movie(held), "rating": float(histories.held_out_rating[user]),
                                           "timestamp": int(histories.held_out_timestamp[user])},
        "held_out_rank": next((item["rank"] for item in items if item["held_out"]), None),
        "history": [{**cat.movie(p), "rating": float(rating), "timestamp": int(ts)}
                    for p, rating, ts in zip(histories.item_pos[history].tolist(),
                                             histories.rating[history].tolist(),
                                             histories.timestamp[history].tolist())],
    }


REPORT_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def latest_report(reports: str | FilePath | None, plot: ReportPlot) -> FilePath | None:
    """The plot of the newest reports/<run_date>/ that has it (the directory names come from listing it)."""
    if reports is None or not FilePath(reports).is_dir():
        return None
    for directory in sorted((d for d in FilePath(reports).iterdir() if REPORT_DIR.match(d.name)), reverse=True):
        if (directory / plot.value).is_file():
            return directory / plot.value
    return None
