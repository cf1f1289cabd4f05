"""The model catalogue as data: every model the project fits, named once.

A model is a name and a family; the family says which config sections its models read, which tables they need and
write, which `recsys` command fits them (and whether that command writes their top-N too), and where the top-N runs.
A torch model also names its implementing class and config class as import paths ("module:Name"), so that
recsys_torch's registry is derived from this table without this module importing torch.

Everything else that lists, dispatches or describes models reads this table: the CLI's choices, the
`pipeline.*_models` checks, the nightly plan and the schedulers generated from it, `recsys topn`'s dispatch
(jobs/catalogue.py adds the top-N writers), recsys_torch.models' registry, recsys_spark.baselines' dispatch, the
server's model parameter and its real-time lists, the ensemble's default members, the evaluator's reference model,
the benchmarks. Adding a model is one entry here plus its own files (`declare` adds one at run time: the tests'
dummy model).

Plain data: importing this imports neither Spark nor torch nor pyarrow.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from recsys_core.errors import ConfigError

LISTS = "lists"  # Family.fit_after of a family that reads the other models' lists (the ensemble)

# An ALS fitted under another name (`recsys als als.name=als_k20`): its factor tables are <name>_user_factors, ...
ALS_VARIANT_PATTERN = "als_[a-z0-9_]{1,60}"


def is_als_variant(name: str) -> bool:
    return re.fullmatch(ALS_VARIANT_PATTERN, name) is not None


def is_als_name(name: str) -> bool:
    """`als` or an ALS variant's name: what `als.name` may be."""
    return name == "als" or is_als_variant(name)


def factor_tables(model: str) -> tuple[str, str]:
    """The user and item factor tables of an ALS model (`als`, or a variant)."""
    return f"{model}_user_factors", f"{model}_item_factors"


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
    needs: tuple[str, ...]            # Delta tables its top-N (and fit) read ("{model}": the model's name)
    writes: tuple[str, ...]           # Delta tables its fit and top-N write

    def model_sections(self, model: str) -> list[str]:
        return [s.format(model=model) for s in self.sections]

    def model_needs(self, model: str) -> list[str]:
        return [t.format(model=model) for t in self.needs]

    def model_writes(self, model: str) -> list[str]:
        return [t.format(model=model) for t in self.writes]


@dataclass(frozen=True)
class Model:
    name: str
    family: Family
    summary: str
    fit_overrides: tuple[str, ...] = ()  # key=value the fit step adds for this model (an ALS variant's settings)
    implementation: str | None = None    # "module:name": torch, the model class; a baseline, its list function
    config_class: str | None = None      # torch: "module:Class" of its config dataclass
    requires: tuple[str, ...] = ()       # what the input must hold (DATA_FEATURES); else the plan leaves it out
    count: bool = False                  # a count model of the train data (benchmarks/public.py's best count model)
    ensemble_member: bool = False        # in ensemble.models by default
    realtime: tuple[str, ...] | None = None  # what scores a posted history: the tables a count model reads (its
    #                                          last: the popularity fallback), () a torch checkpoint; None: nothing

    @property
    def sections(self) -> list[str]:
        return self.family.model_sections(self.name)

    @property
    def needs(self) -> list[str]:
        return self.family.model_needs(self.name)

    @property
    def writes(self) -> list[str]:
        return self.family.model_writes(self.name)


# What a model may require of the input (Model.requires), as the ETL's source check reports it.
DATA_FEATURES = {"ratings": "explicit ratings", "genres": "item genres"}

ETL_TABLES = ("interactions", "items", "users")  # what every model reads of the ETL's output
LIST_TABLES = ("recommendations", "recommendations_validation")  # the lists of every model, test and validation

ALS = Family("als", "spark_models", sections=("als",), fit_command="als", fit_step="{model}", fit_after="etl",
             fit_runtime="spark", fit_args=("--run-date", "{run_date}"), fit_overrides=(), fit_per_run_date=False,
             topn_runtime="spark", needs=(*factor_tables("{model}"), *ETL_TABLES),
             writes=(*factor_tables("{model}"), *LIST_TABLES))
BASELINE = Family("baseline", "spark_models", sections=("baselines",), fit_command="baselines",
                  fit_step="baselines", fit_after="etl", fit_runtime="spark",
                  fit_args=("--k", "{k}", "--run-date", "{run_date}"), fit_overrides=("baselines.models={models}",),
                  fit_per_run_date=True, topn_runtime=None, needs=ETL_TABLES,
                  writes=(*LIST_TABLES, "transitions_ar1", "transitions_ar2", "item_neighbors"))
TORCH = Family("torch", "torch_models", sections=("train", "{model}"), fit_command="train",
               fit_step="train-{model}", fit_after="export-sequences", fit_runtime="torch",
               fit_args=("--model", "{model}"), fit_overrides=(), fit_per_run_date=False, topn_runtime="python",
               needs=(), writes=(*LIST_TABLES, "item_embeddings"))  # reads shards, not tables (recsys_torch checks)
ENSEMBLE = Family("ensemble", "spark_models", sections=("ensemble",), fit_command="ensemble", fit_step="ensemble",
                  fit_after=LISTS, fit_runtime="spark", fit_args=("--k", "{k}", "--run-date", "{run_date}"),
                  fit_overrides=(), fit_per_run_date=True, topn_runtime=None,
                  needs=("interactions", *LIST_TABLES), writes=LIST_TABLES)
