"""The one tie key (recsys_core.ties): Spark, numpy, torch and plain Python give the same keys, exactly, under
Spark's ANSI arithmetic; then lists of all-equal scores come out in that key's order wherever they are made."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_core.ties import P, Ties


def pairs(n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    users = np.concatenate([[0, 1, P - 1, (1 << 31) - 1, 2**31 - 2], rng.integers(0, 2**31 - 1, n)])
    items = np.concatenate([[0, P - 1, 1, 0, 5], rng.integers(0, 2**31 - 1, n)])
    return users.astype(np.int64), items.astype(np.int64)


@pytest.mark.parametrize("ties", [Ties("hash", 42), Ties("hash", 2**62 + 7), Ties("movieId", 42)])
def test_spark_numpy_torch_and_python_give_the_same_keys(spark, ties):
    users, items = pairs()
    keys = ties.numpy(users, items)
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"  # an overflow would raise, not wrap
    frame = spark.createDataFrame([(int(u), int(i)) for u, i in zip(users, items)], "user_idx int, item_idx int")
    from_spark = np.array(frame.select(ties.column()).toPandas().iloc[:, 0], np.int64)
    assert (from_spark == keys).all()
    assert (ties.torch(torch.from_numpy(users), torch.from_numpy(items)).numpy() == keys).all()
    assert [ties._key(int(u), int(i)) for u, i in zip(users[:500], items[:500])] == keys[:500].tolist()
    assert ((keys >= 0) & (keys < (P if ties.rule == "hash" else 2**31))).all()


def test_the_hash_orders_each_users_items_differently_and_totally():
    ties, items = Ties("hash", 42), np.arange(1, 5001)
    one, two = ties.numpy(1, items), ties.numpy(2, items)
    assert len(np.unique(one)) == len(items)  # no two items of a user share a key
    assert not (np.argsort(one) == np.argsort(two)).all()
    assert not (np.argsort(one) == np.argsort(Ties("hash", 43).numpy(1, items))).all()
    # neither ascending ids nor their reverse: the rank correlation with item_idx is small
    assert abs(np.corrcoef(np.argsort(np.argsort(one)), items)[0, 1]) < 0.05
    assert (np.argsort(Ties("movieId", 42).numpy(1, items)) == np.arange(len(items))).all()


def test_a_bad_rule_is_refused_and_a_report_gives_the_policy():
    with pytest.raises(ValueError, match="tie_break"):
        Ties("random")
    assert Ties.of_report({"tie_break": "movieId", "seed": 7}) == Ties("movieId", 7)
    assert Ties.of_report({"config": {"tie_break": "hash", "seed": 3}}) == Ties("hash", 3)
    assert Ties.of_report(None) == Ties()


def reference(scores: np.ndarray, users: np.ndarray, k: int, ties: Ties) -> list[list[int]]:
    """Per row: every finite column sorted by (score desc, tie key asc), the first k."""
    out = []
    for row, user in enumerate(users):
        columns = np.flatnonzero(np.isfinite(scores[row]))
        order = np.lexsort((ties.numpy(user, columns), -scores[row, columns]))
        out.append(columns[order][:k].tolist())
    return out


@pytest.mark.parametrize("ties", [Ties("hash", 42), Ties("hash", 9), Ties("movieId", 42)])
def test_all_equal_scores_give_the_key_order_in_spark_numpy_and_torch(spark, ties):
    """A constant model: every list is the tie order, the same from the Spark window (recommendations.top_k), the
    blocked numpy selection (blocked_topk.select_top_k) and torch (metrics.top_k); column 0 is torch's padding."""
    from pyspark.sql import functions as F

    from recsys_spark.blocked_topk import item_positions, padded_width, select_top_k
    from recsys_spark.recommendations import top_k as spark_top_k
    from recsys_torch.metrics import top_k as torch_top_k

    n_users, n_items, k = 30, 200, 15
    users = np.arange(1, n_users + 1)
    frame = (spark.range(1, n_users + 1).select(F.col("id").cast("int").alias("user_idx"))
             .crossJoin(spark.range(1, n_items + 1).select(F.col("id").cast("int").alias("item_idx")))
             .withColumn("score", F.lit(0.5)))
    from_spark: dict[int, list[int]] = {}
    for r in spark_top_k(frame, k, ties).orderBy("user_idx", "rank").collect():
        from_spark.setdefault(r.user_idx, []).append(r.item_idx)

    item_ids = np.arange(1, n_items + 1)
    block = np.full((n_users, padded_width(n_items, k)), -np.inf)
    block[:, :n_items] = 0.5
    batch = select_top_k(users, block, np.zeros(0, np.int64), np.zeros(0, np.int64), item_ids,
                         item_positions(item_ids), k, ties)
    from_numpy: dict[int, list[int]] = {}
    for u, i in zip(batch.column("user_idx").to_pylist(), batch.column("item_idx").to_pylist()):
        from_numpy.setdefault(u, []).append(i)

    logits = torch.full((n_users, n_items + 1), 0.5)
    logits[:, 0] = float("-inf")
    values, columns = torch_top_k(logits, torch.from_numpy(users), k, ties)
    expected = reference(logits.numpy(), users, k, ties)
    assert columns.tolist() == expected and (values == 0.5).all()
    assert [from_spark[u] for u in users] == [from_numpy[u] for u in users] == expected
    if ties.rule == "movieId":
        assert expected[0] == list(range(1, k + 1))
    else:
        assert expected[0] != expected[1] and expected[0] != list(range(1, k + 1))


