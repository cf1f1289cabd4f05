"""Spark baselines: popularity, genre, Markov AR(1), AR(2) with back-off, and an AR(1)/popularity hybrid."""
from recsys_spark.baselines.config import (MODELS, BaselinesConfig, GenreConfig, HybridConfig, MarkovConfig,
                                           PopularityConfig)
from recsys_spark.baselines.recommend import fit_transitions, recommend, run_baselines, topn

__all__ = ["MODELS", "BaselinesConfig", "GenreConfig", "HybridConfig", "MarkovConfig", "PopularityConfig",
           "fit_transitions", "recommend", "run_baselines", "topn"]