FAMILIES = (ALS, BASELINE, TORCH, ENSEMBLE)  # in plan order: the ensemble reads every other family's lists


def _torch(name: str, module: str, cls: str, summary: str, **kwargs) -> Model:
    return Model(name, TORCH, summary, implementation=f"recsys_torch.models.{module}:{cls}",
                 config_class=f"recsys_torch.model_configs:{cls}Config", **kwargs)


def _baseline(name: str, module: str, summary: str, **kwargs) -> Model:
    return Model(name, BASELINE, summary, implementation=f"recsys_spark.baselines.{module}:{name}", **kwargs)


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("als", ALS, "MLlib ALS on the ratings (explicit; RMSE/MAE too)", requires=("ratings",)),
    Model("als_implicit", ALS, "MLlib ALS in implicit mode (ratings as confidence)",
          fit_overrides=("als.name=als_implicit", "als.implicit_prefs=true"), ensemble_member=True),
    _baseline("popularity", "popularity", "train counts, global or over a recent window",
              realtime=("interactions",)),
    _baseline("genre", "genre", "popularity within the user's favourite genres", requires=("genres",)),
    _baseline("markov", "markov", "Markov AR(1): successors of the last item", count=True,
              realtime=("transitions_ar1", "interactions")),
    _baseline("ar2", "markov", "AR(2) of the last two items, backing off to AR(1) and popularity", count=True,
              ensemble_member=True, realtime=("transitions_ar2", "transitions_ar1", "interactions")),
    _baseline("hybrid", "hybrid", "alpha * AR(1) + (1 - alpha) * popularity"),
    _baseline("itemcf", "itemcf", "item-item cosine neighbours of the recent history (item_neighbors)", count=True,
              ensemble_member=True, realtime=("item_neighbors", "interactions")),
    _baseline("ease", "ease", "EASE: closed-form item-item autoencoder (G + l2 I)^-1 over the most-rated items",
              count=True),
    _torch("ncf", "ncf", "NCF", "NeuMF (GMF + MLP) with sampled negatives"),
    _torch("sasrec", "sasrec", "SASRec", "SASRec: causal self-attention over the history", realtime=()),
    _torch("ss4rec", "ss4rec", "SS4Rec", "SS4Rec: time-aware state-space model over the history", realtime=()),
    _torch("lightgcn", "lightgcn", "LightGCN", "LightGCN: layer-averaged graph propagation over the train graph, BPR"),
    Model("ensemble", ENSEMBLE, "reciprocal-rank fusion of ensemble.models, weights chosen on validation NDCG@10"),
)}
REFERENCE_MODEL = "ar2"      # evaluate.reference_model's default: every other model's paired difference to it
FALLBACK_MODEL = "popularity"  # what the server answers a user without a list from (its `fallback` field)


def declare(model: Model) -> Model:
    """Add a model to the catalogue at run time (what an entry in MODELS does; the tests' dummy model)."""
    if model.name in MODELS:
        raise ValueError(f"model {model.name!r} is already in the catalogue")
    MODELS[model.name] = model
    return model


def withdraw(name: str) -> None:
    """Take a model `declare` added back out."""
    del MODELS[name]


def load(path: str):
    """The object a catalogue path ("module:name") names, importing its module."""
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def unmet(model: Model, has: dict[str, bool]) -> list[str]:
    """What `model` requires that the input lacks (`has`: DATA_FEATURES -> present)."""
    return [DATA_FEATURES[need] for need in model.requires if not has.get(need, False)]


def names(family: Family | None = None) -> list[str]:
    return [m.name for m in MODELS.values() if family is None or m.family is family]


def count_models() -> list[str]:
    return [m.name for m in MODELS.values() if m.count]


def ensemble_members() -> list[str]:
    """ensemble.models' default."""
    return [m.name for m in MODELS.values() if m.ensemble_member]


def realtime_models() -> list[str]:
    """The models that score a posted history (the server's POST /recommendations)."""
    return [m.name for m in MODELS.values() if m.realtime is not None]


def pipeline_choices(key: str) -> list[str]:
    """The models a pipeline.<key> list may name (spark_models, torch_models)."""
    return [m.name for m in MODELS.values() if m.family.pipeline_key == key]


def unknown_model(name: str, where: str = "", family: Family | None = None) -> ConfigError:
    """The one message for a name the catalogue lacks, or (`family`) that is not one of the family's models
    (`where`: the config key or flag that named it)."""
    prefix = f"{where}: " if where else ""
    kind = f"{family.name} model" if family else "model"
    variants = " (or als_<name> for an ALS variant)" if family in (None, ALS) else ""
    return ConfigError(f"{prefix}unknown {kind} {name!r}; one of: {', '.join(names(family))}{variants}")


def find(name: str) -> Model:
    """The catalogue's model; `als_<name>` is an ALS fitted under that name (`recsys als als.name=als_<name>`)."""
    if name in MODELS:
        return MODELS[name]
    if is_als_variant(name):
        return Model(name, ALS, "MLlib ALS fitted with als.name=" + name)
    raise unknown_model(name)


def summary(family: Family) -> str:
    return " | ".join(names(family))
