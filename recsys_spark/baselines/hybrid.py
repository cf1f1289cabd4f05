"""Hybrid: alpha * AR(1) + (1 - alpha) * popularity, both normalised to [0, 1] per user.

Candidates: the user's AR(1) successors and their k + n_seen most popular items, seen items left out. Then
markov = P(next | last) / the user's largest such P among them (0 for an item that is no successor, and for every
item of a user without AR(1) state) and pop = popularity score / the user's largest among them. Ranked as catalogue
rows (common.PopularityRow): an item that is neither has only its popularity and cannot reach the top k.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.baselines.common import (CATALOGUE_ROW_BLOCK, PopularityRow, candidate_pairs, last_items,
                                           with_candidates)
from recsys_spark.baselines.markov import ar1_candidates
from recsys_spark.blocked_topk import blocked_top_k, seen_cells
from recsys_core.ties import Ties
from recsys_core.config import Config, checked, number_in

if TYPE_CHECKING:
    from recsys_spark.baselines.recommend import TrainTables


@dataclass(frozen=True)
class HybridConfig(Config):
    section = "baselines.hybrid"

    alpha: float = checked(0.5, number_in(0, 1))  # weight of the AR(1) score; 1 - alpha goes to popularity


def _normalised(values: np.ndarray) -> np.ndarray:
    """Each row over its largest entry, 0 for a row whose largest is not positive; -inf entries (seen, padding)
    count for nothing and come out 0."""
    top = values.max(axis=1, keepdims=True)
    values = np.where(np.isneginf(values), 0.0, values)
    return np.where(top > 0, values / np.where(top > 0, top, 1.0), 0.0)


def hybrid_scores(model: tuple[PopularityRow, int, float], block: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """blocked_top_k's score_block: alpha * markov + (1 - alpha) * pop over the block's successors and popularity
    prefix, both normalised over the user's unseen columns."""
    pop, k, alpha = model
    rows, items, probs = candidate_pairs(block)
    successor_columns = pop.position[items]
    columns = np.union1d(pop.prefix_columns(block, k), successor_columns)
    popularity = pop.block(columns, block.num_rows, k)  # -inf on the padding
    markov = np.where(np.isneginf(popularity), -np.inf, 0.0)
    np.maximum.at(markov, (rows, np.searchsorted(columns, successor_columns)), probs)
    seen = block.column("seen")
    seen_rows, seen_columns = seen_cells(pc.list_flatten(seen).to_numpy(zero_copy_only=False).astype(np.int64),
                                         pc.list_parent_indices(seen).to_numpy(zero_copy_only=False),
                                         pop.item_ids[columns], None)
    popularity[seen_rows, seen_columns] = -np.inf
    markov[seen_rows, seen_columns] = -np.inf
    scores = alpha * _normalised(markov) + (1.0 - alpha) * _normalised(popularity)
    scores[np.isneginf(popularity)] = -np.inf
    return scores, pop.item_ids[columns]


def recommend_hybrid(interactions: DataFrame, users: DataFrame, ar1: DataFrame, popularity: DataFrame, k: int,
                     alpha: float, ties: Ties) -> DataFrame:
    """users: user_idx, seen (common.seen_as_of for the view `interactions` is)."""
    successors = ar1_candidates(last_items(interactions), ar1).select("user_idx", "item_idx",
                                                                       F.col("prob").alias("score"))
    pop = PopularityRow.of(popularity)
    return blocked_top_k(with_candidates(users, successors), (pop, k, float(alpha)), hybrid_scores, pop.item_ids, k,
                         ties, block_size=CATALOGUE_ROW_BLOCK)


def hybrid(tables: "TrainTables", k: int, config) -> DataFrame:
    """The catalogue's entry."""
    return recommend_hybrid(tables.interactions, tables.users_as_of(), tables.chain(1), tables.popularity, k,
                            config.hybrid.alpha, tables.ties)
