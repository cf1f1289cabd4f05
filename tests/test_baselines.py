"""Spark baselines: hand-checked transitions, back-off and lists on a tiny warehouse; ml-latest-small end to end."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from pyspark.sql import functions as F

from recsys_core import catalogue
from recsys_spark.baselines import BaselinesConfig, EASEConfig, PopularityConfig, run_baselines, topn
from recsys_spark.baselines.popularity import item_popularity
from recsys_spark.delta import read_table, table_path, write_table
from recsys_spark.errors import RecsysError
from recsys_spark.recommendations import read_recommendations

BASELINES = catalogue.names(catalogue.BASELINE)

RUN_DATE = dt.date(2024, 1, 1)
K = 4
INTERACTIONS = ("userId long, movieId long, rating double, timestamp long, user_idx int, item_idx int, seq int, "
                "split string, temporal_split string")
ITEMS = "movieId long, item_idx int, title string, year int, genres array<string>, imdbId string, tmdbId long"

# Each user's history by seq; the last item is `test`, the one before `validation`, the rest `train`.
#   train transitions: u1 1>2>3, u2 5>2>4, u3 6>2>3
#   AR(1): 1->2 (1), 2->3 (2), 2->4 (1), 5->2 (1), 6->2 (1)      AR(2): (1,2)->3, (5,2)->4, (6,2)->3
#   train counts: item 2: 3, item 3: 3, item 5: 2, items 1, 4, 6, 7: 1, items 8, 9, 10: 0
HISTORIES = {
    1: [1, 2, 3, 7, 8],
    2: [5, 2, 4, 9, 10],
    3: [6, 2, 3, 1, 4],
    4: [5, 2, 3],  # state (5, 2): seen in AR(2), which disagrees with AR(1)
    5: [7, 2, 4],  # state (7, 2): unseen in AR(2) -> AR(1) of 2
    6: [3, 10, 1],  # state (3, 10): 10 has no successor -> popularity
    7: [5],  # only a test item: no history -> popularity
}
GENRES = {1: ["Drama"], 2: ["Comedy"], 3: ["Comedy", "Drama"], 4: ["Comedy"], 5: ["Drama"], 6: ["Horror"],
          7: ["Horror"], 8: ["Drama"], 9: ["Comedy"], 10: []}
POPULARITY_ORDER = [2, 3, 5, 1, 4, 6, 7, 8, 9, 10]


def user_id(user_idx: int) -> int:
    return 100 + user_idx


def movie_id(item_idx: int) -> int:
    return 10 * item_idx


def interaction_rows() -> list[tuple]:
    rows = []
    for user, items in HISTORIES.items():
        for seq, item in enumerate(items, 1):
            split = "test" if seq == len(items) else "validation" if seq == len(items) - 1 else "train"
            rows.append((user_id(user), movie_id(item), 4.0, 1_000_000 + 1_000 * user + 10 * seq, user, item, seq,
                         split, "train"))
    return rows


def seen(user: int) -> set[int]:
    return set(HISTORIES[user][:-1])


@pytest.fixture(scope="module")
def hand_warehouse(spark, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("hand_warehouse")
    write_table(spark.createDataFrame(interaction_rows(), INTERACTIONS), table_path(warehouse, "interactions"))
    items = [(movie_id(i), i, f"movie {i}", 2000, GENRES[i], None, None) for i in GENRES]
    items.append((999, None, "nobody rated it", 2001, ["Drama"], None, None))  # not in the ranking catalogue
    write_table(spark.createDataFrame(items, ITEMS), table_path(warehouse, "items"))
    users = [(user_id(u), u, len(h)) for u, h in HISTORIES.items()]
    write_table(spark.createDataFrame(users, "userId long, user_idx int, n_interactions long"),
                table_path(warehouse, "users"))
    # the older tie rule: equal scores by ascending item_idx, which the hand-written lists below follow
    (warehouse / "etl_report.json").write_text(json.dumps({"tie_break": "movieId", "seed": 42}))
    results = run_baselines(spark, warehouse, K, RUN_DATE)
    return warehouse, results


@pytest.fixture(scope="module")
def hand_lists(spark, hand_warehouse) -> dict[str, dict[int, list[int]]]:
    """{model: {user_idx: [item_idx by rank]}} from the recommendations table."""
    warehouse, _ = hand_warehouse
    lists: dict[str, dict[int, list[int]]] = {}
    for row in read_recommendations(spark, warehouse).orderBy("model", "userId", "rank").collect():
        lists.setdefault(row.model, {}).setdefault(row.userId - 100, []).append(row.movieId // 10)
    return lists


def test_transition_counts_by_hand(spark, hand_warehouse):
    warehouse, _ = hand_warehouse
    ar1 = {(r.prev_item_idx, r.next_item_idx): (r["count"], round(r.prob, 6), r["rank"])
           for r in read_table(spark, table_path(warehouse, "transitions_ar1")).collect()}
    assert ar1 == {(1, 2): (1, 1.0, 1), (2, 3): (2, round(2 / 3, 6), 1), (2, 4): (1, round(1 / 3, 6), 2),
                   (5, 2): (1, 1.0, 1), (6, 2): (1, 1.0, 1)}
    ar2 = {(r.prev2_item_idx, r.prev_item_idx, r.next_item_idx): (r["count"], r.prob, r["rank"])
           for r in read_table(spark, table_path(warehouse, "transitions_ar2")).collect()}
    assert ar2 == {(1, 2, 3): (1, 1.0, 1), (5, 2, 4): (1, 1.0, 1), (6, 2, 3): (1, 1.0, 1)}


def test_ar2_backs_off_to_ar1_then_popularity(hand_lists):
    ar2, markov = hand_lists["ar2"], hand_lists["markov"]
    assert ar2[4] == [4, 3, 1, 6]  # AR(2) (5,2)->4 outranks AR(1) 2->3; then popular unseen items
    assert markov[4] == [3, 4, 1, 6]  # AR(1) of 2 alone: 3 (2/3) before 4 (1/3)
    assert ar2[5] == markov[5] == [3, 4, 5, 1]  # (7,2) never seen: AR(1) of 2, then popularity
    assert ar2[6] == markov[6] == [2, 5, 1, 4]  # 10 has no successor: popularity without seen 3, 10
    assert ar2[7] == markov[7] == [2, 3, 5, 1]  # no history at all


def test_under_the_hash_policy_each_user_gets_equal_scores_in_its_own_key_order(spark, hand_warehouse, tmp_path):
    """The hand warehouse under etl.tie_break=hash: popularity's ties (items 2 and 3, then 1, 4, 6 and 7) fall in
    each user's tie-key order, not by item_idx, and the order differs between users and seeds."""
    from recsys_core.ties import Ties

    source, _ = hand_warehouse
    for name in ("interactions", "items", "users"):
        shutil.copytree(table_path(source, name), table_path(tmp_path, name))
    counts = {2: 3, 3: 3, 5: 2, 1: 1, 4: 1, 6: 1, 7: 1, 8: 0, 9: 0, 10: 0}
    got = {}
    for seed in (42, 43):
        (tmp_path / "etl_report.json").write_text(json.dumps({"tie_break": "hash", "seed": seed}))
        topn(spark, tmp_path, "popularity", 10, RUN_DATE, f"hash-{seed}")
        ties = Ties("hash", seed)
        for row in read_recommendations(spark, tmp_path, "popularity").orderBy("userId", "rank").collect():
            got.setdefault(seed, {}).setdefault(row.userId - 100, []).append(row.movieId // 10)
        for user, items in got[seed].items():
            unseen = [i for i in counts if i not in seen(user)]
            assert items == sorted(unseen, key=lambda i: (-counts[i], int(ties.numpy(user, i)))), (seed, user)
    assert got[42] != got[43]  # another seed, another order of the same ties


def test_popularity_of_an_empty_train_split_is_all_zero_not_a_division_error(spark, hand_warehouse):
    warehouse, _ = hand_warehouse
    no_train = read_table(spark, table_path(warehouse, "interactions")).where(F.col("split") != "train")
    items = read_table(spark, table_path(warehouse, "items"))
    ranked = item_popularity(no_train, items).collect()
    assert ranked and {r.score for r in ranked} == {0.0}


def test_popularity_order(spark, hand_warehouse, hand_lists):
    warehouse, _ = hand_warehouse
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    items = read_table(spark, table_path(warehouse, "items"))
    ranked = item_popularity(interactions, items).orderBy("pop_rank").collect()
    assert [r.item_idx for r in ranked] == POPULARITY_ORDER  # ties by item_idx; unrated items last
    assert [r.train_count for r in ranked] == [3, 3, 2, 1, 1, 1, 1, 0, 0, 0]
    for user, items_ in hand_lists["popularity"].items():
        assert items_ == [i for i in POPULARITY_ORDER if i not in seen(user)][:K]


def test_recent_popularity_counts_only_the_window(spark):
    day = 86_400
    cutoff = 1_000 * day
    # item 1: three old train rows; item 2: one at the cut-off; item 3: one 50 days before; item 4: validation only.
    rows = [(1, 1, cutoff - 300 * day, 1, "train"), (2, 1, cutoff - 200 * day, 1, "train"),
            (3, 1, cutoff - 100 * day, 1, "train"), (4, 2, cutoff, 1, "train"), (5, 3, cutoff - 50 * day, 1, "train"),
            (5, 4, cutoff + day, 2, "validation")]
    interactions = spark.createDataFrame(rows, "user_idx int, item_idx int, timestamp long, seq int, split string")
    items = spark.createDataFrame([(i,) for i in range(1, 5)], "item_idx int")

    def order(days):
        return [r.item_idx for r in item_popularity(interactions, items, days).orderBy("pop_rank").collect()]

    assert order(None) == [1, 2, 3, 4]
    assert order(30) == [2, 1, 3, 4]  # only item 2 is in the window; the global count orders the rest
    assert order(60) == [2, 3, 1, 4]  # items 2 and 3 tie on one recent row: global count (1 each), then item_idx


def test_genre_and_hybrid_lists_by_hand(hand_lists):
    # u4 trained on item 5 (Drama): p(i|Drama) = 3: 3/6, 5: 2/6, 1: 1/6; 5 seen -> 3, 1, then popularity.
    assert hand_lists["genre"][4] == [3, 1, 4, 6]
    # u5 trained on item 7 (Horror): 6 and 7 share Horror; 7 seen -> 6, then popularity without 2, 7.
    assert hand_lists["genre"][5] == [6, 3, 5, 1]
    # u4, alpha 0.5: markov 3: 1.0, 4: 0.5; popularity 3: 1, 1/4/6: 1/3 -> 3 (1.0), 4 (0.417), 1, 6 (0.167).
    assert hand_lists["hybrid"][4] == [3, 4, 1, 6]


def test_every_user_gets_k_distinct_unseen_items(spark, hand_warehouse, hand_lists):
    _, results = hand_warehouse
    assert set(hand_lists) == set(BASELINES)
    for model, lists in hand_lists.items():
        assert set(lists) == set(HISTORIES), model
        for user, items in lists.items():
            assert len(items) == K and len(set(items)) == K, (model, user, items)
            assert not set(items) & seen(user), (model, user, items)
        assert results[model]["rows"] == K * len(HISTORIES)
    assert len({r["run_id"] for r in results.values()}) == len(BASELINES)


def test_bad_config_and_arguments_are_clear_errors(spark, hand_warehouse, tmp_path):
    warehouse, _ = hand_warehouse
    with pytest.raises(RecsysError, match=r"unknown config key\(s\) baselines.markov.topk"):
        BaselinesConfig.from_dict({"markov": {"topk": 5}})
    with pytest.raises(RecsysError, match="alpha"):
        BaselinesConfig.from_dict({"hybrid": {"alpha": 1.5}})
    with pytest.raises(RecsysError, match="models"):
        BaselinesConfig.from_dict({"models": ["popularity", "als"]})
    with pytest.raises(RecsysError, match="recent_days"):
        BaselinesConfig(popularity=PopularityConfig(recent_days=0))
    with pytest.raises(RecsysError, match="unknown baseline model"):
        topn(spark, warehouse, "sasrec", K, RUN_DATE, "x")
    with pytest.raises(RecsysError, match="k must be"):
        topn(spark, warehouse, "popularity", 0, RUN_DATE, "x")
    with pytest.raises(RecsysError, match="Delta table not found"):
        topn(spark, tmp_path / "empty", "popularity", K, RUN_DATE, "x")


def test_job_rerun_of_a_run_date_replaces_its_rows(spark, hand_warehouse, tmp_path):
    from jobs.baselines import main

    warehouse, _ = hand_warehouse
    config = tmp_path / "test.yaml"
    config.write_text(f"spark:\n  spark.sql.shuffle.partitions: 4\n"
                      f"mlflow:\n  tracking_uri: sqlite:///{tmp_path}/mlflow.db\n")
    argv = ["--warehouse", str(warehouse), "--k", str(K), "--run-date", "2024-02-01", "--config", str(config),
            "baselines.models=[popularity]"]
    before = read_recommendations(spark, warehouse).count()
    assert main(argv) == 0
    assert main(argv) == 0
    after = read_recommendations(spark, warehouse)
    assert after.count() == before + K * len(HISTORIES)
    again = after.where((F.col("model") == "popularity") & (F.col("run_date") == F.lit(dt.date(2024, 2, 1))))
    assert again.select("run_id").distinct().count() == 1
    assert main(["--warehouse", str(tmp_path / "none"), "--config", str(config)]) == 2


@pytest.mark.slow
def test_ml_small_all_five_models_for_every_user(spark, ml_small_warehouse, tmp_path):
    warehouse = tmp_path / "warehouse"
    for table in ("interactions", "items", "users"):  # the shared warehouse is read-only
        shutil.copytree(table_path(ml_small_warehouse, table), table_path(warehouse, table))
    k = 20
    # EASE over the 2,000 most-rated of 9,742 movies, the rest padded by popularity: lists for every user are the
    # point here; its full size (B of 0.8 GB) is the nightly's
    config = BaselinesConfig(ease=EASEConfig(max_items=2000))
    results = run_baselines(spark, warehouse, k, RUN_DATE, config)
    recs = read_recommendations(spark, warehouse)
    per_model = {r.model: (r.users, r.rows, r.pairs) for r in recs.groupBy("model").agg(
        F.countDistinct("userId").alias("users"), F.count(F.lit(1)).alias("rows"),
        F.countDistinct("userId", "movieId").alias("pairs")).collect()}
    assert per_model == {m: (610, 610 * k, 610 * k) for m in BASELINES}
    assert {m: r["rows"] for m, r in results.items()} == {m: 610 * k for m in BASELINES}
    history = (read_table(spark, table_path(warehouse, "interactions"))
               .where(F.col("split").isin("train", "validation")).select("userId", "movieId"))
    assert recs.join(history, ["userId", "movieId"]).count() == 0

    assert topn(spark, warehouse, "markov", k, RUN_DATE, "rerun", config) == 610 * k
    recs = read_recommendations(spark, warehouse)
    assert recs.count() == len(BASELINES) * 610 * k
    assert {r.run_id for r in recs.where(F.col("model") == "markov").select("run_id").distinct().collect()} == {"rerun"}


@pytest.mark.slow
def test_catalogue_row_lists_equal_the_spark_sql_formulation_on_ml_small(spark, ml_small_warehouse, tmp_path):
    """Popularity, genre, markov, ar2 and hybrid are ranked as catalogue rows in numpy blocks, over each block's
    candidate and popularity-prefix columns only; the same lists, both views, come out of the plain SQL formulation:
    candidates (genre mixture + 1, AR(2) + 2, AR(1) + 1, every user's k + n_seen most popular), best per pair,
    seen removed, top-k by score then tie key; hybrid's normalised blend over the same candidates."""
    from recsys_spark.baselines.common import last_items, popular_candidates, rank_candidates
    from recsys_spark.baselines.markov import TIER_AR1, TIER_AR2, ar1_candidates, ar2_candidates
    from recsys_spark.baselines.genre import (TIER_GENRE, genre_item_popularity, item_genres,
                                              user_genre_weights)
    from recsys_spark.baselines.recommend import TrainTables, recommend

    config, k = BaselinesConfig(), 20
    for table in ("interactions", "items", "users"):  # the shared warehouse is read-only; transitions are written
        shutil.copytree(table_path(ml_small_warehouse, table), table_path(tmp_path, table))
    tables = TrainTables.open(spark, tmp_path, config)
    try:
        for split in ("test", "validation"):
            view = tables.as_of(split)
            padding = popular_candidates(view.interactions, view.popularity, k)
            genres = item_genres(view.items)
            mixture = (user_genre_weights(view.interactions, genres, config.genre.top_genres)
                       .join(genre_item_popularity(view.interactions, genres, config.genre.items_per_genre), "genre")
                       .groupBy("user_idx", "item_idx")
                       .agg((F.sum(F.col("weight") * F.col("p_item")) + TIER_GENRE).alias("score")))
            states = last_items(view.interactions)
            order1 = ar1_candidates(states, view.chain(1)).select(
                "user_idx", "item_idx", (F.col("prob") + TIER_AR1).alias("score"))
            order2 = ar2_candidates(states, view.chain(2)).select(
                "user_idx", "item_idx", (F.col("prob") + TIER_AR2).alias("score"))
            ties = view.ties
            expected = {"hybrid": sql_hybrid(view, padding, k, config.hybrid.alpha),
                        "popularity": rank_candidates(padding, view.interactions, k, ties),
                        "genre": rank_candidates(mixture.unionByName(padding), view.interactions, k, ties),
                        "markov": rank_candidates(order1.unionByName(padding), view.interactions, k, ties),
                        "ar2": rank_candidates(order2.unionByName(order1).unionByName(padding), view.interactions, k,
                                               ties)}
            for model, reference in expected.items():
                got = sorted((r.user_idx, r.rank, r.item_idx, round(r.score, 9))
                             for r in recommend(view, model, k, config).collect())
                want = sorted((r.user_idx, r.rank, r.item_idx, round(r.score, 9)) for r in reference.collect())
                assert len(got) == len(want) > 0, (split, model)
                assert got == want, (split, model)
    finally:
        tables.close()


def sql_hybrid(view, padding, k: int, alpha: float):
    """Hybrid in Spark SQL (the formulation before catalogue rows): the AR(1) successors and the k + n_seen most
    popular items, seen removed, alpha * markov / the user's best + (1 - alpha) * pop / the user's best."""
    from pyspark.sql import Window

    from recsys_spark.baselines.common import last_items
    from recsys_spark.baselines.markov import ar1_candidates
    from recsys_spark.recommendations import seen_pairs, top_k

    def normalised(column):
        top = F.max(column).over(Window.partitionBy("user_idx"))
        return F.when(top > 0, F.col(column) / top).otherwise(F.lit(0.0))

    item_pop = F.broadcast(view.popularity.select("item_idx", F.col("score").alias("pop")))
    markov = (ar1_candidates(last_items(view.interactions), view.chain(1)).join(item_pop, "item_idx", "left")
              .select("user_idx", "item_idx", F.col("prob").alias("markov"), F.coalesce("pop", F.lit(0.0)).alias("pop")))
    popular = padding.select("user_idx", "item_idx", F.lit(0.0).alias("markov"), F.col("score").alias("pop"))
    candidates = (markov.unionByName(popular)
                  .groupBy("user_idx", "item_idx").agg(F.max("markov").alias("markov"), F.max("pop").alias("pop"))
                  .join(seen_pairs(view.interactions), ["user_idx", "item_idx"], "left_anti"))
    scored = candidates.withColumn("score", F.lit(alpha) * normalised("markov") + F.lit(1.0 - alpha) * normalised("pop"))
    return top_k(scored, k, view.ties).select("user_idx", "item_idx", "rank", "score")
