"""`recsys topn`'s writers over the model catalogue (recsys_core.catalogue, re-exported here for the jobs).

The catalogue itself is data in recsys_core (names, families, config sections, tables, fit steps); what runs a
family's top-N lives here, beside the jobs that call it: TOPN_WRITERS maps a family to its writer, and
`topn_writer(model)` is `recsys topn --model NAME`'s. Importing this imports neither Spark nor torch (the writers
import their library when called).
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from jobs.common import require_tables
from jobs.config import build_section, section
from recsys_core.catalogue import (ALS, BASELINE, ENSEMBLE, FAMILIES, LISTS, MODELS, TORCH, Family, Model, find,
                                   names, pipeline_choices, summary, unmet)

# A top-N writer: (resolved config, warehouse, model) -> write(k, run_date, run_id). Everything a user can get
# wrong is checked when it is called, before MLflow and Spark start; `write` does the work.
TopnWriter = Callable[[dict, str, str], Callable[[int, dt.date, str], None]]


def _spark(cfg: dict, model: str):
    from recsys_spark.session import get_spark

    return get_spark(f"recsys-topn-{model}", conf=section(cfg, "spark"))


def _als_topn(cfg: dict, warehouse: str, model: str):
    block_size = build_section(cfg, "als").topn_block_size
    require_tables(warehouse, *find(model).needs)

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_spark.als_topn import write_als_topn

        write_als_topn(_spark(cfg, model), warehouse, model, k, run_date, run_id, block_size)

    return write


def _baseline_topn(cfg: dict, warehouse: str, model: str):
    config = build_section(cfg, "baselines")
    require_tables(warehouse, *find(model).needs)

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_spark.baselines import topn

        topn(_spark(cfg, model), warehouse, model, k, run_date, run_id, config=config)

    return write


def _torch_topn(cfg: dict, warehouse: str, model: str):
    train = build_section(cfg, "train")  # recsys_torch checks its own inputs (shards, best.pt) before writing

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from recsys_torch.infer import topn_lists

        # both lists: the test-time one and the validation-time one the ensemble chooses on
        topn_lists(warehouse=warehouse, model=model, k=k, run_date=run_date, run_id=run_id,
                   device=train.device, amp=train.amp, sequences=train.sequences, model_dir=train.output)

    return write


def _ensemble_topn(cfg: dict, warehouse: str, model: str):
    config = build_section(cfg, "ensemble")
    require_tables(warehouse, *find(model).needs)

    def write(k: int, run_date: dt.date, run_id: str) -> None:
        from jobs.ensemble import write_ensemble

        write_ensemble(cfg, config, warehouse, k, run_date, run_id)

    return write


TOPN_WRITERS: dict[str, TopnWriter] = {ALS.name: _als_topn, BASELINE.name: _baseline_topn, TORCH.name: _torch_topn,
                                        ENSEMBLE.name: _ensemble_topn}


def topn_writer(model: Model) -> TopnWriter:
    """`recsys topn --model NAME` for a model of any family."""
    return TOPN_WRITERS[model.family.name]


__all__ = ["ALS", "BASELINE", "ENSEMBLE", "FAMILIES", "LISTS", "MODELS", "TORCH", "TOPN_WRITERS", "Family", "Model",
           "TopnWriter", "find", "names", "pipeline_choices", "summary", "topn_writer"]
