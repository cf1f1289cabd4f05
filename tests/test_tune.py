"""`recsys tune` (the study: jobs/tuning_study.py): the search space is checked, a study writes a layer file the
config loader accepts, every trial is a nested MLflow run, and a killed study resumes (on conftest's
small_warehouse, ItemCF)."""
from __future__ import annotations

import shutil

import pytest

from jobs.config import ConfigError, load_config
from jobs.tuning_study import as_layer, search_space

SPACE = {"tune": {"itemcf": {"baselines.itemcf.neighbors": {"type": "int", "low": 5, "high": 40, "log": True},
                             "baselines.itemcf.shrinkage": {"type": "float", "low": 0.0, "high": 20.0}}}}


def test_the_declared_spaces_are_valid_and_bad_ones_are_one_clear_error():
    for model, sections in {"itemcf": ["baselines"], "als_implicit": ["als"], "sasrec": ["train", "sasrec"],
                            "ss4rec": ["train", "ss4rec"], "lightgcn": ["train", "lightgcn"]}.items():
        assert search_space(load_config(sections), model), model
    with pytest.raises(ConfigError, match="tune.ncf: no search space declared"):
        search_space(load_config(["train", "ncf"]), "ncf")
    bad = {"tune": {"itemcf": {"baselines.itemcf.neighbors": {"type": "int", "low": 50, "high": 5}}}}
    with pytest.raises(ConfigError, match="tune.itemcf.baselines.itemcf.neighbors: low and high"):
        search_space(bad, "itemcf")
    with pytest.raises(ConfigError, match="tune.itemcf.baselines.itemcf.shrinkage.log"):
        search_space({"tune": {"itemcf": {"baselines.itemcf.shrinkage": {"type": "float", "low": 0.0, "high": 1.0,
                                                                          "log": True}}}}, "itemcf")
    assert as_layer({"a.b.c": 1, "a.b.d": 2, "e": 3}) == {"a": {"b": {"c": 1, "d": 2}}, "e": 3}


def test_a_killed_study_resumes_and_its_best_values_are_a_config_layer(spark, small_warehouse, tmp_path):
    import mlflow
    import optuna

    from jobs.tuning_study import tune

    warehouse = tmp_path / "warehouse"
    for table in ("interactions", "items", "users"):
        shutil.copytree(small_warehouse / table, warehouse / table)
    cfg = {**load_config(["baselines", "evaluate"]), **SPACE}
    first = tune(warehouse, "itemcf", 1, None, cfg, {}, seed=1)
    assert (first.complete, first.failed) == (1, 0)

    storage = f"sqlite:///{warehouse / '_tune' / 'optuna.db'}"
    study = optuna.load_study(study_name="itemcf", storage=storage)
    killed = study.ask()  # what a process killed mid-trial leaves: a RUNNING trial with its values
    killed.suggest_int("baselines.itemcf.neighbors", 5, 40, log=True)
    killed.suggest_float("baselines.itemcf.shrinkage", 0.0, 20.0)

    resumed = tune(warehouse, "itemcf", 2, None, cfg, {}, seed=1)
    assert (resumed.complete, resumed.failed) == (2, 1)
    trials = optuna.load_study(study_name="itemcf", storage=storage).get_trials()
    retried = [t for t in trials if t.number > killed.number]
    assert [t.params for t in retried] == [killed.params] and retried[0].state.name == "COMPLETE"
    assert resumed.best_value == max(t.value for t in trials if t.value is not None)

    layer = load_config(["baselines"], config_file=resumed.best_file)["baselines"]["itemcf"]
    assert {f"baselines.itemcf.{k}": layer[k] for k in ("neighbors", "shrinkage")} == resumed.best_params
    client = mlflow.tracking.MlflowClient(f"sqlite:///{warehouse / '_mlflow' / 'mlflow.db'}")
    parent = client.search_runs([client.get_experiment_by_name("recsys").experiment_id],
                                "tags.`recsys.step` = 'tune'")
    assert len(parent) == 1 and parent[0].data.metrics["best_validation_ndcg_at_10"] == resumed.best_value
    children = client.search_runs([parent[0].info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["trial-0", f"trial-{killed.number + 1}"]
    assert all(r.data.metrics["validation_ndcg_at_10"] >= 0 for r in children)
