"""The model catalogue: every model the project fits, named once.

A model is a name and a family; the family says which config sections its models read, which `recsys` command
fits them (and whether that command writes their top-N too), where the top-N runs, and how `recsys topn` writes it.
The CLI (`recsys topn --model`, `recsys train --model`), the `pipeline.*_models` checks, `recsys topn`'s dispatch,
the nightly plan and the schedulers generated from it all read this table. Adding a model to a family is one
entry in MODELS plus its code (and its name in its library's registry: recsys_spark.baselines.RECOMMENDERS,
recsys_torch.models.MODELS); tests/test_catalogue.py checks that the two agree.

Names only: importing this imports neither Spark nor torch (the top-N writers import their library when called).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from jobs.common import require_tables
from jobs.config import ConfigError, section

# A top-N writer: (resolved config, warehouse, model) -> write(k, run_date, run_id). Everything a user can get
# wrong is checked when it is called, before MLflow and Spark start; `write` does the work.
TopnWriter = Callable[[dict, str, str], Callable[[int, dt.date, str], None]]
LISTS = "lists"  # Family.fit_after of a family that reads the other models' lists (the ensemble)


@dataclass(frozen=True)
class Family:
    name: str
    pipeline_key: str                 # the pipeline.* list that chooses its models for the nightly run
    sections: tuple[str, ...]         # config sections its models read ("{model}": the model's own section)
    fit_command: str                  # the `recsys` command that fits its models
    fit_step: str                     # the pipeline step's name; without "{model}": one step fits them all
    fit_after: str                    # the step whose output the fit reads (LISTS: every step that writes lists)
    fit_runtime: str                  # spark | torch: how a scheduler launches the fit (jobs/plan.py, LAUNCHERS)
    fit_args: tuple[str, ...]         # flags of the fit step ("{model}", "{k}", "{run_date}" filled in)
    fit_overrides: tuple[str, ...]    # key=value of the fit step ("{models}": the family's configured models)
    fit_per_run_date: bool            # the fit writes rows filed under the run date (so a new date re-runs it)
    topn_runtime: str | None          # spark | python; None: the fit step writes the top-N itself
    write_topn: TopnWriter            # `recsys topn --model NAME` for a model of this family

    def model_sections(self, model: str) -> list[str]:
        return [s.format(model=model) for s in self.sections]


@dataclass(frozen=True)
class Model:
    name: str
    family: Family
    summary: str
    fit_overrides: tuple[str, ...] = ()  # key=value the fit step adds for this model (an ALS variant's settings)

    @property
    def sections(self) -> list[str]:
        return self.family.model_sections(self.name)


def _spark(cfg: dict, model: str):
    from recsys_spark.session import get_spark

    return get_spark(f"recsys-topn-{model}", conf=section(cfg, "spark"))


def _als_topn(cfg: dict, warehouse: str, model: str):
    from recsys_spark.als import AlsConfig

    block_size = AlsConfig.from_dict(section(cfg, "als")).topn_block_size
    require_tables(warehouse, f"{model}_user_factors", f"{model}_item_factors", "interactions", "items", "users")

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_spark.als_topn import write_als_topn

        write_als_topn(_spark(cfg, model), warehouse, model, k, run_date, run_id, block_size)

    return write


def _baseline_topn(cfg: dict, warehouse: str, model: str):
    from recsys_spark.baselines import BaselinesConfig

    config = BaselinesConfig.from_dict(section(cfg, "baselines"))
    require_tables(warehouse, "interactions", "items", "users")

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_spark.baselines import topn

        topn(_spark(cfg, model), warehouse, model, k, run_date, run_id, config=config)

    return write


def _torch_topn(cfg: dict, warehouse: str, model: str):
    train = section(cfg, "train")  # recsys_torch checks its own inputs (shards, best.pt) before writing

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_torch.infer import topn

        for split in ("test", "validation"):  # the validation-time list: what the ensemble chooses on
            topn(warehouse=warehouse, model=model, k=k, run_date=run_date, run_id=run_id,
                 device=str(train.get("device", "auto")), amp=bool(train.get("amp", True)),
                 sequences=train.get("sequences"), model_dir=train.get("output"), split=split)

    return write


def _ensemble_topn(cfg: dict, warehouse: str, model: str):
    from recsys_spark.ensemble import EnsembleConfig

    config = EnsembleConfig.from_dict(section(cfg, "ensemble"))
    require_tables(warehouse, "interactions", "recommendations", "recommendations_validation")

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from jobs.ensemble import write_ensemble

        write_ensemble(cfg, config, warehouse, k, run_date, run_id)

    return write


ALS = Family("als", "spark_models", sections=("als",), fit_command="als", fit_step="{model}", fit_after="etl",
             fit_runtime="spark", fit_args=("--run-date", "{run_date}"), fit_overrides=(), fit_per_run_date=False,
             topn_runtime="spark", write_topn=_als_topn)
BASELINE = Family("baseline", "spark_models", sections=("baselines",), fit_command="baselines",
                  fit_step="baselines", fit_after="etl", fit_runtime="spark",
                  fit_args=("--k", "{k}", "--run-date", "{run_date}"), fit_overrides=("baselines.models={models}",),
                  fit_per_run_date=True, topn_runtime=None, write_topn=_baseline_topn)
TORCH = Family("torch", "torch_models", sections=("train", "{model}"), fit_command="train",
               fit_step="train-{model}", fit_after="export-sequences", fit_runtime="torch",
               fit_args=("--model", "{model}"), fit_overrides=(), fit_per_run_date=False, topn_runtime="python",
               write_topn=_torch_topn)
ENSEMBLE = Family("ensemble", "spark_models", sections=("ensemble",), fit_command="ensemble", fit_step="ensemble",
                  fit_after=LISTS, fit_runtime="spark", fit_args=("--k", "{k}", "--run-date", "{run_date}"),
                  fit_overrides=(), fit_per_run_date=True, topn_runtime=None, write_topn=_ensemble_topn)
FAMILIES = (ALS, BASELINE, TORCH, ENSEMBLE)  # in plan order: the ensemble reads every other family's lists

MODELS: dict[str, Model] = {m.name: m for m in (
    Model("als", ALS, "MLlib ALS on the ratings (explicit; RMSE/MAE too)"),
    Model("als_implicit", ALS, "MLlib ALS in implicit mode (ratings as confidence)",
          fit_overrides=("als.name=als_implicit", "als.implicit_prefs=true")),
    Model("popularity", BASELINE, "train counts, global or over a recent window"),
    Model("genre", BASELINE, "popularity within the user's favourite genres"),
    Model("markov", BASELINE, "Markov AR(1): successors of the last item"),
    Model("ar2", BASELINE, "AR(2) of the last two items, backing off to AR(1) and popularity"),
    Model("hybrid", BASELINE, "alpha * AR(1) + (1 - alpha) * popularity"),
    Model("itemcf", BASELINE, "item-item cosine neighbours of the recent history (item_neighbors)"),
    Model("ncf", TORCH, "NeuMF (GMF + MLP) with sampled negatives"),
    Model("sasrec", TORCH, "SASRec: causal self-attention over the history"),
    Model("ss4rec", TORCH, "SS4Rec: time-aware state-space model over the history"),
    Model("lightgcn", TORCH, "LightGCN: layer-averaged graph propagation over the train graph, BPR"),
    Model("ensemble", ENSEMBLE, "reciprocal-rank fusion of ensemble.models, weights chosen on validation NDCG@10"),
)}


def names(family: Family | None = None) -> list[str]:
    return [m.name for m in MODELS.values() if family is None or m.family is family]


def pipeline_choices(key: str) -> list[str]:
    """The models a pipeline.<key> list may name (spark_models, torch_models)."""
    return [m.name for m in MODELS.values() if m.family.pipeline_key == key]


def find(name: str) -> Model:
    """The catalogue's model; `als_<name>` is an ALS fitted under that name (`recsys als als.name=als_<name>`)."""
    if name in MODELS:
        return MODELS[name]
    if name.startswith("als_") and len(name) > 4:
        return Model(name, ALS, "MLlib ALS fitted with als.name=" + name)
    raise ConfigError(f"unknown model {name!r}; one of: {', '.join(names())} (or als_<name> for an ALS variant)")


def summary(family: Family) -> str:
    return " | ".join(names(family))
