"""Blocked ALS top-N: numpy block against brute force, Spark blocks against brute force, and on ml-latest-small
the same lists as MLlib's recommendForAll (recommendForUserSubset on a third of the users) with seen items
filtered out; the topn job (every family through the CLI: tests/test_catalogue.py)."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from recsys_spark.delta import read_table, table_path, table_version
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import read_recommendations
from recsys_spark.als_topn import _scores, block_top_k, pad_items, score_top_k
from recsys_spark.blocked_topk import selection_groups
from recsys_core.ties import Ties

DAY = dt.date(2026, 11, 23)
TIES = Ties("hash", 7)


def brute_top_k(user_features, item_ids, item_features, seen: dict[int, set[int]], users, k, scores=None):
    """Per user: sort every unseen item by (score desc, tie key asc), keep k. scores: [users, items] to rank instead
    of the dot products (a matrix product may round equal vectors' scores apart in the last bit)."""
    out = {}
    for row, user in enumerate(users):
        scored = [(-float(np.dot(user_features[row], item_features[j]) if scores is None else scores[row, j]),
                   int(TIES.numpy(user, item)), int(item))
                  for j, item in enumerate(item_ids) if int(item) not in seen.get(int(user), set())]
        out[int(user)] = [item for *_, item in sorted(scored)[:k]]
    return out


def test_block_top_k_matches_brute_force():
    rng = np.random.default_rng(0)
    item_ids = np.array([2, 3, 5, 8, 9, 11, 12], dtype=np.int32)  # item_idx 1, 4, 6, 7, 10 have no factors
    item_features = rng.normal(size=(len(item_ids), 4)).astype(np.float32)
    position = np.full(13, -1, dtype=np.int64)
    position[item_ids] = np.arange(len(item_ids))
    users = np.array([7, 8, 9], dtype=np.int32)
    user_features = rng.normal(size=(3, 4)).astype(np.float32)
    # user 7 saw 3 and 11 (and 4, which has no factor, and 40, beyond every known item); 8 saw nothing;
    # 9 saw all but two items, so gets only two rows even with k=3.
    seen = {7: [3, 11, 4, 40], 9: [2, 3, 5, 8, 9]}
    values = np.array(seen[7] + seen[9], dtype=np.int64)
    parents = np.array([0] * 4 + [2] * 5, dtype=np.int64)
    batch = block_top_k(users, user_features, values, parents, item_ids, item_features, position, 3, TIES)
    got: dict[int, list[int]] = {}
    for user, item, rank in zip(*(batch.column(c).to_pylist() for c in ("user_idx", "item_idx", "rank"))):
        got.setdefault(user, []).append((rank, item))
    got = {u: [item for _, item in sorted(v)] for u, v in got.items()}
    expected = brute_top_k(user_features, item_ids, item_features, {u: set(s) for u, s in seen.items()}, users, 3)
    assert got == expected
    assert len(got[9]) == 2
    assert batch.schema.names == ["user_idx", "item_idx", "rank", "score"]


def test_block_top_k_threshold_selection_is_exact_on_a_large_catalogue_with_ties():
    # 3001 items (not a multiple of the selection groups, so padding is exercised); every item appears three times
    # with identical factors, so scores tie in threes and the order within a tie must be the tie key's.
    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(1001, 8)).astype(np.float32)
    item_features = np.repeat(distinct, 3, axis=0)[:3001]
    item_ids = rng.permutation(np.arange(5, 3006)).astype(np.int32)  # factor rows not in item_idx order
    position = np.full(int(item_ids.max()) + 1, -1, dtype=np.int64)
    position[item_ids] = np.arange(len(item_ids))
    users = np.arange(40, dtype=np.int32)
    user_features = rng.normal(size=(40, 8)).astype(np.float32)
    user_features[7] = 0.0  # every score 0.0: the whole list is one tie
    seen = {int(u): set(rng.choice(item_ids, size=50, replace=False).tolist()) for u in users}
    values = np.array([i for u in users for i in sorted(seen[int(u)])], dtype=np.int64)
    parents = np.repeat(np.arange(40), 50)
    k = 120
    batch = block_top_k(users, user_features, values, parents, item_ids, item_features, position, k, TIES)
    got: dict[int, list[int]] = {}
    for user, item, rank in zip(*(batch.column(c).to_pylist() for c in ("user_idx", "item_idx", "rank"))):
        got.setdefault(user, []).append((rank, item))
    assert {u: [r for r, _ in v] for u, v in got.items()} == {int(u): list(range(1, k + 1)) for u in users}
    got = {u: [item for _, item in sorted(v)] for u, v in got.items()}
    # the block's own float32 product: BLAS may score two equal item vectors a last bit apart by their position
    scores = _scores(user_features, pad_items(item_features, selection_groups(len(item_ids), k)), len(item_ids))
    assert got == brute_top_k(user_features, item_ids, item_features, seen, users, k, scores)
    assert got[7] == sorted(set(item_ids.tolist()) - seen[7], key=lambda i: TIES.numpy(7, i))[:k]


