"""`recsys serve`'s API through the real app (FastAPI TestClient, lifespan and all) on the ml-latest-small serving
warehouse (tests/serve_warehouse.py): every answer is checked against the Delta tables it comes from."""
from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from serve_warehouse import EARLIER, K, LATEST, SERVED_MODELS

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]


def table(warehouse, name, **equal):
    from recsys_spark.delta import read_arrow

    rows = read_arrow(warehouse / name)
    if "run_date" in rows.column_names:  # a partition column comes back from the hive-style paths as text
        rows = rows.set_column(rows.schema.get_field_index("run_date"), "run_date",
                               rows["run_date"].cast(pa.string()).cast(pa.date32()))
    for column, value in equal.items():
        rows = rows.filter(pc.equal(rows[column], value))
    return rows.to_pandas()


@pytest.fixture(scope="module")
def served(served_warehouse):
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    app = create_app(served_warehouse["warehouse"], reload_interval=0, reports=served_warehouse["reports"])
    with TestClient(app) as client:
        yield client, served_warehouse["warehouse"]


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def test_health_and_models(served):
    client, warehouse = served
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == len(SERVED_MODELS)
    assert health["users"] == len(table(warehouse, "users")) and health["movies"] == len(table(warehouse, "items"))
    assert health["run_date"] == LATEST.isoformat() and health["last_error"] is None
    assert 0 <= health["age_s"] < 24 * 3600  # the warehouse was written by this test run

    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == set(SERVED_MODELS)
    assert models["popularity"]["run_dates"] == [LATEST.isoformat(), EARLIER.isoformat()]
    assert models["als"]["family"] == "als" and models["markov"]["family"] == "baseline"
    assert models["als"]["similar_items"] and not models["markov"]["similar_items"]
    metrics = table(warehouse, "metrics")
    for name, info in models.items():
        assert info["run_date"] == LATEST.isoformat() and info["max_k"] == K
        assert info["users"] == table(warehouse, "recommendations", model=name)["userId"].nunique()
        hr = next(m for m in info["metrics"] if m["metric"] == "hr" and m["k"] == 10 and m["split"] == "test")
        row = metrics[(metrics.model == name) & (metrics.metric == "hr") & (metrics.k == 10)].iloc[0]
        assert hr["value"] == pytest.approx(row.value) and hr["ci_low"] <= hr["value"] <= hr["ci_high"]
    assert "ndcg_hr.png" in client.get("/models").json()["report_plots"]


@pytest.mark.parametrize("model", SERVED_MODELS)
def test_a_users_list_is_the_tables_list_with_titles_and_history(served, model):
    client, warehouse = served
    user = 1
    body = client.get(f"/users/{user}/recommendations", params={"model": model, "k": 10}).json()
    recs = table(warehouse, "recommendations", model=model, userId=user)
    recs = recs[recs.run_date == LATEST].sort_values("rank").head(10)
    assert [m["movieId"] for m in body["items"]] == recs.movieId.tolist()
    assert [m["score"] for m in body["items"]] == pytest.approx(recs.score.tolist(), rel=1e-6)
    assert [m["rank"] for m in body["items"]] == list(range(1, 11))
    assert body["run_date"] == LATEST.isoformat() and body["run_id"] == recs.run_id.iloc[0] and body["fallback"] is None

    items = table(warehouse, "items").set_index("movieId")
    for movie in body["items"] + body["history"]:
        assert movie["title"] == items.loc[movie["movieId"], "title"]
        assert movie["genres"] == list(items.loc[movie["movieId"], "genres"])
    ratings = table(warehouse, "interactions", userId=user).sort_values("seq", ascending=False)
    seen = ratings[ratings.split != "test"].head(10)
    assert [m["movieId"] for m in body["history"]] == seen.movieId.tolist()
    assert [m["rating"] for m in body["history"]] == seen.rating.tolist()
    test_item = ratings[ratings.split == "test"].iloc[0]
    assert body["held_out"]["movieId"] == test_item.movieId
    hits = [m["rank"] for m in body["items"] if m["held_out"]]
    assert hits == ([body["held_out_rank"]] if body["held_out_rank"] else [])
    assert hits == [r for r, m in zip(recs["rank"], recs.movieId) if m == test_item.movieId]


def test_the_held_out_item_is_marked_where_a_model_found_it(served):
    client, warehouse = served
    recs = table(warehouse, "recommendations", run_date=LATEST)
    tests = table(warehouse, "interactions", split="test")[["userId", "movieId"]]
    hit = recs.merge(tests, on=["userId", "movieId"]).sort_values(["rank", "userId"]).iloc[0]
    body = client.get(f"/users/{hit.userId}/recommendations", params={"model": hit.model, "k": K}).json()
    assert body["held_out_rank"] == hit["rank"]
    assert [m["rank"] for m in body["items"] if m["held_out"]] == [hit["rank"]]


