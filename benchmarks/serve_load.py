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

    .venv/bin/python benchmarks/serve_load.py --realtime           # POST /recommendations at 59,047 items

Real-time mode (--realtime): a small generated warehouse with the full 59,047-movie catalogue (--rt-users users,
--rt-ratings ratings, through the real ETL), its item map written as `recsys export-sequences` writes it, and
SASRec and SS4Rec checkpoints of their default configs (conf/: hidden 64, 2 layers, max_len 200) at 59,047 items
with seeded initial weights: the work of a forward does not depend on the weights' values, so the latency is a
trained model's. `recsys serve` in its own process (--torch-threads), then for each model: one connection posting
one random history of --rt-history movies with timestamps (the single form), then two connections, then the batch
form with --rt-batch histories a request; and the same forward in-process without HTTP (where the time goes).
Goal: p99 <= 15 ms for one history of 50 items on 2 cores.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine  # noqa: E402

from recsys_core import catalogue  # noqa: E402

HOST = "127.0.0.1"  # the only address this benchmark sends traffic to
RUN_DATE = dt.date(2030, 1, 1)
NEW_RUN_DATE = dt.date(2030, 1, 2)


# ---- the warehouse ------------------------------------------------------------------------------------------

def build_warehouse(args) -> None:
    data, warehouse = Path(args.data), Path(args.warehouse)
    if not (data / "ratings.csv").exists():
        run([sys.executable, "-m", "jobs.cli", "generate", "--out", str(data), "--users", str(args.users),
             "--items", str(args.items), "--ratings", str(args.ratings), "--quiet"], "generate")
    if not (warehouse / "interactions" / "_delta_log").is_dir():
        run([sys.executable, "-m", "jobs.cli", "etl", "--data", str(data), "--warehouse", str(warehouse),
             "mlflow.enabled=false"], "etl", env={**os.environ, "RECSYS_DELTA_WRITER": "delta-rs"})
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


def written_partitions(warehouse: Path) -> set[tuple[str, str]]:
    import deltalake

    if not (warehouse / "recommendations" / "_delta_log").is_dir():
        return set()
    return {(p["model"], p["run_date"]) for p in deltalake.DeltaTable(str(warehouse / "recommendations")).partitions()}


def served_models(warehouse: Path) -> dict[str, dt.date]:
    """model -> run date of the list the server serves, from a nightly's warehouse: the models of its last published
    run with a list (a list written but never published, e.g. a model since dropped from the plan, is not served)."""
    from recsys_core.published import latest_published

    run = latest_published(warehouse)
    if run is None:
        raise SystemExit(f"error: {warehouse} has no published run (`recsys publish` ends the nightly): "
                         "nothing to serve")
    return {m.model: m.run_date for m in run.models if m.served}


def run(cmd: list[str], what: str, env=None) -> None:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, env=env)
    print(f"{what}: {time.perf_counter() - started:.0f} s")


def warehouse_ids(warehouse: Path) -> tuple[np.ndarray, np.ndarray]:
    from recsys_serve.reader import Warehouse

    wh = Warehouse(warehouse)
    users = wh.query("SELECT userId FROM {u} ORDER BY userId", u="users")["userId"]
    movies = wh.query("SELECT movieId FROM {i} WHERE item_idx IS NOT NULL ORDER BY movieId", i="items")["movieId"]
    wh.close()
    return np.asarray(users, np.int64), np.asarray(movies, np.int64)


def write_lists(warehouse: Path, model: str, run_date: dt.date, users: np.ndarray, movies: np.ndarray, seed: int,
                k: int = 100) -> None:
    """Every user's top-k: distinct movies (a random start and stride through the catalogue), decreasing scores."""
    import pyarrow as pa

    from recsys_torch.tables import write_recommendations

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))  # Spark writes users in no particular order
    n = len(movies)
    start = rng.integers(0, n, len(users))[:, None]
    stride = rng.choice(np.arange(1, 1000)[np.gcd(np.arange(1, 1000), n) == 1], len(users))[:, None]
    positions = (start + stride * np.arange(k)[None, :]) % n
    scores = np.sort(rng.random((len(users), k)), axis=1)[:, ::-1]
    rows = len(users) * k
    table = pa.table({
        "model": pa.array([model], pa.string()).take(pa.array(np.zeros(rows, np.int32))),
        "run_id": pa.array([f"bench-{model}-{run_date}"], pa.string()).take(pa.array(np.zeros(rows, np.int32))),
        "run_date": pa.array(np.full(rows, np.datetime64(run_date.isoformat(), "D")), pa.date32()),
        "userId": pa.array(np.repeat(users[order], k)),
        "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))),
        "movieId": pa.array(movies[positions[order]].reshape(-1)),
        "score": pa.array(scores[order].reshape(-1)),
    })
    write_recommendations(warehouse, table, model, run_date)


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


