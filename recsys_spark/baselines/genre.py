"""Genre: a mixture over the user's favourite genres of the items' popularity within each genre.

score(u, i) = sum over the user's top genres g of w(u, g) * p(i | g), where
  share(u, g) = the user's train interactions with an item of genre g / the user's train interactions,
  w(u, g)     = share(u, g) renormalised over the user's `top_genres` best genres (so the weights sum to 1),
  p(i | g)    = train count of i / train count of all items of genre g.
The score is a probability in (0, 1]; it is tier 1 (1 + score), padded with popularity (tier 0).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.baselines.common import popular_candidates, rank_candidates, train_rows
from recsys_core.config import POSITIVE, Config, checked

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


def genre_scores(interactions: DataFrame, items: DataFrame, cfg: GenreConfig) -> DataFrame:
    """user_idx, item_idx, score: the mixture probability above, for the items of the user's top genres."""
    genres = item_genres(items)
    weights = user_genre_weights(interactions, genres, cfg.top_genres)
    popular = genre_item_popularity(interactions, genres, cfg.items_per_genre)
    return (weights.join(F.broadcast(popular), "genre")
            .groupBy("user_idx", "item_idx").agg(F.sum(F.col("weight") * F.col("p_item")).alias("score")))


def recommend_genre(interactions: DataFrame, items: DataFrame, popularity: DataFrame, k: int,
                    cfg: GenreConfig) -> DataFrame:
    by_genre = genre_scores(interactions, items, cfg).withColumn("score", F.col("score") + TIER_GENRE)
    padding = popular_candidates(interactions, popularity, k)
    return rank_candidates(by_genre.unionByName(padding), interactions, k)
