"""The ETL on the real ml-latest-small (the shared `ml_small_warehouse`), checked against independent pandas
computations, plus exact line numbering when the input is split into many partitions."""
from __future__ import annotations

import json
import math

import deltalake
import pandas as pd
import pytest

from recsys_spark.delta import read_arrow

@pytest.fixture(scope="module")
def ratings(ml_small) -> pd.DataFrame:
    return pd.read_csv(ml_small / "ratings.csv")


@pytest.fixture(scope="module")
def interactions(ml_small_warehouse) -> pd.DataFrame:
    return read_arrow(ml_small_warehouse / "interactions").to_pandas()


@pytest.fixture(scope="module")
def items(ml_small_warehouse) -> pd.DataFrame:
    return read_arrow(ml_small_warehouse / "items").to_pandas().set_index("movieId")


def test_every_table_is_a_delta_table_with_the_documented_schema(ml_small_warehouse):
    expected = {
        "interactions": {"userId": "long", "movieId": "long", "rating": "double", "timestamp": "long",
                         "user_idx": "integer", "item_idx": "integer", "seq": "integer", "split": "string",
                         "temporal_split": "string"},
        "items": {"movieId": "long", "item_idx": "integer", "title": "string", "year": "integer",
                  "genres": "array<string>", "imdbId": "string", "tmdbId": "long"},
        "users": {"userId": "long", "user_idx": "integer", "n_interactions": "long"},
        "tags": {"userId": "long", "movieId": "long", "tag": "string", "timestamp": "long"},
        "rejects": {"file": "string", "line": "long", "raw": "string", "reason": "string", "field": "string"},
        "etl_report": {"file": "string", "category": "string", "reason": "string", "rows": "long"},
    }
    for name, columns in expected.items():
        fields = json.loads(deltalake.DeltaTable(str(ml_small_warehouse / name)).schema().to_json())["fields"]
        got = {f["name"]: f["type"] if isinstance(f["type"], str) else f"array<{f['type']['elementType']}>"
               for f in fields}
        assert got == columns, name


def test_real_counts_and_no_rejects(ml_small_warehouse, interactions, items):
    assert len(interactions) == 100_836
    assert interactions.userId.nunique() == 610
    assert len(items) == 9_742 and items.item_idx.notna().sum() == 9_724
    assert read_arrow(ml_small_warehouse / "users").num_rows == 610
    assert read_arrow(ml_small_warehouse / "tags").num_rows == 3_683
    assert read_arrow(ml_small_warehouse / "rejects").num_rows == 0
    assert items.imdbId.notna().sum() == 9_742 and items.tmdbId.isna().sum() == 8

    report = read_arrow(ml_small_warehouse / "etl_report").to_pylist()
    got = {(r["file"], r["category"]): r["rows"] for r in report}
    for name, rows in (("ratings.csv", 100_836), ("movies.csv", 9_742), ("tags.csv", 3_683), ("links.csv", 9_742)):
        assert got[(name, "input")] == got[(name, "accepted")] == rows
        assert got[(name, "rejected")] == 0
    summary = json.loads((ml_small_warehouse / "etl_report.json").read_text())
    assert summary["tie_break"] == "hash" and summary["seed"] == 42  # the defaults: a seeded hash, not movieId
    assert summary["kcore"]["min_user_interactions"] == 0 and summary["temporal"]["quantile"] == 0.8


def test_dense_indices_follow_ascending_ids(ml_small_warehouse, interactions, ratings):
    users = read_arrow(ml_small_warehouse / "users").to_pandas().sort_values("userId")
    assert users.user_idx.tolist() == list(range(1, 611))
    assert (users.set_index("userId").n_interactions == ratings.groupby("userId").size()).all()
    movie_idx = interactions.drop_duplicates("movieId").sort_values("movieId")
    assert movie_idx.item_idx.tolist() == list(range(1, 9_725))
    assert interactions.user_idx.map(users.set_index("user_idx").userId).equals(interactions.userId)


def test_leave_last_out_and_temporal_split_match_pandas(spark, ml_small_warehouse, interactions, ratings):
    # the default tie-break: same-second ratings by xxhash64(seed 42, userId, movieId), then movieId
    hashed = (spark.createDataFrame(ratings[["userId", "movieId"]])
              .selectExpr("userId", "movieId", "xxhash64(CAST(42 AS BIGINT), userId, movieId) AS h").toPandas())
    expected = ratings.merge(hashed, on=["userId", "movieId"]).sort_values(["userId", "timestamp", "h", "movieId"])
    expected["seq"] = expected.groupby("userId").cumcount() + 1
    got = interactions.sort_values(["userId", "seq"])
    assert got[["userId", "movieId", "seq"]].to_numpy().tolist() == expected[["userId", "movieId", "seq"]].to_numpy().tolist()
    per_user = got.groupby("userId").split.value_counts().unstack(fill_value=0)
    assert (per_user["test"] == 1).all() and (per_user["validation"] == 1).all()  # every ML user has >= 20
    last = got.groupby("userId").tail(1)
    assert (last.split == "test").all()

    ts = sorted(ratings.timestamp)
    cutoff = ts[math.ceil(0.8 * len(ts)) - 1]
    summary = json.loads((ml_small_warehouse / "etl_report.json").read_text())
    assert summary["temporal"]["cutoff_timestamp"] == cutoff
    assert ((interactions.temporal_split == "train") == (interactions.timestamp <= cutoff)).all()


def test_movies_titles_years_genres_and_links(items):
    assert items.loc[1, "title"] == "Toy Story" and items.loc[1, "year"] == 1995
    assert list(items.loc[1, "genres"]) == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert items.loc[1, "imdbId"] == "0114709" and items.loc[1, "tmdbId"] == 862
    assert items.loc[11, "title"] == "American President, The"  # quoted, with a comma
    assert items.loc[7789, "title"] == "11'09\"01 - September 11" and items.loc[7789, "year"] == 2002  # "" in CSV
    assert items.loc[40697, "title"] == "Babylon 5" and pd.isna(items.loc[40697, "year"])  # no year
    assert items.loc[27008, "title"] == "From Dusk Till Dawn 2: Texas Blood Money"  # trailing space
    assert items.loc[27008, "year"] == 1999
    assert items.loc[171749, "title"] == "Death Note: Desu nôto" and items.loc[171749, "year"] == 2006  # range
    assert list(items.loc[171749, "genres"]) == []  # (no genres listed)
    assert items.loc[791, "imdbId"] == "0113610" and pd.isna(items.loc[791, "tmdbId"])


def test_line_numbers_are_exact_over_many_partitions(spark, ml_small):
    from recsys_spark.row_checks import numbered_lines

    path = ml_small / "ratings.csv"
    settings = {"spark.sql.files.maxPartitionBytes": "65536", "spark.sql.files.openCostInBytes": "0"}
    before = {key: spark.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            spark.conf.set(key, value)
        lines, n = numbered_lines(spark, path)
        assert lines.rdd.getNumPartitions() >= 30
        got = [tuple(r) for r in lines.orderBy("line").collect()]
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
    with open(path, newline="", encoding="latin-1") as handle:  # \r, \n and \r\n end a line, as in Spark
        expected = [(i, text.rstrip("\r\n")) for i, text in enumerate(handle, start=1)]
    assert n == len(expected) == 100_837
    assert got == expected