# ---- the server ---------------------------------------------------------------------------------------------

def start_server(warehouse: Path, port: int, reload_interval: float,
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", "--warehouse", str(warehouse), "--host",
                               HOST, "--port", str(port), "--reload-interval", str(reload_interval), *extra], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"recsys serve exited {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return server, time.perf_counter() - started
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("recsys serve was not ready within 300 s")


def rss_gb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, GB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 2**20, int(fields["VmHWM"].split()[0]) / 2**20


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


# ---- the load -----------------------------------------------------------------------------------------------

class Load:
    """Keep-alive HTTP/1.1 connections to 127.0.0.1, one request in flight each; bounded by time and count."""

    def __init__(self, port: int, paths: list[bytes], duration: float, max_requests: int, connections: int,
                 bodies: list[bytes] | None = None):
        """`bodies`: POST each (JSON) to paths[0] instead of GET paths."""
        self.port, self.paths, self.duration = port, paths, duration
        self.bodies = bodies
        self.max_requests, self.connections = max_requests, connections
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0

    async def _connection(self, deadline: float) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            while time.perf_counter() < deadline and self.sent < self.max_requests:
                self.sent += 1
                if self.bodies is None:
                    request = b"GET " + random.choice(self.paths) + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
                else:
                    body = random.choice(self.bodies)
                    request = (b"POST " + self.paths[0] + b" HTTP/1.1\r\nHost: " + HOST.encode() +
                               b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                               b"\r\n\r\n" + body)
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = head[9:12]
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                self.latencies.append(time.perf_counter() - started)
                if status != b"200":
                    self.errors[status.decode()] = self.errors.get(status.decode(), 0) + 1
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        finally:
            writer.close()

    async def run(self) -> dict:
        started = time.perf_counter()
        deadline = started + self.duration
        await asyncio.gather(*(self._connection(deadline) for _ in range(self.connections)))
        elapsed = time.perf_counter() - started
        lat = np.array(self.latencies) * 1000
        return {"requests": len(lat), "seconds": round(elapsed, 2), "rps": round(len(lat) / elapsed),
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
                "p95_ms": round(float(np.percentile(lat, 95)), 2) if len(lat) else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
                "max_ms": round(float(lat.max()), 1) if len(lat) else None,
                "errors": sum(self.errors.values()), "error_kinds": self.errors}


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


# ---- real-time lists (--realtime) ---------------------------------------------------------------------------

RT_MODELS = tuple(m for m in catalogue.realtime_models() if catalogue.MODELS[m].family is catalogue.TORCH)


