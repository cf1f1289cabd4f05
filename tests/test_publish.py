"""Publish, not just write: `recsys publish` (the nightly's last step) gates each model and commits one `runs` row;
the server follows that row, never a half-written night. On a small warehouse written with the project's own Delta
writer (no Spark: the lists are made here, so their quality is known)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_spark import schemas
from recsys_spark.delta import write_arrow

REPO = Path(__file__).resolve().parent.parent
D1, D2, D3 = dt.date(2030, 3, 1), dt.date(2030, 3, 2), dt.date(2030, 3, 3)
N_USERS, N_ITEMS = 300, 40
MODELS = ["pipeline.spark_models=[popularity,markov]", "pipeline.torch_models=[]"]


def held_out_item(user: int) -> int:
    return 1 + user % N_ITEMS


def write_etl(warehouse: Path, n_users: int = N_USERS) -> None:
    """users 1..n, each with two train ratings and one test rating (movie held_out_item(user))."""
    rows = []
    for user in range(1, n_users + 1):
        for seq, (movie, split) in enumerate([(1 + (user + 7) % N_ITEMS, "train"), (1 + (user + 13) % N_ITEMS, "train"),
                                              (held_out_item(user), "test")], start=1):
            rows.append({"userId": user, "movieId": movie, "rating": 4.0, "timestamp": 1000 * user + seq,
                         "user_idx": user - 1, "item_idx": movie - 1, "seq": seq, "split": split,
                         "temporal_split": split})
    write_arrow(pa.Table.from_pylist(rows, schema=schemas.INTERACTIONS), warehouse / "interactions")
    write_arrow(pa.Table.from_pylist([{"userId": u, "user_idx": u - 1, "n_interactions": 3}
                                      for u in range(1, n_users + 1)], schema=schemas.USERS), warehouse / "users")
    write_arrow(pa.Table.from_pylist([{"movieId": m, "item_idx": m - 1, "title": f"Movie {m} (2000)", "year": 2000,
                                       "genres": ["Drama"], "imdbId": None, "tmdbId": None}
                                      for m in range(1, N_ITEMS + 1)], schema=schemas.ITEMS), warehouse / "items")


def write_lists(warehouse: Path, model: str, run_date: dt.date, hit_rank: int | None, k: int = 10) -> None:
    """Every user's top-k of `model`: the test item at `hit_rank` (None: not in the list)."""
    rows = []
    for user in range(1, N_USERS + 1):
        others = [m for m in range(1, N_ITEMS + 1) if m != held_out_item(user)][:k]
        items = others[:hit_rank - 1] + [held_out_item(user)] + others[hit_rank - 1:k - 1] if hit_rank else others
        rows += [{"model": model, "run_id": f"{model}-{run_date}", "run_date": run_date, "userId": user,
                  "rank": rank, "movieId": movie, "score": float(k - rank)} for rank, movie in enumerate(items, 1)]
    write_arrow(pa.Table.from_pylist(rows, schema=schemas.RECOMMENDATIONS), warehouse / "recommendations",
                partition_by=["model", "run_date"], replace={"model": model, "run_date": run_date})


