"""Genre: a mixture over the user's favourite genres of the items' popularity within each genre.

score(u, i) = sum over the user's top genres g of w(u, g) * p(i | g), where
  share(u, g) = the user's train interactions with an item of genre g / the user's train interactions,
  w(u, g)     = share(u, g) renormalised over the user's `top_genres` best genres (so the weights sum to 1),
  p(i | g)    = train count of i / train count of all items of genre g.
The score is a probability in (0, 1]; it is tier 1 (1 + score), padded with popularity (tier 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import CATALOGUE_ROW_BLOCK, PopularityRow, train_rows
from recsys_spark.blocked_topk import blocked_top_k
from recsys_core.ties import Ties
from recsys_core.config import POSITIVE, Config, checked

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables

TIER_GENRE = 1.0


@dataclass(frozen=True)
class GenreConfig(Config):
    section = "baselines.genre"

    top_genres: int = checked(3, POSITIVE)  # the user's favourite genres that are scored
    # most popular items kept per genre (the rest of a list is padded by popularity)
    items_per_genre: int = checked(300, POSITIVE)


def item_genres(items: DataFrame) -> DataFrame:
    """item_idx, genre: one row per (rated item, genre); items without genres have none."""
    return (items.where(F.col("item_idx").isNotNull())
            .select("item_idx", F.explode("genres").alias("genre")))


def genre_item_popularity(interactions: DataFrame, genres: DataFrame, items_per_genre: int) -> DataFrame:
    """genre, item_idx, p_item: p(i | g) for the `items_per_genre` most popular items of each genre."""
    counts = train_rows(interactions).groupBy("item_idx").agg(F.count(F.lit(1)).alias("n"))
    per_genre = genres.join(counts, "item_idx")
    by_genre = Window.partitionBy("genre")
    ranked = Window.partitionBy("genre").orderBy(F.col("n").desc(), F.col("item_idx").asc())
    return (per_genre.withColumn("p_item", F.col("n") / F.sum("n").over(by_genre))
            .withColumn("genre_rank", F.row_number().over(ranked))
            .where(F.col("genre_rank") <= items_per_genre)
            .select("genre", "item_idx", "p_item"))


def user_genre_weights(interactions: DataFrame, genres: DataFrame, top_genres: int) -> DataFrame:
    """user_idx, genre, share, weight for each user's `top_genres` favourite genres (by share; ties by name)."""
    train = train_rows(interactions)
    totals = train.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n_user"))
    per_genre = (train.join(genres, "item_idx").groupBy("user_idx", "genre").agg(F.count(F.lit(1)).alias("n"))
                 .join(totals, "user_idx")
                 .withColumn("share", F.col("n") / F.col("n_user")))
    favourite = Window.partitionBy("user_idx").orderBy(F.col("share").desc(), F.col("genre").asc())
    top = (per_genre.withColumn("genre_rank", F.row_number().over(favourite))
           .where(F.col("genre_rank") <= top_genres))
    return (top.withColumn("weight", F.col("share") / F.sum("share").over(Window.partitionBy("user_idx")))
            .select("user_idx", "genre", "share", "weight"))


@dataclass(frozen=True)
class GenreModel:
    """What a user's genre list is scored from: users' genre weights (a Spark table, ids of `genres`) and the
    item side, small enough for every executor: p(i | g) as a [genres, items some genre keeps] matrix and the
    popularity row."""

    weights: DataFrame  # user_idx, genre_weights array<struct<genre_id int, weight double>>
    popularity: PopularityRow  # tier 0
    columns: np.ndarray  # the catalogue columns of the items some genre keeps (ascending)
    matrix: np.ndarray  # [n_genres, len(columns)]: p(i | g) of the item in columns[c], 0 where g does not keep it


def fit_genre(interactions: DataFrame, items: DataFrame, popularity: DataFrame, cfg: GenreConfig) -> GenreModel:
    """The genre mixture's pieces, fitted on train rows (the same for the test and the validation list)."""
    genres = item_genres(items)
    popular = genre_item_popularity(interactions, genres, cfg.items_per_genre).toArrow()
    names = sorted(set(popular.column("genre").to_pylist()))
    pop = PopularityRow.of(popularity)
    item_columns = pop.position[popular.column("item_idx").to_numpy().astype(np.int64)]
    columns = np.unique(item_columns)
    matrix = np.zeros((len(names), len(columns)))
    genre_of = {name: i for i, name in enumerate(names)}
    rows = np.array([genre_of[g] for g in popular.column("genre").to_pylist()], dtype=np.int64)
    matrix[rows, np.searchsorted(columns, item_columns)] = popular.column("p_item").to_numpy()
    ids = interactions.sparkSession.createDataFrame(list(genre_of.items()), "genre string, genre_id int")
    per_user = (user_genre_weights(interactions, genres, cfg.top_genres).join(F.broadcast(ids), "genre")
                .groupBy("user_idx").agg(F.collect_list(F.struct("genre_id", "weight")).alias("genre_weights")))
    return GenreModel(per_user, pop, columns, matrix)


def genre_block_scores(model: tuple[PopularityRow, np.ndarray, np.ndarray, int], block: pa.RecordBatch
                       ) -> tuple[np.ndarray, np.ndarray]:
    """blocked_top_k's score_block: 1 + sum_g w(u, g) p(i | g) where that is positive, else popularity; over the
    genres' items and the block's popularity prefix (the rest is popularity only and cannot reach the top k).
    model: GenreModel's popularity, columns and matrix, and the list length k."""
    popularity, genre_columns, matrix, k = model
    per_user = block.column("genre_weights")
    pairs = pc.list_flatten(per_user)
    weights = np.zeros((block.num_rows, len(matrix)))
    users = pc.list_parent_indices(per_user).to_numpy(zero_copy_only=False)
    weights[users, pairs.field("genre_id").to_numpy(zero_copy_only=False)] = (
        pairs.field("weight").to_numpy(zero_copy_only=False))
    columns = np.union1d(genre_columns, popularity.prefix_columns(block, k))
    scores = popularity.block(columns, block.num_rows, k)
    mixture = weights @ matrix
    at = np.searchsorted(columns, genre_columns)
    scores[:, at] = np.where(mixture > 0, TIER_GENRE + mixture, scores[:, at])
    return scores, popularity.item_ids[columns]


def recommend_genre(users: DataFrame, model: GenreModel, k: int, ties: Ties) -> DataFrame:
    """Each user's (user_idx, seen: common.seen_as_of) k best unseen items by genre mixture, over popularity."""
    with_weights = users.join(model.weights, "user_idx", "left")
    return blocked_top_k(with_weights, (model.popularity, model.columns, model.matrix, k), genre_block_scores,
                         model.popularity.item_ids, k, ties, block_size=CATALOGUE_ROW_BLOCK)


def genre(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry: the genre mixture, fitted once on the train rows (the same in both views)."""
    model = tables.shared(fit_genre, lambda: fit_genre(tables.interactions, tables.items, tables.popularity,
                                                       config.genre))
    return recommend_genre(tables.users_as_of(), model, k, tables.ties)
