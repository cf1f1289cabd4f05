"""Spark baselines: popularity, genre, Markov AR(1), AR(2) with back-off, an AR(1)/popularity hybrid, and ItemCF, EASE."""
from recsys_spark.baselines.ease import EASEConfig
from recsys_spark.baselines.genre import GenreConfig
from recsys_spark.baselines.hybrid import HybridConfig
from recsys_spark.baselines.itemcf import ItemCFConfig
from recsys_spark.baselines.markov import MarkovConfig
from recsys_spark.baselines.popularity import PopularityConfig
from recsys_spark.baselines.recommend import (BaselinesConfig, TrainTables, fit_transitions,
                                              recommend, run_baselines, topn)

__all__ = ["BaselinesConfig", "EASEConfig", "GenreConfig", "HybridConfig", "ItemCFConfig", "MarkovConfig",
           "PopularityConfig", "TrainTables", "fit_transitions", "recommend", "run_baselines", "topn"]
