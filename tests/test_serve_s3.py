"""`recsys serve --warehouse s3://…`: the real CLI in its own process over a copy of the serving warehouse on moto's S3
server (loopback) answers exactly what the app answers over the local copy, and picks up a commit made on S3."""
from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from moto_s3 import s3_settings, subprocess_env, upload
from servers import free_port, start_server
from serve_warehouse import LATEST, SERVED_MODELS

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]

REPO = Path(__file__).resolve().parent.parent
NEWER = LATEST + dt.timedelta(days=1)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def local(served_warehouse):
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    with TestClient(create_app(served_warehouse["warehouse"], reload_interval=0,
                               reports=served_warehouse["reports"])) as client:
        yield client


@pytest.fixture(scope="module")
def on_s3(served_warehouse, s3_env, tmp_path_factory):
    """`recsys serve` over the S3 copy, reloading every 0.5 s: (base URL, warehouse URI)."""
    uri = upload(s3_env, served_warehouse["warehouse"], "served-warehouse")
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("serve_s3") / "serve.log"
    server = start_server([sys.executable, "-m", "jobs.cli", "serve", "--warehouse", uri, "--reports",
                           str(served_warehouse["reports"]), "--port", str(port), "--reload-interval", "0.5"],
                          url, "/health", log, "recsys serve over S3", cwd=REPO, env=subprocess_env(s3_env))
    yield url, uri
    server.terminate()
    # uvicorn shuts down and re-raises SIGTERM (as over a local warehouse): stopped by it, not crashed in S3 clean-up
    assert server.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()[-3000:]


def test_the_s3_server_answers_what_the_local_one_does(local, on_s3):
    url, _ = on_s3
    status, health = get(url + "/health")
    assert status == 200 and health["status"] == "ok" and health["last_error"] is None
    expected = local.get("/health").json()
    for key in ("run_date", "committed_at", "models", "users", "movies", "versions"):
        assert health[key] == expected[key], key
    assert get(url + "/models") == (200, local.get("/models").json())
    assert get(url + "/users?prefix=1&limit=30") == (200, local.get("/users?prefix=1&limit=30").json())
    users = [u["userId"] for u in local.get("/users?limit=100").json()["users"]][::20]
    assert len(users) >= 4
    for model in SERVED_MODELS:
        for user in users:
            path = f"/users/{user}/recommendations?model={model}&k=20"
            assert get(url + path) == (200, local.get(path).json()), path
    path = "/users/1/recommendations?model=popularity&k=5&run_date=2030-01-01"  # an older run date: loaded on demand
    assert get(url + path) == (200, local.get(path).json())
    for model in ("als", "sasrec"):  # ALS item factors, the torch model's item_embeddings
        path = f"/items/1/similar?model={model}&k=10"
        assert get(url + path) == (200, local.get(path).json()), path
    missing = "/users/1/recommendations?model=popularity&run_date=2029-01-01"
    assert get(url + missing) == (404, local.get(missing).json())


def test_a_commit_on_s3_is_picked_up_by_the_running_server(served_warehouse, local, on_s3, s3_env):
    """markov's lists committed again on S3 under the next run date: the server reloads and serves them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from recsys_spark.delta import read_arrow, table_path, write_arrow
    from recsys_torch.schemas import RECOMMENDATIONS

    url, uri = on_s3
    rows = read_arrow(table_path(served_warehouse["warehouse"], "recommendations"))
    dates = pc.cast(pc.cast(rows["run_date"], pa.string()), pa.date32())  # a partition column comes back as text
    rows = rows.filter(pc.and_(pc.equal(rows["model"], "markov"), pc.equal(dates, pa.scalar(LATEST, pa.date32()))))
    rows = rows.set_column(rows.schema.get_field_index("run_date"), "run_date",
                           pa.array([NEWER] * len(rows), pa.date32()))
    before = get(url + "/health")[1]
    with s3_settings(s3_env):
        write_arrow(rows.select(RECOMMENDATIONS.names).cast(RECOMMENDATIONS), table_path(uri, "recommendations"),
                    partition_by=["model", "run_date"], replace={"model": "markov", "run_date": NEWER})
    deadline = time.monotonic() + 30
    while (health := get(url + "/health")[1])["reloads"] == before["reloads"]:
        assert time.monotonic() < deadline, f"no reload within 30 s: {health}"
        time.sleep(0.2)
    assert health["status"] == "ok" and health["run_date"] == NEWER.isoformat()
    assert health["versions"]["recommendations"] == before["versions"]["recommendations"] + 1
    served = get(url + "/users/1/recommendations?model=markov&k=20")[1]
    assert served["run_date"] == NEWER.isoformat()
    assert served["items"] == local.get("/users/1/recommendations?model=markov&k=20").json()["items"]
