"""`recsys serve`'s real-time lists (POST /recommendations) at 59,047 items: p50/p99 latency, req/s, CPU per call.

    .venv/bin/python benchmarks/serve_realtime.py --duration 10

A small generated warehouse with the full 59,047-movie catalogue (--users users, --ratings
ratings, through the real ETL and `recsys export-sequences`, its item map extended to every movie), and
SASRec and SS4Rec checkpoints of their default configs (conf/: hidden 64, 2 layers, max_len 200) at 59,047 items
with seeded initial weights: the work of a forward does not depend on the weights' values, so the latency is a
trained model's. `recsys serve` in its own process (--torch-threads), then for each model: one connection posting
one random history of --history movies with timestamps (the single form), then two connections, then the batch
form with --batch histories a request; and the same forward in-process without HTTP (where the time goes).
Goal: p99 <= 15 ms for one history of 50 items on 2 cores.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine  # noqa: E402
from _serve_bench import (RT_MODELS, RUN_DATE, Load, add_warehouse_args, generated_etl, run,  # noqa: E402
                          start_server, warehouse_ids, write_lists, written_partitions)

from recsys_core import catalogue  # noqa: E402


def build_realtime_warehouse(args) -> None:
    """Generated data with the full catalogue through the real ETL and `recsys export-sequences` (its item map then
    extended to every movie), a stored list (the server needs one table of lists) and seeded checkpoints of the
    default SASRec and SS4Rec at --items items."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, warehouse = Path(args.data), Path(args.warehouse)
    generated_etl(data, warehouse, args.users, args.items, args.ratings)
    if not (warehouse / "sequences" / "meta.json").is_file():  # the shards' meta (the tie policy) and item map
        run([sys.executable, "-m", "jobs.cli", "export-sequences", "--warehouse", str(warehouse),
             "mlflow.enabled=false"], "export-sequences")
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


def measure(args) -> dict:
    build_realtime_warehouse(args)
    warehouse = Path(args.warehouse)
    movies = np.asarray(pq_movie_ids(warehouse))
    before = os.getloadavg()
    server, ready_s = start_server(warehouse, args.port, 0, ("--torch-threads", str(args.torch_threads)))
    results = {"machine": machine(), "load_average_before": [round(x, 2) for x in before],
               "torch_threads": args.torch_threads, "history": args.history, "batch": args.batch}
    try:
        for model in RT_MODELS:
            single, batched = realtime_bodies(movies, model, args.history, args.batch)
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
            figures["batch_1_connection"]["histories_per_s"] = figures["batch_1_connection"]["rps"] * args.batch
            figures["in_process_forward"] = in_process(warehouse, model, single, args.torch_threads)
            results[model] = figures
            print(model, json.dumps(figures), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_warehouse_args(p, "rt59k", "serve_rt59k", users=3_000, ratings=300_000)
    p.add_argument("--history", type=int, default=50, help="movies in each posted history")
    p.add_argument("--batch", type=int, default=32, help="histories in each batch request")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each load")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap on the requests of each load")
    p.add_argument("--torch-threads", type=int, default=1, help="the server's --torch-threads")
    args = p.parse_args(argv)
    print(machine())
    results = measure(args)
    print(json.dumps(results, indent=1))
    for model in RT_MODELS:
        for name, f in results[model].items():
            print(f"{model} {name}: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms"
                  + (f", {f['rps']:,} req/s, {f['errors']} errors" if "rps" in f else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