def test_an_earlier_run_date_is_served_on_request(served):
    client, warehouse = served
    body = client.get("/users/5/recommendations", params={"model": "popularity", "run_date": EARLIER.isoformat(),
                                                          "k": 5}).json()
    recs = table(warehouse, "recommendations", model="popularity", userId=5)
    recs = recs[recs.run_date == EARLIER].sort_values("rank").head(5)
    assert body["run_date"] == EARLIER.isoformat() and body["run_id"] == "earlier-popularity"
    assert [m["movieId"] for m in body["items"]] == recs.movieId.tolist()


@pytest.mark.parametrize("path, params, status, says", [
    ("/users/1/recommendations", {"model": "nope"}, 422, "unknown model 'nope'"),
    ("/users/1/recommendations", {"model": "../items"}, 422, "unknown model"),
    ("/users/1/recommendations", {"model": "ncf"}, 404, "has no recommendations"),
    ("/users/1/recommendations", {"model": "als_../../etc"}, 422, "unknown model 'als_../../etc'"),
    ("/users/1/recommendations", {"model": "als_other"}, 404, "has no recommendations"),
    ("/users/1/recommendations", {}, 422, "query.model"),
    ("/users/1/recommendations", {"model": "als", "k": 0}, 422, "query.k"),
    ("/users/1/recommendations", {"model": "als", "k": 101}, 422, "query.k"),
    ("/users/1/recommendations", {"model": "als", "k": "ten"}, 422, "query.k"),
    ("/users/1/recommendations", {"model": "als", "run_date": "yesterday"}, 422, "query.run_date"),
    ("/users/1/recommendations", {"model": "als", "run_date": "2030-02-31"}, 422, "not a date"),
    ("/users/1/recommendations", {"model": "als", "run_date": "1999-01-01"}, 404, "no run on 1999-01-01"),
    ("/users/999999/recommendations", {"model": "als"}, 404, "unknown user 999999"),
    ("/users/-1/recommendations", {"model": "als"}, 422, "path.userId"),
    (f"/users/{2**70}/recommendations", {"model": "als"}, 422, "path.userId"),
    ("/items/1/similar", {"model": "markov"}, 404, "no item vectors"),
    ("/items/123456789/similar", {"model": "als"}, 404, "unknown movie"),
    ("/items/1/similar", {"model": "als", "k": 500}, 422, "query.k"),
    ("/users", {"prefix": "1x"}, 422, "query.prefix"),
    ("/report/secret.png", {}, 422, "path.plot"),
    ("/report/..%2F..%2Fsecret.png", {}, 404, "Not Found"),
])
def test_bad_requests_get_a_one_line_4xx(served, path, params, status, says):
    client, _ = served
    assert says in one_line_error(client.get(path, params=params), status)


def test_the_largest_k_returns_the_whole_list(served):
    client, _ = served
    body = client.get("/users/1/recommendations", params={"model": "markov", "k": 100}).json()
    assert body["k"] == 100 and len(body["items"]) == K


@pytest.mark.parametrize("model, source", [("als", "als_item_factors"), ("sasrec", "item_embeddings")])
def test_similar_items_are_the_exact_cosine_neighbours(served, model, source):
    client, warehouse = served
    vectors = (table(warehouse, "als_item_factors").rename(columns={"features": "vector"}) if model == "als"
               else table(warehouse, "item_embeddings", model=model))
    ids = vectors.movieId.to_numpy()
    matrix = np.stack(vectors.vector.to_numpy()).astype(np.float64)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    movie = 1
    cosine = unit @ unit[np.flatnonzero(ids == movie)[0]]
    expected = [m for m in ids[np.argsort(-cosine, kind="stable")] if m != movie][:10]

    body = client.get(f"/items/{movie}/similar", params={"model": model, "k": 10}).json()
    assert body["source"] == source and body["item"]["movieId"] == movie
    got = [m["movieId"] for m in body["items"]]
    assert movie not in got and len(got) == 10
    sims = [m["similarity"] for m in body["items"]]
    assert sims == sorted(sims, reverse=True)
    assert sims == pytest.approx(sorted(cosine[ids != movie], reverse=True)[:10], abs=1e-5)
    assert set(got[:5]) == set(expected[:5])


def test_user_search_by_prefix(served):
    client, warehouse = served
    body = client.get("/users", params={"prefix": "12", "limit": 5}).json()
    ids = table(warehouse, "users").userId
    assert body["total"] == sum(str(u).startswith("12") for u in ids)
    assert len(body["users"]) == 5 and all(str(u["userId"]).startswith("12") for u in body["users"])


