"""An honest `recsys serve`, through the real app (FastAPI TestClient, lifespan and reload thread) over copies of the
serving warehouse (tests/serve_warehouse.py) broken the ways a nightly or an operator breaks one: /health says what
is served and the last reload error (503 when nothing can be), a `_delta_log` without a commit is no table, only
trusted Host headers are answered, and a NULL or ragged vector, a gone run date or a NaN score is a 4xx or left
out, never a 500 or a NaN."""
from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from serve_warehouse import EARLIER, LATEST

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]


def copy(served_warehouse, tmp_path: Path) -> Path:
    warehouse = tmp_path / "warehouse"
    shutil.copytree(served_warehouse["warehouse"], warehouse)
    return warehouse


def client_of(warehouse: Path, **kwargs):
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    return TestClient(create_app(warehouse, **{"reload_interval": 0, **kwargs}))


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def data_files(table: Path, **partition) -> list[Path]:
    filters = [(k, "=", v) for k, v in partition.items()] or None
    return [Path(u.removeprefix("file://")) for u in deltalake.DeltaTable(str(table)).file_uris(filters)]


def test_nothing_to_serve_is_a_503_naming_why_until_a_reload_succeeds(served_warehouse, tmp_path):
    warehouse = copy(served_warehouse, tmp_path)
    aside = tmp_path / "aside"
    aside.mkdir()
    files = data_files(warehouse / "users")
    for f in files:
        f.rename(aside / f.name)
    with client_of(warehouse, reload_interval=0.2) as client:
        detail = one_line_error(client.get("/health"), 503)
        assert detail.startswith("nothing to serve yet: ") and "users" in detail
        assert one_line_error(client.get("/models"), 503) == detail
        one_line_error(client.get("/users/1/recommendations", params={"model": "als"}), 503)
        for f in files:
            (aside / f.name).rename(f)
        wait_for(lambda: client.get("/health").status_code == 200)
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["run_date"] == LATEST.isoformat()
        assert "users" in health["last_error"] and health["last_error_at"] <= health["checked_at"]
        assert client.get("/users/1/recommendations", params={"model": "als"}).status_code == 200


def test_a_failed_reload_keeps_the_snapshot_and_health_says_so(served_warehouse, tmp_path):
    warehouse = copy(served_warehouse, tmp_path)
    users = warehouse / "users"
    with client_of(warehouse, reload_interval=0.2) as client:
        before = client.get("/health").json()
        assert before["status"] == "ok" and before["last_error"] is None
        listed = client.get("/users/1/recommendations", params={"model": "markov"}).json()
        # a new commit of users whose file is then lost: every reload of it fails
        old_files = set(data_files(users))
        deltalake.write_deltalake(str(users), deltalake.DeltaTable(str(users)).to_pyarrow_table(), mode="overwrite")
        for f in set(data_files(users)) - old_files:
            f.unlink()
        wait_for(lambda: client.get("/health").json()["status"] == "stale")
        stale = client.get("/health").json()
        assert stale["last_error"] and "\n" not in stale["last_error"] and stale["reloads"] == 0
        assert stale["versions"] == before["versions"] and stale["run_date"] == LATEST.isoformat()
        assert client.get("/users/1/recommendations", params={"model": "markov"}).json() == listed
        # the next good commit is served
        rows = pa.Table.from_pylist(served_users(served_warehouse))
        deltalake.write_deltalake(str(users), rows, mode="overwrite", schema_mode="overwrite")
        wait_for(lambda: client.get("/health").json()["status"] == "ok")
        health = client.get("/health").json()
        assert health["reloads"] == 1 and health["last_error"] == stale["last_error"]
        assert health["versions"]["users"] == before["versions"]["users"] + 2


def served_users(served_warehouse) -> list[dict]:
    from recsys_spark.delta import read_arrow

    return read_arrow(served_warehouse["warehouse"] / "users").to_pylist()


def test_a_delta_log_without_a_commit_is_no_table(served_warehouse, tmp_path):
    """A first write killed before its commit leaves `_delta_log/` with nothing in it: the server starts (and
    reloads) as if the table did not exist yet, instead of failing every start and every refresh."""
    warehouse = copy(served_warehouse, tmp_path)
    shutil.rmtree(warehouse / "metrics")
    (warehouse / "metrics" / "_delta_log").mkdir(parents=True)
    (warehouse / "als2_item_factors" / "_delta_log").mkdir(parents=True)
    with client_of(warehouse, reload_interval=0.2) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["versions"]["metrics"] is None
        assert "als2_item_factors" not in health["versions"]
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["als"]["metrics"] == [] and models["als"]["run_date"] == LATEST.isoformat()
        time.sleep(0.5)  # reloads over the empty log do not fail
        assert client.get("/health").json()["last_error"] is None


@pytest.mark.parametrize("host, status", [("testserver", 200), ("localhost:8000", 200), ("127.0.0.1", 200),
                                          ("[::1]:8000", 200), ("evil.example", 400), ("127.0.0.1.evil.example", 400)])
def test_only_trusted_host_headers_are_answered(served_warehouse, host, status):
    with client_of(served_warehouse["warehouse"]) as client:
        response = client.get("/users/1/recommendations", params={"model": "als"}, headers={"host": host})
        assert response.status_code == status, response.text


def test_allowed_hosts_replace_the_loopback_names(served_warehouse):
    with client_of(served_warehouse["warehouse"], allowed_hosts=["recsys.internal", "*.example.com"]) as client:
        assert client.get("/health", headers={"host": "recsys.internal:8000"}).status_code == 200
        assert client.get("/health", headers={"host": "api.example.com"}).status_code == 200
        assert client.get("/health", headers={"host": "localhost"}).status_code == 400