def test_score_top_k_in_spark_blocks_matches_brute_force(spark):
    rng = np.random.default_rng(1)
    n_users, n_items, rank = 23, 17, 5
    user_features = rng.normal(size=(n_users, rank)).astype(np.float32)
    item_features = rng.normal(size=(n_items, rank)).astype(np.float32)
    users = np.arange(1, n_users + 1)
    item_ids = np.arange(1, n_items + 1)
    seen = {int(u): set(rng.choice(item_ids, size=int(rng.integers(0, 6)), replace=False).tolist()) for u in users}
    user_df = spark.createDataFrame([(int(u), user_features[i].tolist()) for i, u in enumerate(users)],
                                    "user_idx int, features array<float>")
    item_df = spark.createDataFrame([(int(j), item_features[i].tolist()) for i, j in enumerate(item_ids)],
                                    "item_idx int, features array<float>")
    seen_df = spark.createDataFrame([(u, i) for u, items in seen.items() for i in items] or [(1, 99)],
                                    "user_idx int, item_idx int")
    rows = score_top_k(user_df, item_df, seen_df, 4, TIES, block_size=3).collect()  # several blocks per batch
    got: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        got.setdefault(r.user_idx, []).append((r.rank, r.item_idx))
    assert {u: [i for _, i in sorted(v)] for u, v in got.items()} == brute_top_k(
        user_features, item_ids, item_features, seen, users, 4)
    assert all(sorted(rank for rank, _ in v) == [1, 2, 3, 4] for v in got.values())


