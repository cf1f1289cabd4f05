"""Real-time lists (POST /recommendations) through the real app (FastAPI TestClient, lifespan and all) over a copy of
conftest's small warehouse: its trained SASRec and a seeded SS4Rec listed by the real `recsys topn` step, and the
count baselines by the real `recsys baselines` step. A history posted now must give the list the nightly step
wrote for it, items and scores; bad input is a one-line 4xx naming the field; a checkpoint replaced while requests
run is picked up without a failed request."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]

RUN_DATE = dt.date(2030, 3, 1)
K = 20
COUNT_MODELS = ("popularity", "markov", "ar2", "itemcf")


def table(warehouse, name, **equal):
    from recsys_spark.delta import read_arrow

    rows = read_arrow(warehouse / name)
    for column, value in equal.items():
        rows = rows.filter(pc.equal(rows[column], pa.scalar(value, rows.schema.field(column).type)))
    return rows.to_pandas()


def seeded_checkpoint(warehouse, model: str, seed: int, name: str = "best.pt") -> None:
    """A model of the shards' sizes with its seeded initial weights, saved as `recsys train` saves best.pt."""
    import torch

    from recsys_torch import checkpoint
    from recsys_torch.shards import read_meta
    from recsys_torch.models import build_model, config_from_meta

    meta = read_meta(warehouse / "sequences")
    config = config_from_meta(model, {"hidden": 16, "n_layers": 1}, meta)
    torch.manual_seed(seed)
    net = build_model(model, config, "cpu")
    checkpoint.save_best(warehouse / "models" / model / name, model, config, net, 0, {}, meta)


@pytest.fixture(scope="module")
def warehouse(small_warehouse, spark, tmp_path_factory):
    from recsys_spark.baselines import BaselinesConfig, run_baselines
    from recsys_torch.infer import topn

    root = tmp_path_factory.mktemp("realtime") / "warehouse"
    shutil.copytree(small_warehouse, root)
    seeded_checkpoint(root, "ss4rec", seed=3)
    for model in ("sasrec", "ss4rec"):
        topn(root, model, k=K, run_date=RUN_DATE, device="cpu")
    run_baselines(spark, root, k=K, run_date=RUN_DATE, config=BaselinesConfig(models=COUNT_MODELS))
    return root


@pytest.fixture(scope="module")
def client(warehouse):
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    with TestClient(create_app(warehouse, reload_interval=0)) as c:
        yield c


def stored(warehouse, model: str) -> dict[int, tuple[list[int], list[float]]]:
    rows = table(warehouse, "recommendations", model=model, run_date=RUN_DATE).sort_values(["userId", "rank"])
    return {int(u): (g.movieId.tolist(), g.score.tolist()) for u, g in rows.groupby("userId")}


def user_history(warehouse, user: int) -> tuple[list[int], list[int]]:
    rows = table(warehouse, "interactions", userId=user)
    rows = rows[rows.split.isin(["train", "validation"])].sort_values("seq")
    return rows.movieId.tolist(), [int(t) for t in rows.timestamp]


def assert_same_list(body: dict, movies: list[int], scores: list[float]) -> None:
    assert [m["movieId"] for m in body["items"]] == movies
    assert [m["score"] for m in body["items"]] == pytest.approx(scores, rel=1e-4, abs=1e-5)
    assert [m["rank"] for m in body["items"]] == list(range(1, len(movies) + 1))


@pytest.mark.parametrize("model", ["sasrec", "ss4rec"])
def test_a_posted_history_gets_the_list_topn_wrote(client, warehouse, model):
    """Every test user at once (the batch form, one forward): the user's stored history gives the stored list. Then
    one user's last max_len items posted as movieIds with their timestamps (the single form): the same scores, and
    the list minus the older history items the step also excluded is the stored list."""
    lists = stored(warehouse, model)
    users = sorted(lists)
    body = client.post("/recommendations/batch", json={
        "model": model, "k": K, "requests": [{"userId": u} for u in users]})
    assert body.status_code == 200, body.text
    for user, answer in zip(users, body.json()["lists"]):
        assert answer["userId"] == user and answer["source"] == f"models/{model}/best.pt"
        assert_same_list(answer, *lists[user])

    long_user = min((u for u in users if len(user_history(warehouse, u)[0]) > 25),
                    key=lambda u: len(user_history(warehouse, u)[0]))
    movies, stamps = user_history(warehouse, long_user)
    one = client.post("/recommendations", json={"model": model, "history": movies[-20:], "timestamps": stamps[-20:],
                                                 "k": 100})
    assert one.status_code == 200, one.text
    answer = one.json()
    assert answer["history_len"] == 20 and answer["used"] == 20 and answer["userId"] is None
    older = set(movies[:-20])
    kept = [m for m in answer["items"] if m["movieId"] not in older][:K]
    assert len(kept) >= 10
    assert [m["movieId"] for m in kept] == lists[long_user][0][:len(kept)]
    assert [m["score"] for m in kept] == pytest.approx(lists[long_user][1][:len(kept)], rel=1e-4, abs=1e-5)
    assert not set(movies[-20:]) & {m["movieId"] for m in answer["items"]}


