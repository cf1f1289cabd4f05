"""What the serving benchmarks share (benchmarks/serve_load.py, benchmarks/serve_realtime.py): the run dates of
the lists they write, the writer of synthetic lists, `recsys serve` in its own process, and the bounded HTTP/1.1 load.
Traffic goes only to 127.0.0.1; every loop is bounded in count and time."""
from __future__ import annotations

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

from recsys_core import catalogue  # noqa: E402

HOST = "127.0.0.1"  # the only address these benchmarks send traffic to
RUN_DATE = dt.date(2030, 1, 1)
NEW_RUN_DATE = dt.date(2030, 1, 2)
RT_MODELS = tuple(m for m in catalogue.realtime_models() if catalogue.MODELS[m].family is catalogue.TORCH)


def run(cmd: list[str], what: str, env=None) -> None:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, env=env)
    print(f"{what}: {time.perf_counter() - started:.0f} s")


def add_warehouse_args(p, data: str, warehouse: str, users: int, ratings: int) -> None:
    """--data, --warehouse and the generated set's size (what generated_etl makes when missing), and --port."""
    p.add_argument("--data", default=str(REPO / ".bench" / data), help="generated CSVs (made when missing)")
    p.add_argument("--warehouse", default=str(REPO / ".bench" / warehouse), help="made when missing")
    p.add_argument("--users", type=int, default=users)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--ratings", type=int, default=ratings)
    p.add_argument("--port", type=int, default=8765, help="the server's port on 127.0.0.1")


def generated_etl(data: Path, warehouse: Path, users: int, items: int, ratings: int) -> None:
    """Generated MovieLens-shaped CSVs in `data` and their ETL tables in `warehouse`, each made when missing."""
    if not (data / "ratings.csv").exists():
        run([sys.executable, "-m", "jobs.cli", "generate", "--out", str(data), "--users", str(users), "--items",
             str(items), "--ratings", str(ratings), "--quiet"], "generate")
    if not (warehouse / "interactions" / "_delta_log").is_dir():
        run([sys.executable, "-m", "jobs.cli", "etl", "--data", str(data), "--warehouse", str(warehouse),
             "mlflow.enabled=false"], "etl", env={**os.environ, "RECSYS_DELTA_WRITER": "delta-rs"})


def written_partitions(warehouse: Path) -> set[tuple[str, str]]:
    import deltalake

    if not (warehouse / "recommendations" / "_delta_log").is_dir():
        return set()
    return {(p["model"], p["run_date"]) for p in deltalake.DeltaTable(str(warehouse / "recommendations")).partitions()}


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