def test_job_unknown_model_and_bad_k_are_one_line_errors(tmp_path):
    for flags, message in ((["--model", "svd"], "unknown model 'svd'"),
                           (["--model", "sasrec", "--k", "0"], "--k must be a positive integer")):
        proc = subprocess.run([sys.executable, "jobs/topn.py", "--warehouse", str(tmp_path), *flags],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_torch_models_do_not_import_spark(tmp_path):
    """The torch dispatch goes straight to recsys_torch.infer: its own one-line error, and no Spark at all."""
    code = ("import sys\n"
            "from jobs.topn import main\n"
            f"code = main(['--warehouse', {str(tmp_path)!r}, '--model', 'sasrec', '--run-date', '2026-11-23'])\n"
            "ctx = sys.modules['pyspark'].SparkContext._active_spark_context if 'pyspark' in sys.modules else None\n"
            "print('exit', code, 'spark', 'recsys_spark' in sys.modules or ctx is not None)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "exit 2 spark False" in proc.stdout and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# ml-latest-small through the real ETL


@pytest.fixture(scope="module")
def als_warehouse(spark, ml_small_warehouse, tmp_path_factory):
    """A small ALS fit on ml_small_warehouse's train split, written to a warehouse of its own whose input tables
    are copies of the shared fixture's (which stays read-only)."""
    from recsys_spark.als import AlsConfig, fit, ratings, save

    wh = tmp_path_factory.mktemp("topn_wh")
    for name in ("interactions", "items", "users"):
        shutil.copytree(ml_small_warehouse / name, wh / name)
    interactions = read_table(spark, table_path(wh, "interactions"))
    config = AlsConfig(rank=8, max_iter=5, reg_param=0.1, num_blocks=4)
    model = fit(ratings(interactions.where(F.col("split") == "train")), config)
    save(model, wh, "als", read_table(spark, table_path(wh, "users")), read_table(spark, table_path(wh, "items")))
    return wh, model


def test_blocked_lists_equal_recommend_for_all_users(spark, als_warehouse):
    from recsys_spark.als_topn import als_top_k

    wh, model = als_warehouse
    k = 20
    interactions = read_table(spark, table_path(wh, "interactions"))
    seen = interactions.where(F.col("split").isin("train", "validation")).select("user_idx", "item_idx")
    subset = model.userFactors.select(F.col("id").alias("user_idx")).where("user_idx % 3 = 0")  # keeps it fast
    max_seen = seen.join(subset, "user_idx").groupBy("user_idx").count().agg(F.max("count")).first()[0]
    ours = als_top_k(spark, wh, "als", k, block_size=128).join(subset, "user_idx")
    mllib = (model.recommendForUserSubset(subset, k + max_seen)
             .select(F.col("user_idx"), F.posexplode("recommendations").alias("pos", "rec"))
             .select("user_idx", "pos", F.col("rec.item_idx").alias("item_idx"), F.col("rec.rating").alias("score"))
             .join(seen, ["user_idx", "item_idx"], "left_anti"))
    mllib = (mllib.withColumn("rank", F.row_number().over(Window.partitionBy("user_idx").orderBy("pos")))
             .where(F.col("rank") <= k))

    def lists(df):
        rows = (df.groupBy("user_idx").agg(F.sort_array(F.collect_list(F.struct("rank", "item_idx", "score")))
                                           .alias("l")).collect())
        return {r.user_idx: [(x.item_idx, x.score) for x in r.l] for r in rows}

    ours_lists, mllib_lists = lists(ours), lists(mllib)
    assert ours_lists.keys() == mllib_lists.keys() and len(ours_lists) > 150
    tol = 1e-4
    for user, theirs in mllib_lists.items():
        mine = ours_lists[user]
        # Rank by rank the same scores; items may differ only where scores tie (ml-latest-small has many items
        # rated once, by the same user with the same rating: identical factors, identical scores).
        assert np.allclose([s for _, s in mine], [s for _, s in theirs], atol=tol), user
        kth = theirs[-1][1]
        assert {i for i, s in mine if s > kth + tol} == {i for i, s in theirs if s > kth + tol}, user


def test_topn_job_writes_partition_replacing_on_rerun(spark, als_warehouse):
    from jobs.topn import main

    wh, _ = als_warehouse
    argv = ["--warehouse", str(wh), "--model", "als", "--k", "10", "--run-date", DAY.isoformat()]
    assert main(argv) == 0
    assert main(argv) == 0  # a re-run replaces the partition
    recs = read_recommendations(spark, wh, "als").where(F.col("run_date") == F.lit(DAY))
    users_with_factors = read_table(spark, table_path(wh, "als_user_factors")).count()
    assert recs.count() == users_with_factors * 10
    assert recs.groupBy("userId", "movieId").count().where("count > 1").isEmpty()
    assert recs.select("run_id").distinct().count() == 1
    interactions = read_table(spark, table_path(wh, "interactions"))
    seen = interactions.where(F.col("split").isin("train", "validation")).select("userId", "movieId")
    assert recs.join(seen, ["userId", "movieId"]).isEmpty()
    assert table_version(table_path(wh, "recommendations")) == 1
    assert read_table(spark, table_path(wh, "recommendations"), version=0).count() == recs.count()


def test_non_finite_item_factors_are_refused_not_silently_dropped(spark):
    from recsys_spark.errors import RecsysError

    users = spark.createDataFrame([(1, [1.0, 0.0])], "user_idx int, features array<float>")
    items = spark.createDataFrame([(1, [1.0, 0.0]), (2, [float("nan"), 0.0])], "item_idx int, features array<float>")
    seen = spark.createDataFrame([(1, 3)], "user_idx int, item_idx int")
    with pytest.raises(RecsysError, match=r"1 item factor vectors are not finite \(item_idx \[2\]"):
        score_top_k(users, items, seen, 1, TIES)
