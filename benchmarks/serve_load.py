"""`recsys serve` under load at ML-25M size: requests/s, p50/p99 latency, errors, server RSS, start-up, hot reload.

    .venv/bin/python benchmarks/serve_load.py                       # builds .bench/serve25m once, then measures
    .venv/bin/python benchmarks/serve_load.py --users 20000 --duration 5   # a smaller, quicker run
    .venv/bin/python benchmarks/serve_load.py --nightly --warehouse W   # a warehouse `recsys pipeline` made, as it is

The warehouse: MovieLens-25M-shaped data from the generator (`recsys generate`), the real ETL (`recsys etl`), then
for each of --models a top-100 of every user written with the real writer (recsys_torch.tables): synthetic lists
(distinct catalogue movies, decreasing scores, users in shuffled order as Spark writes them), item vectors for the
similar-items endpoint (item_embeddings, an als_item_factors table) and metrics rows with intervals.

The load: `recsys serve` in its own process on 127.0.0.1; this process opens --connections keep-alive HTTP/1.1
connections and sends GET /users/{random user}/recommendations?model={random model}&k=10 for --duration seconds
(and at most --max-requests), one request in flight per connection. Then the same load again while a new run date
of one model is committed: the time until /models serves it, and the errors meanwhile. Traffic goes only to
127.0.0.1; every loop is bounded in count and time.
Goals on 2 cores: >= 1,000 requests/s with p99 <= 20 ms and no errors; ready <= 30 s; RSS <= 2 GB; a new run date
served within 60 s under load without failed requests.

Real-time lists (POST /recommendations) are benchmarks/serve_realtime.py's.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine  # noqa: E402
from _serve_bench import (NEW_RUN_DATE, RT_MODELS, RUN_DATE, Load, add_warehouse_args, generated_etl,  # noqa: E402
                          get_json, rss_gb, start_server, warehouse_ids, write_lists, written_partitions)

from recsys_core import catalogue  # noqa: E402


# ---- the warehouse ------------------------------------------------------------------------------------------

def build_warehouse(args) -> None:
    data, warehouse = Path(args.data), Path(args.warehouse)
    generated_etl(data, warehouse, args.users, args.items, args.ratings)
    started = time.perf_counter()
    users, movies = warehouse_ids(warehouse)
    written = written_partitions(warehouse)  # what an interrupted build already committed is kept
    missing = [m for m in args.models if (m, RUN_DATE.isoformat()) not in written]
    for i, model in enumerate(args.models):
        if model in missing:
            write_lists(warehouse, model, RUN_DATE, users, movies, seed=i)
    if not (warehouse / "item_embeddings" / "_delta_log").is_dir() or not (warehouse / "als_item_factors").is_dir():
        write_vectors(warehouse, movies)
    if not (warehouse / "metrics" / "_delta_log").is_dir():
        write_metric_rows(warehouse, args.models)
    if missing:
        print(f"wrote {len(missing)} x {len(users):,} x 100 lists in {time.perf_counter() - started:.0f} s")


def served_models(warehouse: Path) -> dict[str, dt.date]:
    """model -> run date of the list the server serves, from a nightly's warehouse: the models of its last published
    run with a list (a list written but never published, e.g. a model since dropped from the plan, is not served)."""
    from recsys_core.published import latest_published

    run = latest_published(warehouse)
    if run is None:
        raise SystemExit(f"error: {warehouse} has no published run (`recsys publish` ends the nightly): "
                         "nothing to serve")
    return {m.model: m.run_date for m in run.models if m.served}


def write_vectors(warehouse: Path, movies: np.ndarray, dim: int = 64) -> None:
    import pyarrow as pa

    from recsys_spark.delta import write_arrow
    from recsys_spark.schemas import ITEM_FACTORS
    from recsys_torch.tables import write_item_embeddings

    rng = np.random.default_rng(7)
    write_item_embeddings(warehouse, RT_MODELS[0], RUN_DATE, movies, rng.normal(size=(len(movies), dim)))
    offsets = pa.array(np.arange(0, len(movies) * dim + 1, dim, dtype=np.int32))
    factors = pa.table({"item_idx": pa.array(np.arange(1, len(movies) + 1, dtype=np.int32)),
                        "movieId": pa.array(movies),
                        "features": pa.ListArray.from_arrays(offsets, pa.array(
                            rng.normal(size=len(movies) * dim).astype(np.float32)))}).cast(ITEM_FACTORS)
    write_arrow(factors, warehouse / "als_item_factors")


def write_metric_rows(warehouse: Path, models: list[str]) -> None:
    from recsys_spark.evaluate import etl_inputs, metric_row, write_metrics

    rng = np.random.default_rng(3)
    inputs = etl_inputs(warehouse)  # the warehouse's ETL; the values are invented, scored on no interactions version
    rows = []
    for model in models:
        for metric in ("hr", "ndcg", "mrr"):
            value = float(rng.uniform(0.01, 0.1))
            rows.append(metric_row(model, f"bench-{model}", RUN_DATE, "test", metric, 10, value, value * 0.9,
                                   value * 1.1, provenance=inputs))
    write_metrics(rows, warehouse)


# ---- the readers -------------------------------------------------------------------------------------------

def compare_readers(warehouse: Path, model: str, users: np.ndarray, run_date: dt.date = RUN_DATE,
                    lookups: int = 200) -> dict:
    """The measurement behind the server's reader: one model's partition (users x 100 rows, and its run ids) loaded
    whole into numpy by DuckDB's delta extension and, when it is installed, by polars' scan_delta (alternately,
    twice each, the faster kept), and one user's list asked per request from DuckDB (the alternative to holding
    the lists in memory), against the in-memory lookup the server does."""
    try:
        import polars as pl
    except ImportError:  # not a dependency of the project: its figure is left out
        pl = None
    from recsys_serve.reader import Warehouse

    wh = Warehouse(warehouse)
    where = "WHERE model = ? AND run_date = ?"

    def duckdb_partition() -> np.ndarray:
        wh.query("SELECT DISTINCT run_id FROM {r} " + where, [model, run_date], r="recommendations")
        return wh.query("SELECT userId, rank, movieId, score FROM {r} " + where, [model, run_date],
                        r="recommendations")["userId"]

    def polars_partition() -> np.ndarray:
        rows = pl.scan_delta(str(warehouse / "recommendations")).filter(
            (pl.col("model") == model) & (pl.col("run_date") == run_date))
        rows.select(pl.col("run_id").unique()).collect()
        frame = rows.select("userId", "rank", "movieId", "score").collect()
        return {c: frame[c].to_numpy() for c in frame.columns}["userId"]

    loaders = {"duckdb": duckdb_partition, **({"polars": polars_partition} if pl is not None else {})}
    seconds = {name: [] for name in loaders}
    for _ in range(2):
        for name, load in loaders.items():
            started = time.perf_counter()
            user_ids = load()
            seconds[name].append(time.perf_counter() - started)
    figures = {"partition_rows": len(user_ids),
               **{f"{name}_partition_s": round(min(times), 2) for name, times in seconds.items()}}
    sample = np.random.default_rng(5).choice(users, lookups)
    started = time.perf_counter()
    for user in sample:
        wh.query("SELECT rank, movieId, score FROM {r} " + where + " AND userId = ? ORDER BY rank LIMIT 10",
                 [model, run_date, int(user)], r="recommendations")
    figures["duckdb_per_request_ms"] = round((time.perf_counter() - started) / lookups * 1000, 1)
    order = np.argsort(user_ids, kind="stable")
    sorted_users = user_ids[order]
    started = time.perf_counter()
    for user in sample:
        lo, hi = np.searchsorted(sorted_users, [user, user + 1])
        order[lo:hi][:10]
    figures["in_memory_per_request_ms"] = round((time.perf_counter() - started) / lookups * 1000, 4)
    wh.close()
    return figures


def recommendation_paths(users: np.ndarray, models: list[str], n: int = 20_000, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [f"/users/{u}/recommendations?model={models[m]}&k=10".encode()
            for u, m in zip(rng.choice(users, n), rng.integers(0, len(models), n))]


def hot_reload(args, port: int, users: np.ndarray, movies: np.ndarray, paths: list[bytes]) -> dict:
    """The same load while another process commits a new run date of the first model; how long after the commit
    /models serves it, and the errors meanwhile."""
    import multiprocessing

    model = args.models[0]
    writer = multiprocessing.get_context("spawn").Process(
        target=write_lists, args=(Path(args.warehouse), model, NEW_RUN_DATE, users, movies, 99))

    def served() -> bool:
        info = {m["name"]: m for m in get_json(port, "/models")["models"]}
        return info[model]["run_date"] == NEW_RUN_DATE.isoformat()

    async def load_while_committing() -> tuple[dict, float | None]:
        load = asyncio.ensure_future(Load(port, paths, args.reload_duration, args.max_requests,
                                          args.connections).run())
        await asyncio.sleep(2)
        writer.start()
        while writer.is_alive():
            await asyncio.sleep(0.1)
        committed = time.perf_counter()
        served_after = None
        while time.perf_counter() - committed < 120:  # polled while the load goes on (and after it, if need be)
            if await asyncio.to_thread(served):
                served_after = time.perf_counter() - committed
                break
            await asyncio.sleep(0.2)
        return await load, served_after

    result, served_after = asyncio.run(load_while_committing())
    writer.join()
    return {**result, "model": model, "served_after_s": None if served_after is None else round(served_after, 1)}


def remove_new_run_date(warehouse: Path, model: str) -> None:
    import deltalake

    deltalake.DeltaTable(str(warehouse / "recommendations")).delete(
        f"model = '{model}' AND run_date = '{NEW_RUN_DATE.isoformat()}'")


# ---- the measurement ----------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_warehouse_args(p, "ml25m", "serve25m", users=162_541, ratings=25_000_095)
    p.add_argument("--models", default="popularity,markov,als,sasrec")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of the main load")
    p.add_argument("--reload-duration", type=float, default=120.0, help="seconds of the load during a hot reload")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap on the requests of each load")
    p.add_argument("--reload-interval", type=float, default=5.0, help="the server's --reload-interval")
    p.add_argument("--no-reload", action="store_true", help="skip the hot-reload phase")
    p.add_argument("--nightly", action="store_true",
                   help="--warehouse is one `recsys pipeline` made: serve it as it is (every model of its lists, "
                        "nothing written to it, so no hot-reload phase)")
    p.add_argument("--no-readers", action="store_true", help="skip the reader comparison")
    args = p.parse_args(argv)
    args.models = args.models.split(",")
    return args


def prepare(args) -> dt.date:
    """The warehouse to serve, built or (--nightly) taken as it is; the run date of the lists the readers compare."""
    warehouse = Path(args.warehouse)
    if not args.nightly:
        build_warehouse(args)
        remove_new_run_date(warehouse, args.models[0])  # a previous run's hot-reload date
        return RUN_DATE
    served = served_models(warehouse)
    args.models = sorted(served, key=lambda m: (catalogue.find(m).family is catalogue.TORCH, m))
    args.no_reload = True  # the reload phase commits and deletes a run date: not in a nightly's warehouse
    print(f"the nightly's warehouse {warehouse}: {len(args.models)} models served, "
          f"lists of {sorted(str(d) for d in set(served.values()))}")
    return served[args.models[0]]


def measure(args, users: np.ndarray, movies: np.ndarray) -> dict:
    """`recsys serve` started, warmed up, loaded with GET lists, then similar items, then (unless --no-reload) the
    hot reload under load; its start-up time and memory along the way."""
    server, ready_s = start_server(Path(args.warehouse), args.port, args.reload_interval)
    try:
        print(f"ready after {ready_s:.1f} s; RSS {rss_gb(server.pid)[0]:.2f} GB")
        paths = recommendation_paths(users, args.models)
        asyncio.run(Load(args.port, paths[:2000], 3, 2000, args.connections).run())  # warm-up
        main_load = asyncio.run(Load(args.port, paths, args.duration, args.max_requests, args.connections).run())
        similar = asyncio.run(Load(args.port, [f"/items/{m}/similar?model={args.models[-1]}&k=10".encode()
                                               for m in np.random.default_rng(1).choice(movies, 2000)],
                                   5, 20_000, 4).run())
        rss_now, rss_peak = rss_gb(server.pid)
        reload = None if args.no_reload else hot_reload(args, args.port, users, movies, paths)
        rss_after, rss_peak_after = rss_gb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"ready_s": round(ready_s, 1), "recommendations": main_load, "similar": similar,
            "rss_gb": round(rss_now, 2), "rss_peak_gb": round(rss_peak, 2), "hot_reload": reload,
            "rss_after_reload_gb": round(rss_after, 2), "rss_peak_after_reload_gb": round(rss_peak_after, 2)}


def report(figures: dict, args) -> None:
    main_load, similar, reload = figures["recommendations"], figures["similar"], figures["hot_reload"]
    print(f"\nrecommendations: {main_load['rps']:,} req/s, p50 {main_load['p50_ms']} ms, p99 {main_load['p99_ms']} "
          f"ms, {main_load['errors']} errors ({main_load['requests']:,} requests, {args.connections} connections)")
    print(f"similar ({args.models[-1]}): {similar['rps']:,} req/s, p50 {similar['p50_ms']} ms, "
          f"p99 {similar['p99_ms']} ms")
    print(f"start-up (ready to serve): {figures['ready_s']:.1f} s; server RSS {figures['rss_gb']:.2f} GB "
          f"(peak {figures['rss_peak_gb']:.2f} GB)")
    if reload:
        print(f"hot reload under load: new run date served {reload['served_after_s']} s after its commit; "
              f"{reload['rps']:,} req/s, p99 {reload['p99_ms']} ms, {reload['errors']} errors; "
              f"RSS after {figures['rss_after_reload_gb']:.2f} GB (peak {figures['rss_peak_after_reload_gb']:.2f} GB)")


def main(argv=None) -> int:
    args = parse_args(argv)
    print(machine())
    run_date = prepare(args)
    users, movies = warehouse_ids(Path(args.warehouse))
    readers = None if args.no_readers else compare_readers(Path(args.warehouse), args.models[0], users, run_date)
    if readers:
        print(f"readers: {json.dumps(readers)}")
    figures = {"readers": readers, **measure(args, users, movies)}
    print(json.dumps(figures, indent=1))
    report(figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