def recsys_publish(warehouse: Path, run_date: dt.date, *overrides: str) -> subprocess.CompletedProcess:
    # As the nightly runs the step: its script, which ends with os._exit (delta-rs/Arrow threads can abort a normal exit)
    proc = subprocess.run([sys.executable, "jobs/publish.py", "--warehouse", str(warehouse),
                           "--run-date", run_date.isoformat(), *MODELS, *overrides], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("publish") / "wh"
    root.mkdir()
    write_etl(root)
    return root


def test_a_drop_beyond_the_interval_is_held_back_and_its_last_list_stays_served(warehouse):
    import deltalake

    from recsys_core.published import latest_published

    write_lists(warehouse, "popularity", D1, hit_rank=1)
    write_lists(warehouse, "markov", D1, hit_rank=3)
    first = recsys_publish(warehouse, D1)
    assert "first published list" in first.stdout
    run1 = latest_published(warehouse)
    assert run1.run_date == D1 and {m.model: m.published for m in run1.models} == {"popularity": True,
                                                                                   "markov": True}
    assert run1.tables["recommendations"] == deltalake.DeltaTable(str(warehouse / "recommendations")).version()
    assert run1.model("popularity").ndcg_at_10 == pytest.approx(1.0)

    write_lists(warehouse, "popularity", D2, hit_rank=None)  # a broken night: no hit at all
    write_lists(warehouse, "markov", D2, hit_rank=2)          # better than its last list
    second = recsys_publish(warehouse, D2)
    run2 = latest_published(warehouse)
    popularity, markov = run2.model("popularity"), run2.model("markov")
    assert not popularity.published and popularity.ndcg_at_10 == 0.0
    assert (popularity.run_date, popularity.recommendations_version) == (D1, run1.tables["recommendations"])
    assert popularity.reason.startswith("held back: NDCG@10 0.0000 fell below the last published 1.0000")
    assert "HELD BACK  popularity" in second.stdout
    assert markov.published and (markov.run_date, markov.recommendations_version) == (
        D2, run2.tables["recommendations"])
    assert "paired difference +0.1309" in markov.reason  # 1/log2(3) - 1/log2(4): rank 2 tonight, 3 before
    assert run2.version == run1.version + 1  # one commit per published night

    # The gate measures against the list being served (D1's), and can be turned off in conf.
    write_lists(warehouse, "popularity", D3, hit_rank=2)
    write_lists(warehouse, "markov", D3, hit_rank=2)
    recsys_publish(warehouse, D3, "publish.interval_gate=false")
    run3 = latest_published(warehouse)
    assert run3.model("popularity").published and "interval gate off" in run3.model("popularity").reason
    assert "last published 1.0000 (2030-03-01)" in run3.model("popularity").reason


def test_the_runs_table_is_written_as_declared(warehouse):
    import deltalake

    if not (warehouse / "runs").is_dir():
        recsys_publish(warehouse, D1)
    written = deltalake.DeltaTable(str(warehouse / "runs")).to_pyarrow_table().schema
    assert written.names == schemas.RUNS.names
    for got, declared in zip(written, schemas.RUNS):  # a list's item name differs between writers, not its type
        assert (got.type.value_type if pa.types.is_list(got.type) else got.type) == \
            (declared.type.value_type if pa.types.is_list(declared.type) else declared.type), got.name


def test_a_failed_step_from_the_run_log_is_not_published(tmp_path):
    """What the pipeline's run log says failed (jobs/publish.failed_models) holds a model back without reading it."""
    import json

    from jobs.plan import PipelineConfig
    from jobs.publish import failed_models

    log = tmp_path / "_pipeline" / D1.isoformat() / "run.jsonl"
    log.parent.mkdir(parents=True)
    lines = [{"run_started": "a", "step": "baselines", "status": "failed", "blocked_by": None},
             {"run_started": "b", "step": "train-sasrec", "status": "failed", "blocked_by": None},
             {"run_started": "b", "step": "topn-sasrec", "status": "not run", "blocked_by": "train-sasrec"},
             {"run_started": "b", "step": "baselines", "status": "ran", "blocked_by": None}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    pipe = PipelineConfig(spark_models=("popularity",), torch_models=("sasrec",))
    assert failed_models(tmp_path, D1, pipe) == {"sasrec": "its step train-sasrec failed"}


def test_the_server_reads_only_published_snapshots(tmp_path):
    """A night that writes new versions of the tables without publishing them changes nothing served; its publish
    switches the server to the new snapshot at once: never one that mixes two runs."""
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app
    from recsys_serve.reader import Warehouse
    from recsys_serve.store import Store

    root = tmp_path / "wh"
    root.mkdir()
    write_etl(root, n_users=N_USERS)
    write_lists(root, "popularity", D1, hit_rank=1)
    write_lists(root, "markov", D1, hit_rank=1)
    recsys_publish(root, D1)
    store = Store(Warehouse(root))
    first = store.load()
    assert len(first.histories.user_ids) == N_USERS and set(first.latest) == {"popularity", "markov"}

    # Tonight's ETL and one model's list land, commit by commit; nothing is published yet.
    write_etl(root, n_users=N_USERS - 50)
    write_lists(root, "popularity", D2, hit_rank=1)  # as good as D1's: published
    write_lists(root, "als", D2, hit_rank=1)  # a model not in the plan: written, never published, never served
    assert store.refresh() is False
    snap = store.snapshot
    assert snap is first and len(snap.histories.user_ids) == N_USERS
    assert {m: lists.run_date for m, lists in snap.latest.items()} == {"popularity": D1, "markov": D1}
    pinned = store.warehouse.at(snap.versions)  # what the snapshot reads: the published versions
    assert int(pinned.query("SELECT count(*) AS n FROM {u}", u="users")["n"][0]) == N_USERS

    recsys_publish(root, D2)  # markov has no list for D2: not published, D1's stays served
    assert store.refresh() is True
    snap = store.snapshot
    assert len(snap.histories.user_ids) == N_USERS - 50
    assert {m: lists.run_date for m, lists in snap.latest.items()} == {"popularity": D2, "markov": D1}
    store.warehouse.close()
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from serve_load import served_models  # what the serving benchmark loads in --nightly mode: the same lists
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert served_models(root) == {"popularity": D2, "markov": D1}

    with TestClient(create_app(root, reload_interval=0)) as client:
        health = client.get("/health").json()
        assert health["published_run"]["run_date"] == D2.isoformat()
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["markov"]["run_date"] == D1.isoformat() and not models["markov"]["published"]
        assert models["markov"]["reason"].startswith(f"not published: no list for {D2}")
        assert models["popularity"]["published"] and models["popularity"]["published_run_id"] == \
            health["published_run"]["run_id"]
        page = client.get("/users/1/recommendations", params={"model": "markov", "k": 3}).json()
        assert page["run_date"] == D1.isoformat() and page["held_out_rank"] == 1