def test_the_allowed_hosts_flag(tmp_path, python):
    from conftest import REPO
    from jobs.serve import allowed_hosts, build_parser

    def hosts(*argv):
        return allowed_hosts(build_parser().parse_args(["--warehouse", "w", *argv]))

    assert hosts() == ["localhost", "127.0.0.1", "::1", "testserver"]
    assert hosts("--host", "10.0.0.5") == ["localhost", "127.0.0.1", "::1", "testserver", "10.0.0.5"]
    assert hosts("--host", "0.0.0.0") == ["localhost", "127.0.0.1", "::1", "testserver"]
    assert hosts("--allowed-hosts", "recsys.internal, 10.0.0.5") == ["recsys.internal", "10.0.0.5"]
    (tmp_path / "empty").mkdir()
    done = subprocess.run([python, "-m", "jobs.cli", "serve", "--warehouse", str(tmp_path / "empty"),
                           "--allowed-hosts", "a*b"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--allowed-hosts: 'a*b'" in done.stderr


def test_null_ragged_or_nan_vectors_are_left_out_not_a_500(served_warehouse, tmp_path):
    warehouse = copy(served_warehouse, tmp_path)
    path = warehouse / "als_item_factors"
    factors = deltalake.DeltaTable(str(path)).to_pyarrow_table()
    ids = factors["movieId"].to_pylist()
    broken = {ids[0]: None, ids[1]: [1.0, 2.0], ids[2]: [math.nan] * len(factors["features"][3].as_py())}
    features = [broken.get(m, f) for m, f in zip(ids, factors["features"].to_pylist())]
    factors = factors.set_column(factors.schema.get_field_index("features"), "features",
                                 pa.array(features, factors.schema.field("features").type))
    deltalake.write_deltalake(str(path), factors, mode="overwrite")
    with client_of(warehouse) as client:
        for movie in broken:
            detail = one_line_error(client.get(f"/items/{movie}/similar", params={"model": "als"}), 404)
            assert f"movie {movie} has no vector" in detail
        body = client.get(f"/items/{ids[5]}/similar", params={"model": "als", "k": 100})
        assert body.status_code == 200
        got = [m["movieId"] for m in body.json()["items"]]
        assert len(got) == 100 and not set(got) & set(broken)
        assert all(math.isfinite(m["similarity"]) for m in body.json()["items"])


def test_an_older_run_date_whose_files_are_gone_is_a_404(served_warehouse, tmp_path):
    warehouse = copy(served_warehouse, tmp_path)
    with client_of(warehouse) as client:
        for f in data_files(warehouse / "recommendations", model="popularity", run_date=EARLIER.isoformat()):
            f.unlink()
        detail = one_line_error(client.get("/users/5/recommendations",
                                           params={"model": "popularity", "run_date": EARLIER.isoformat()}), 404)
        assert detail == f"model 'popularity''s run on {EARLIER.isoformat()} is gone: its files were removed from " \
                         f"the warehouse"
        assert client.get("/users/5/recommendations", params={"model": "popularity"}).status_code == 200


def test_non_finite_scores_are_never_served(served_warehouse, tmp_path):
    """A run whose rows for user 1 at ranks 1 and 3 score NaN and +inf: those rows are not served (the list keeps
    its order, renumbered), and no response carries a NaN or a null score."""
    from recsys_spark.delta import read_arrow
    from recsys_torch.tables import write_recommendations

    warehouse = copy(served_warehouse, tmp_path)
    new_day = LATEST + dt.timedelta(days=1)
    rows = read_arrow(warehouse / "recommendations")
    rows = rows.filter(pc.and_(pc.equal(rows["model"], "markov"), pc.equal(rows["run_date"].cast(pa.string()),
                                                                           LATEST.isoformat())))
    user1 = sorted((r for r in rows.to_pylist() if r["userId"] == 1), key=lambda r: r["rank"])
    bad = {user1[0]["movieId"]: math.nan, user1[2]["movieId"]: math.inf}
    scores = [bad.get(m, s) if u == 1 else s for u, m, s in zip(rows["userId"].to_pylist(),
                                                                  rows["movieId"].to_pylist(),
                                                                  rows["score"].to_pylist())]
    rows = rows.set_column(rows.schema.get_field_index("score"), "score", pa.array(scores, pa.float64()))
    rows = rows.set_column(rows.schema.get_field_index("run_date"), "run_date",
                           pa.array([new_day] * len(rows), pa.date32()))
    write_recommendations(warehouse, rows, "markov", new_day)
    with client_of(warehouse) as client:
        response = client.get("/users/1/recommendations", params={"model": "markov", "k": 100})
        assert response.status_code == 200 and "NaN" not in response.text and "Infinity" not in response.text
        body = response.json()
        assert body["run_date"] == new_day.isoformat()
        assert [m["movieId"] for m in body["items"]] == [r["movieId"] for r in user1 if r["movieId"] not in bad]
        assert [m["rank"] for m in body["items"]] == list(range(1, len(user1) - 1))
        assert all(isinstance(m["score"], float) and math.isfinite(m["score"]) for m in body["items"])
        other = client.get("/users/2/recommendations", params={"model": "markov", "k": 100}).json()
        assert len(other["items"]) == len([r for r in rows.to_pylist() if r["userId"] == 2])
        json.dumps(body, allow_nan=False)