def build_realtime_warehouse(args) -> None:
    """Generated data with the full catalogue through the real ETL, the item map, a stored list (the server needs
    one table of lists) and seeded checkpoints of the default SASRec and SS4Rec at --items items."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, warehouse = Path(args.rt_data), Path(args.rt_warehouse)
    if not (data / "ratings.csv").exists():
        run([sys.executable, "-m", "jobs.cli", "generate", "--out", str(data), "--users", str(args.rt_users),
             "--items", str(args.items), "--ratings", str(args.rt_ratings), "--quiet"], "generate")
    if not (warehouse / "interactions" / "_delta_log").is_dir():
        run([sys.executable, "-m", "jobs.cli", "etl", "--data", str(data), "--warehouse", str(warehouse),
             "mlflow.enabled=false"], "etl", env={**os.environ, "RECSYS_DELTA_WRITER": "delta-rs"})
    users, movies = warehouse_ids(warehouse)
    if not written_partitions(warehouse):
        write_lists(warehouse, catalogue.FALLBACK_MODEL, RUN_DATE, users, movies, seed=0)
    from recsys_serve.reader import Warehouse

    wh = Warehouse(warehouse)
    items = wh.query("SELECT item_idx, movieId FROM {i} ORDER BY item_idx NULLS LAST, movieId", i="items")
    wh.close()
    # Every movie of the catalogue gets an index (the rated ones keep theirs), so that the models score 59,047
    # listable movies, as they would at ML-25M size where all of them are rated.
    rated = ~np.ma.getmaskarray(items["item_idx"])
    item_idx = np.zeros(len(rated), np.int64)
    item_idx[rated] = np.asarray(items["item_idx"])[rated]
    item_idx[~rated] = item_idx[rated].max(initial=0) + 1 + np.arange(int((~rated).sum()))
    (warehouse / "sequences").mkdir(exist_ok=True)
    pq.write_table(pa.table({"item_idx": pa.array(item_idx, pa.int32()),
                             "movieId": pa.array(np.asarray(items["movieId"]), pa.int64())}),
                   warehouse / "sequences" / "item_map.parquet")
    n_items = int(item_idx.max())
    for model in RT_MODELS:
        path = warehouse / "models" / model / "best.pt"
        if not path.exists():
            seeded_checkpoint(path, model, n_items)
    print(f"real-time warehouse: {len(users):,} users, {len(movies):,} rated movies; models at {n_items:,} items")


def pq_movie_ids(warehouse: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    return pq.read_table(warehouse / "sequences" / "item_map.parquet").column("movieId").to_numpy()


def seeded_checkpoint(path: Path, model: str, n_items: int) -> None:
    import torch
    import yaml

    from recsys_torch import checkpoint
    from recsys_torch.models import build_model

    section = dict(yaml.safe_load((REPO / "conf" / f"{model}.yaml").read_text())[model])
    config = {**section, "n_items": n_items, "max_len": 200}
    torch.manual_seed(0)
    net = build_model(model, config, "cpu")
    checkpoint.save_best(path, model, config, net, 0, {}, {})


def realtime_bodies(movies: np.ndarray, model: str, history: int, batch: int, n: int = 500,
                    seed: int = 0) -> tuple[list[bytes], list[bytes]]:
    """n single-form bodies (one random history of `history` distinct movies, increasing timestamps) and n // 10
    batch-form bodies of `batch` such histories."""
    rng = np.random.default_rng(seed)

    def one() -> dict:
        stamps = 1_500_000_000 + np.cumsum(rng.integers(1, 86_400 * 30, history))
        return {"history": rng.choice(movies, history, replace=False).tolist(), "timestamps": stamps.tolist()}

    single = [json.dumps({"model": model, "k": 10, **one()}).encode() for _ in range(n)]
    batched = [json.dumps({"model": model, "k": 10, "requests": [one() for _ in range(batch)]}).encode()
               for _ in range(max(1, n // 10))]
    return single, batched


def in_process(warehouse: Path, model: str, bodies: list[bytes], threads: int, rounds: int = 300) -> dict:
    """The same forward without HTTP: recsys_torch.realtime.LiveModel.top_k on one history, ms per call (wall and
    CPU time)."""
    import torch

    from recsys_torch.realtime import LiveModel, Query

    torch.set_num_threads(threads)
    live = LiveModel.load(warehouse, model)
    queries = []
    for body in bodies[:rounds]:
        request = json.loads(body)
        idx = live.indices(np.asarray(request["history"]))
        queries.append(Query(idx, np.asarray(request["timestamps"]), None, idx))
    for q in queries[:20]:
        live.top_k([q], 10)
    lat, cpu = [], []
    for q in queries:
        started, started_cpu = time.perf_counter(), time.thread_time()
        live.top_k([q], 10)
        lat.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    # CPU time of the calling thread (one torch thread): what a call costs on a core of its own, whatever the
    # machine's load does to the wall time
    return {**{f"p{p}_ms": round(float(np.percentile(lat, p)), 2) for p in (50, 95, 99)},
            **{f"cpu_p{p}_ms": round(float(np.percentile(cpu, p)), 2) for p in (50, 99)}}


def realtime_main(args) -> int:
    build_realtime_warehouse(args)
    warehouse = Path(args.rt_warehouse)
    movies = np.asarray(pq_movie_ids(warehouse))
    before = os.getloadavg()
    server, ready_s = start_server(warehouse, args.port, 0, ("--torch-threads", str(args.torch_threads)))
    results = {"machine": machine(), "load_average_before": [round(x, 2) for x in before],
               "torch_threads": args.torch_threads, "history": args.rt_history, "batch": args.rt_batch}
    try:
        for model in RT_MODELS:
            single, batched = realtime_bodies(movies, model, args.rt_history, args.rt_batch)
            path = [b"/recommendations"]
            asyncio.run(Load(args.port, path, 3, 300, 1, single).run())  # warm-up: loads the checkpoint
            figures = {
                "single_1_connection": asyncio.run(Load(args.port, path, args.duration, args.max_requests, 1,
                                                        single).run()),
                "single_2_connections": asyncio.run(Load(args.port, path, args.duration, args.max_requests, 2,
                                                         single).run()),
                "batch_1_connection": asyncio.run(Load(args.port, [b"/recommendations/batch"], args.duration,
                                                       args.max_requests, 1, batched).run()),
            }
            figures["batch_1_connection"]["histories_per_s"] = figures["batch_1_connection"]["rps"] * args.rt_batch
            figures["in_process_forward"] = in_process(warehouse, model, single, args.torch_threads)
            results[model] = figures
            print(model, json.dumps(figures), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=1))
    for model in RT_MODELS:
        for name, f in results[model].items():
            print(f"{model} {name}: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms"
                  + (f", {f['rps']:,} req/s, {f['errors']} errors" if "rps" in f else ""))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO / ".bench" / "ml25m"), help="generated CSVs (made when missing)")
    p.add_argument("--warehouse", default=str(REPO / ".bench" / "serve25m"), help="made when missing")
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--ratings", type=int, default=25_000_095)
    p.add_argument("--models", default="popularity,markov,als,sasrec")
    p.add_argument("--port", type=int, default=8765)
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
    p.add_argument("--realtime", action="store_true", help="measure POST /recommendations instead (see above)")
    p.add_argument("--rt-data", default=str(REPO / ".bench" / "rt59k"))
    p.add_argument("--rt-warehouse", default=str(REPO / ".bench" / "serve_rt59k"))
    p.add_argument("--rt-users", type=int, default=3_000)
    p.add_argument("--rt-ratings", type=int, default=300_000)
    p.add_argument("--rt-history", type=int, default=50, help="movies in each posted history")
    p.add_argument("--rt-batch", type=int, default=32, help="histories in each batch request")
    p.add_argument("--torch-threads", type=int, default=1, help="the server's --torch-threads")
    args = p.parse_args(argv)
    args.models = args.models.split(",")
    print(machine())
    if args.realtime:
        return realtime_main(args)
    warehouse = Path(args.warehouse)
    if args.nightly:
        served = served_models(warehouse)
        args.models = sorted(served, key=lambda m: (catalogue.find(m).family is catalogue.TORCH, m))
        args.no_reload = True  # the reload phase commits and deletes a run date: not in a nightly's warehouse
        print(f"the nightly's warehouse {warehouse}: {len(args.models)} models served, "
              f"lists of {sorted(str(d) for d in set(served.values()))}")
    else:
        build_warehouse(args)
    users, movies = warehouse_ids(warehouse)
    if not args.nightly:
        remove_new_run_date(warehouse, args.models[0])  # a previous run's hot-reload date
    readers = None if args.no_readers else compare_readers(warehouse, args.models[0], users,
                                                           served[args.models[0]] if args.nightly else RUN_DATE)
    if readers:
        print(f"readers: {json.dumps(readers)}")

    server, ready_s = start_server(warehouse, args.port, args.reload_interval)
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
    print(json.dumps({"readers": readers, "ready_s": round(ready_s, 1), "recommendations": main_load,
                      "similar": similar,
                      "rss_gb": round(rss_now, 2), "rss_peak_gb": round(rss_peak, 2), "hot_reload": reload,
                      "rss_after_reload_gb": round(rss_after, 2), "rss_peak_after_reload_gb": round(rss_peak_after, 2)},
                     indent=1))
    print(f"\nrecommendations: {main_load['rps']:,} req/s, p50 {main_load['p50_ms']} ms, p99 {main_load['p99_ms']} ms, "
          f"{main_load['errors']} errors ({main_load['requests']:,} requests, {args.connections} connections)")
    print(f"similar ({args.models[-1]}): {similar['rps']:,} req/s, p50 {similar['p50_ms']} ms, "
          f"p99 {similar['p99_ms']} ms")
    print(f"start-up (ready to serve): {ready_s:.1f} s; server RSS {rss_now:.2f} GB (peak {rss_peak:.2f} GB)")
    if reload:
        print(f"hot reload under load: new run date served {reload['served_after_s']} s after its commit; "
              f"{reload['rps']:,} req/s, p99 {reload['p99_ms']} ms, {reload['errors']} errors; "
              f"RSS after {rss_after:.2f} GB (peak {rss_peak_after:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