def test_the_page_and_the_report_plots(served):
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    plot = client.get("/report/ndcg_hr.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png" and plot.content[:4] == b"\x89PNG"


def test_a_new_run_date_is_served_without_a_restart_and_uncovered_users_fall_back(served_warehouse, tmp_path):
    """Another process's commit (here: the torch writer) of a new markov run date covering half the users is
    picked up by the reload thread; a user it left out gets the popularity fallback, and the day before is still
    served on request; then a re-run of that date (new files, same date) replaces it."""
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app
    from recsys_spark.delta import read_arrow
    from recsys_torch.tables import write_recommendations

    warehouse = tmp_path / "warehouse"
    shutil.copytree(served_warehouse["warehouse"], warehouse)
    new_day = LATEST + dt.timedelta(days=1)
    with TestClient(create_app(warehouse, reload_interval=0.2)) as client:
        before = client.get("/users/600/recommendations", params={"model": "markov"}).json()
        rows = read_arrow(warehouse / "recommendations")
        rows = rows.filter(pc.and_(pc.equal(rows["model"], "markov"), pc.less_equal(rows["userId"], 300)))
        rows = rows.set_column(rows.schema.get_field_index("run_id"), "run_id", pa.array(["reloaded"] * len(rows)))
        rows = rows.set_column(rows.schema.get_field_index("run_date"), "run_date",
                               pa.array([new_day] * len(rows), pa.date32()))
        write_recommendations(warehouse, rows, "markov", new_day)

        deadline = time.monotonic() + 60
        while client.get("/health").json()["reloads"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        markov = next(m for m in client.get("/models").json()["models"] if m["name"] == "markov")
        assert markov["run_date"] == new_day.isoformat() and markov["users"] == 300

        covered = client.get("/users/1/recommendations", params={"model": "markov"}).json()
        assert covered["run_date"] == new_day.isoformat() and covered["run_id"] == "reloaded"
        left_out = client.get("/users/600/recommendations", params={"model": "markov", "k": 20}).json()
        assert left_out["fallback"] == "popularity" and left_out["run_date"] is None and len(left_out["items"]) == 20
        counts = [m["score"] for m in left_out["items"]]
        assert counts == sorted(counts, reverse=True)
        assert not {m["movieId"] for m in left_out["items"]} & {m["movieId"] for m in left_out["history"]}
        earlier = client.get("/users/600/recommendations", params={"model": "markov",
                                                                   "run_date": LATEST.isoformat()}).json()
        assert earlier["items"] == before["items"] and earlier["fallback"] is None

        # A re-run of the same date replaces the partition's files: served too, now for every user.
        rows = read_arrow(served_warehouse["warehouse"] / "recommendations")
        rows = rows.filter(pc.equal(rows["model"], "markov"))
        rows = rows.set_column(rows.schema.get_field_index("run_id"), "run_id", pa.array(["rerun"] * len(rows)))
        rows = rows.set_column(rows.schema.get_field_index("run_date"), "run_date",
                               pa.array([new_day] * len(rows), pa.date32()))
        write_recommendations(warehouse, rows, "markov", new_day)
        while client.get("/health").json()["reloads"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        rerun = client.get("/users/600/recommendations", params={"model": "markov"}).json()
        assert rerun["run_id"] == "rerun" and rerun["fallback"] is None and rerun["items"] == before["items"]


@pytest.mark.parametrize("args, says", [
    (["--warehouse", "{missing}"], "warehouse not found"),
    (["--warehouse", "{empty}"], "has no Delta table items, users, interactions, recommendations"),
    (["--warehouse", "{empty}", "--port", "70000"], "--port must be 0..65535"),
    (["--warehouse", "{empty}", "--port", "eighty"], "argument --port: invalid int value"),
])
def test_recsys_serve_refuses_bad_arguments_in_one_line(tmp_path, python, args, says):
    import subprocess

    from conftest import REPO

    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in args]
    done = subprocess.run([python, "-m", "jobs.cli", "serve", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr


def test_the_server_imports_neither_spark_nor_torch(python):
    import subprocess

    from conftest import REPO

    code = ("import sys, jobs.serve, recsys_serve.api; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pyspark', 'torch', 'recsys_spark', 'recsys_torch'}))")
    done = subprocess.run([python, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_ids_and_ranks_are_placed_like_a_sort_would():
    """The two shortcuts the server takes at 25M: ids looked up in a table (binary search for ids too large for
    one), and rows put in (user, rank) order by their rank instead of a sort (a sort when the ranks have gaps)."""
    from recsys_serve.index import DENSE_IDS, IdIndex, _rank_order

    rng = np.random.default_rng(0)
    ids = np.unique(rng.integers(0, 5000, 800))
    queries = np.concatenate([ids, rng.integers(-10, 6000, 500), [2**62]])
    for shift in (0, DENSE_IDS):  # the table, then binary search
        index = IdIndex(ids + shift)
        assert (index.table is None) == bool(shift)
        expected = [int(np.flatnonzero(ids == q)[0]) if q in ids else -1 for q in queries]
        assert index.positions(queries + shift if shift else queries).tolist() == expected
        assert index.position(int(ids[3] + shift)) == 3 and index.position(-1) is None

    users = np.repeat(np.arange(50), rng.integers(0, 8, 50))
    ranks = np.concatenate([np.arange(1, n + 1) for n in np.bincount(users, minlength=50)])
    shuffle = rng.permutation(len(users))
    user_pos, rank = users[shuffle].astype(np.int32), ranks[shuffle].astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(user_pos, minlength=50))])
    assert (_rank_order(user_pos, rank, offsets) == np.lexsort((rank, user_pos))).all()
    rank[rank == 2] = 9  # gaps: sorted instead
    assert (_rank_order(user_pos, rank, offsets) == np.lexsort((rank, user_pos))).all()


def test_drift_is_the_drift_tables_rows_of_a_run_date(served):
    """GET /drift: the drift step's rows (tests/serve_warehouse.py measures LATEST), the newest run date by default."""
    client, warehouse = served
    body = client.get("/drift").json()
    stored = table(warehouse, "drift", run_date=LATEST)
    assert body["run_date"] == LATEST.isoformat() and body["run_dates"] == [LATEST.isoformat()]
    assert len(body["rows"]) == len(stored) and len(stored) > 5
    got = {(r["kind"], r["model"], r["metric"]): r for r in body["rows"]}
    for row in stored.itertuples():
        served_row = got[(row.kind, row.model if isinstance(row.model, str) else None, row.metric)]
        assert served_row["value"] == pytest.approx(row.value)
    overlap = got[("output", "popularity", "list_overlap")]
    assert overlap["compared_to"] == f"run_date {EARLIER}" and 0 <= overlap["value"] <= 1
    assert got[("input", None, "interactions")]["compared_to"] == "interactions up to 30 days before the newest"
    assert body["warnings"] == [r["warning"] for r in body["rows"] if r["warning"]]
    assert client.get("/drift", params={"run_date": LATEST.isoformat()}).json() == body
    assert "2030-01-01" in one_line_error(client.get("/drift", params={"run_date": EARLIER.isoformat()}), 404)
    one_line_error(client.get("/drift", params={"run_date": "yesterday"}), 422)
    assert "drift.png" in client.get("/models").json()["report_plots"]


def test_movies_by_title(served):
    client, warehouse = served
    items = table(warehouse, "items")
    body = client.get("/movies", params={"q": "toy story", "limit": 5}).json()
    expected = items[items.title.str.casefold().str.contains("toy story", regex=False)]
    assert body["total"] == len(expected) >= 3
    assert [m["title"] for m in body["movies"]] == sorted(expected.title.tolist(), key=str.casefold)[:5]
    assert body["movies"][0]["title"].casefold().startswith("toy story")
    assert client.get("/movies", params={"q": "no such title at all"}).json() == {"movies": [], "total": 0}
    one_line_error(client.get("/movies", params={"q": ""}), 422)


@pytest.mark.parametrize("path, params, model", [
    ("/users/1/recommendations", {"model": "markov", "k": 10}, "Recommendations"),
    ("/users/1/recommendations", {"model": "popularity", "run_date": EARLIER.isoformat()}, "Recommendations"),
    ("/items/1/similar", {"model": "als", "k": 5}, "Similar"),
])
def test_the_bodies_written_without_validation_are_exactly_their_response_models(served, path, params, model):
    """These two endpoints write their JSON themselves (recsys_serve.api.shaped_json): the body has every field of
    its response model, no other, each of its type, as FastAPI's validated path would have written it."""
    from recsys_serve import responses as r

    client, _ = served
    response = client.get(path, params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    validated = getattr(r, model).model_validate_json(response.content, strict=False)
    assert validated.model_dump(mode="json") == response.json()


def test_a_body_the_serializer_cannot_write_goes_through_fastapis_validation():
    from recsys_serve.api import shaped_json

    assert shaped_json({"run_date": dt.date(2026, 1, 2), "score": float("nan")}).body == \
        b'{"run_date":"2026-01-02","score":null}'  # a NaN as the response models write it
    odd = {"value": object()}
    assert shaped_json(odd) is odd