@pytest.mark.parametrize("model", COUNT_MODELS)
def test_a_count_model_answers_from_its_tables_as_the_baselines_step(client, warehouse, model):
    lists = stored(warehouse, model)
    users = sorted(lists)[:15]
    body = client.post("/recommendations/batch", json={"model": model, "k": K,
                                                       "requests": [{"userId": u} for u in users]})
    assert body.status_code == 200, body.text
    for user, answer in zip(users, body.json()["lists"]):
        assert_same_list(answer, *lists[user])
    # A new visitor: the movieIds only, the model reads the newest ones.
    movies, _ = user_history(warehouse, users[0])
    fresh = client.post("/recommendations", json={"model": model, "history": movies[-3:], "k": 5}).json()
    assert len(fresh["items"]) == 5 and not set(movies[-3:]) & {m["movieId"] for m in fresh["items"]}


def one_line(response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def test_bad_input_is_a_4xx_naming_the_field(client, warehouse):
    movies, stamps = user_history(warehouse, sorted(stored(warehouse, "sasrec"))[0])
    post = lambda **body: client.post("/recommendations", json={"model": "sasrec", "history": movies[:3], **body})  # noqa: E731
    assert "model: unknown model 'nope'" in one_line(post(model="nope"), 422)
    assert "'als' cannot score a new history" in one_line(post(model="als"), 422)
    assert "history: unknown movieId(s) 99999991, 99999992" in one_line(
        post(history=[movies[0], 99999991, 99999992, 99999991]), 422)
    assert one_line(post(history=[]), 422).startswith("history: empty")
    too_long = one_line(post(history=(movies * 3)[:21]), 422)
    assert "history: 21 items" in too_long and "max_len 20" in too_long
    assert one_line(post(timestamps=stamps[:2]), 422).startswith("timestamps: 2 values for 3 history items")
    assert one_line(post(timestamps=[3, 2, 5]), 422).startswith("timestamps[1]: not non-decreasing")
    assert one_line(post(timestamps=[1, "soon", 3]), 422).startswith("body.timestamps.1:")
    assert one_line(post(history=[movies[0], "x"]), 422).startswith("body.history.1:")
    assert one_line(post(query_timestamp=0, timestamps=[5, 6, 7]), 422).startswith("query_timestamp:")
    assert one_line(post(k=0), 422).startswith("body.k:") and one_line(post(k=101), 422).startswith("body.k:")
    assert one_line(post(histroy=[1]), 422).startswith("body.histroy:")
    assert one_line(post(userId=10**9), 404).startswith("userId: unknown user")
    batch = client.post("/recommendations/batch", json={"model": "markov", "requests": [
        {"history": movies[:2]}, {"history": [99999991]}]})
    assert one_line(batch, 422).startswith("requests[1].history: unknown movieId(s) 99999991")
    assert one_line(client.post("/recommendations/batch", json={"model": "markov", "requests": []}), 422) \
        .startswith("body.requests:")


def test_a_published_checkpoint_is_swapped_in_without_a_failed_request(warehouse, tmp_path):
    """A copy of the warehouse served with a check at every request; a thread posts one history over and over while
    published.pt appears (written as `recsys publish` would, atomically) and then is replaced by a half-written
    file: the list moves to the new model, the broken file is never served, no request fails."""
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    root = tmp_path / "warehouse"
    shutil.copytree(warehouse, root)
    movies, stamps = user_history(root, sorted(stored(root, "sasrec"))[0])
    request = {"model": "sasrec", "history": movies[-10:], "timestamps": stamps[-10:], "k": 10}
    answers, failures, stop = [], [], threading.Event()

    with TestClient(create_app(root, reload_interval=0, checkpoint_interval=0)) as client:
        before = client.post("/recommendations", json=request).json()

        def hammer():
            while not stop.is_set():
                response = client.post("/recommendations", json=request)
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    answers.append(response.json())

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            time.sleep(0.3)
            seeded_checkpoint(root, "sasrec", seed=11, name="published.pt")
            deadline = time.monotonic() + 30
            while not answers or answers[-1]["source"] != "models/sasrec/published.pt":
                assert time.monotonic() < deadline, "published.pt was never served"
                time.sleep(0.05)
            swapped = answers[-1]
            (root / "models" / "sasrec" / "published.pt").write_bytes(b"half a checkpoint")
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(timeout=30)
    assert failures == [] and len(answers) > 5
    assert swapped["items"] != before["items"] and before["source"] == "models/sasrec/best.pt"
    assert answers[-1]["items"] == swapped["items"]  # the broken file left the published model served


def test_real_time_itemcf_without_its_scoring_section_is_a_404_naming_the_file(warehouse, tmp_path):
    """The baselines step writes models/itemcf/config.json beside item_neighbors; a warehouse where it is missing or
    torn answers itemcf's real-time requests with one line naming the file (the other models still answer)."""
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    written = json.loads((warehouse / "models" / "itemcf" / "config.json").read_text())
    assert {"history", "recency_decay", "neighbors"} <= set(written)
    copy = Path(shutil.copytree(warehouse, tmp_path / "warehouse"))
    config = copy / "models" / "itemcf" / "config.json"
    history, _ = user_history(warehouse, sorted(stored(warehouse, "itemcf"))[0])
    for damage in (config.unlink, lambda: config.write_text('{"history": ')):
        damage()
        with TestClient(create_app(copy, reload_interval=0)) as c:
            ask = {"history": history[-3:], "k": 5}
            detail = one_line(c.post("/recommendations", json={"model": "itemcf", **ask}), 404)
            assert str(config) in detail and "recsys baselines" in detail
            assert c.post("/recommendations", json={"model": "markov", **ask}).status_code == 200