@pytest.mark.parametrize("k", [1, 7, 40])
def test_torch_top_k_is_exact_with_ties_inside_and_at_the_boundary(k):
    """Scores of four values (many ties, the k-th shared by columns that do not all fit), some rows all equal and
    -inf seen items: the same lists as a full sort by (score desc, tie key asc)."""
    from recsys_torch.metrics import top_k as torch_top_k

    rng = np.random.default_rng(k)
    ties = Ties("hash", 3)
    scores = rng.integers(0, 4, (64, 301)).astype(np.float32)
    scores[5] = 1.0
    scores[:, 0] = -np.inf
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    users = rng.integers(0, 10_000, 64)
    values, columns = torch_top_k(torch.from_numpy(scores), torch.from_numpy(users), k, ties)
    assert columns.tolist() == reference(scores, users, k, ties)
    assert (values.numpy() == np.take_along_axis(scores, columns.numpy(), 1)).all()


def test_target_ranks_is_the_position_in_the_list():
    """The 0-based rank target_ranks gives a target is its index in torch's full list (top_k of every column), for
    targets among ties and not; over gathered candidate columns (the sampled protocol) too."""
    from recsys_torch.metrics import target_ranks, top_k as torch_top_k

    rng = np.random.default_rng(1)
    ties = Ties("hash", 11)
    scores = torch.from_numpy(rng.integers(0, 5, (50, 120)).astype(np.float32))
    scores[7] = 2.0
    users = torch.from_numpy(rng.integers(0, 500, 50))
    targets = torch.from_numpy(rng.integers(0, 120, 50))
    _, full = torch_top_k(scores, users, 120, ties)
    position = (full == targets[:, None]).int().argmax(dim=1)
    assert (target_ranks(scores, targets, users, ties) == position).all()
    candidates = torch.from_numpy(np.stack([rng.permutation(120)[:30] for _ in range(50)]))
    gathered = scores.gather(1, candidates)
    first = torch.zeros(50, dtype=torch.long)
    among = gathered >= gathered[:, :1]
    keys = ties.torch(users[:, None], candidates)
    expected = ((gathered > gathered[:, :1]) | (among & (gathered == gathered[:, :1]) & (keys < keys[:, :1]))).sum(1)
    assert (target_ranks(gathered, first, users, ties, candidates) == expected).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_real_time_lists_are_the_batch_lists_of_the_same_night(nightly_copy):
    """Every user of the nightly's lists, asked of the server now by userId (the stored history): the count models
    (numpy in recsys_serve) and SASRec (recsys_torch.realtime) answer with the list the night wrote, items, order
    and scores; the night's count lists hold equal scores, so their order is the tie key's."""
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app
    from recsys_spark.delta import read_arrow

    warehouse, run_date = nightly_copy["warehouse"], nightly_copy["run_date"]
    rows = read_arrow(warehouse / "recommendations").to_pandas()
    rows = rows[rows.run_date.astype(str) == run_date].sort_values(["model", "userId", "rank"])
    tied = 0
    with TestClient(create_app(warehouse, reload_interval=0)) as client:
        for model in ("popularity", "markov", "ar2", "itemcf", "sasrec"):
            night = {int(u): g for u, g in rows[rows.model == model].groupby("userId")}
            assert len(night) > 100, model
            users = sorted(night)
            body = client.post("/recommendations/batch", json={"model": model, "k": 20,
                                                               "requests": [{"userId": u} for u in users]})
            assert body.status_code == 200, body.text
            for user, answer in zip(users, body.json()["lists"]):
                want = night[user]
                assert [m["movieId"] for m in answer["items"]] == want.movieId.tolist(), (model, user)
                assert [m["score"] for m in answer["items"]] == pytest.approx(want.score.tolist(), rel=1e-4,
                                                                              abs=1e-5)
                tied += int((want.score.diff() == 0).sum())
    assert tied > 100  # equal scores inside the lists: their order is what is compared
