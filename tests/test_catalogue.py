"""The model catalogue (recsys_core/catalogue.py, with jobs/catalogue.py's top-N writers): the classes and
recommenders it names exist, conf/ agrees with it, and `recsys topn --model X` works through the real CLI for a
model of every family (on conftest's small_warehouse)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import catalogue
from jobs.cli import main as recsys
from jobs.config import CONF_DIR, ConfigError, load_config
from jobs.plan import PipelineConfig, config_sections
from recsys_core import schemas
from recsys_spark.delta import read_table, table_path

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 11, 23)
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API
K = 5


def test_every_torch_model_names_classes_that_import_and_build():
    import dataclasses

    import torch

    import recsys_torch.models

    torch_models = catalogue.names(catalogue.TORCH)
    assert torch_models and list(recsys_torch.models.MODELS) == torch_models
    for name in torch_models:
        model_cls, config_cls = recsys_torch.models.MODELS[name]
        entry = catalogue.MODELS[name]
        assert f"{model_cls.__module__}:{model_cls.__name__}" == entry.implementation, name
        assert issubclass(model_cls, torch.nn.Module) and dataclasses.is_dataclass(config_cls), name
        sizes = {k: 9 for k in ("n_items", "n_users", "max_len") if k in config_cls.__dataclass_fields__}
        net = recsys_torch.models.build_model(name, sizes, "cpu")
        assert isinstance(net, model_cls) and sum(p.numel() for p in net.parameters()) > 0, name
    for name in catalogue.names():
        has_code = catalogue.MODELS[name].family in (catalogue.TORCH, catalogue.BASELINE)
        assert (catalogue.MODELS[name].implementation is not None) == has_code, name


def test_every_baseline_of_the_catalogue_has_a_recommender_in_its_own_module():
    from recsys_spark.baselines import BaselinesConfig
    from recsys_spark.baselines.recommend import recommender

    baselines = catalogue.names(catalogue.BASELINE)
    for name in baselines:
        entry = recommender(name)
        assert callable(entry) and entry.__name__ == name and entry.__module__.startswith("recsys_spark.baselines.")
    with pytest.raises(ConfigError, match="unknown baseline model 'sasrec'; one of: popularity"):
        recommender("sasrec")  # a model of another family is no baseline
    assert BaselinesConfig.from_dict(None).models == tuple(baselines)  # `recsys baselines` fits each by default


def test_the_nightly_lists_in_conf_name_every_catalogue_model():
    configured = PipelineConfig.from_dict(load_config(["pipeline"])["pipeline"])
    for key in ("spark_models", "torch_models"):
        assert list(getattr(configured, key)) == catalogue.pipeline_choices(key), key
    with pytest.raises(ConfigError, match="'sasrecc' is not one of them"):
        PipelineConfig.from_dict({"torch_models": ["sasrec", "sasrecc"]})


def test_the_tables_a_family_needs_and_writes_are_tables_of_the_contract():
    tables = set(schemas.TABLES)
    for model in [*catalogue.MODELS.values(), catalogue.find("als_k20")]:
        named = {t.replace(model.name + "_", "als_") if model.family is catalogue.ALS else t
                 for t in (*model.needs, *model.writes)}
        assert model.writes and named <= tables, model.name
    assert catalogue.find("als_k20").needs[:2] == ["als_k20_user_factors", "als_k20_item_factors"]


def test_the_als_name_rule_is_one_rule():
    from recsys_spark.als import AlsConfig

    assert [catalogue.find(n).family for n in ("als", "als_implicit", "als_k20")] == [catalogue.ALS] * 3
    for bad in ("als_", "alsx", "als_K20", "ALS"):
        with pytest.raises(ConfigError):
            catalogue.find(bad)
        with pytest.raises(ConfigError, match="als.name must be `als` or als_<name>"):
            AlsConfig.from_dict({"name": bad})
    assert AlsConfig.from_dict({"name": "als_k20"}).name == "als_k20"


def test_every_config_section_a_step_reads_has_its_file_in_conf():
    for name in config_sections():
        assert (CONF_DIR / f"{name}.yaml").is_file(), name


def test_lookup_and_its_errors():
    assert catalogue.find("sasrec").sections == ["train", "sasrec"]
    assert catalogue.find("als_k20").family is catalogue.ALS and catalogue.find("als_k20").sections == ["als"]
    assert catalogue.find("ar2").family is catalogue.BASELINE
    with pytest.raises(ConfigError, match="unknown model 'svd'; one of: als, als_implicit, popularity"):
        catalogue.find("svd")


def test_cli_choices_come_from_the_catalogue():
    out = subprocess.run([sys.executable, "jobs/train.py", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120).stdout
    assert "{" + ",".join(catalogue.names(catalogue.TORCH)) + "}" in out
    bad = subprocess.run([sys.executable, "jobs/train.py", "--warehouse", "w", "--model", "popularity"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'popularity'" in bad.stderr


def test_jobs_import_neither_library_before_a_command_needs_it():
    """`recsys train` and the planner never import Spark; the Spark jobs never import torch."""
    code = ("import sys\n"
            "import jobs.cli, jobs.catalogue, jobs.plan, jobs.schedules, jobs.train, jobs.topn, jobs.pipeline\n"
            "print(sorted(m for m in ('pyspark', 'torch') if m in sys.modules))\n"
            "import jobs.etl, jobs.fit_als, jobs.baselines, jobs.export_sequences, jobs.evaluate\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "False"]


@pytest.mark.parametrize("model", ["als", "popularity", "sasrec", "ensemble"])  # one model of each family
def test_topn_through_the_cli_for_every_family(spark, small_warehouse_copy, model):
    warehouse = small_warehouse_copy
    assert {catalogue.find(model).family for model in ("als", "popularity", "sasrec", "ensemble")} == \
        set(catalogue.FAMILIES)
    # The ensemble blends two members' lists (written first, on a day of their own) and needs k >= 10.
    k, day = (10, DAY + dt.timedelta(days=1)) if model == "ensemble" else (K, DAY)
    argv = ["topn", "--warehouse", str(warehouse), "--k", str(k), "--run-date", day.isoformat()]
    if model == "ensemble":
        for member in ("als", "popularity"):
            assert recsys([*argv, "--model", member]) == 0
        argv += ["ensemble.models=[als,popularity]"]
    assert recsys([*argv[:5], "--model", model, *argv[5:]]) == 0
    recs = (read_table(spark, table_path(warehouse, "recommendations"))
            .where((F.col("model") == model) & (F.col("run_date") == F.lit(day))))
    users = read_table(spark, table_path(warehouse, "users")).count()
    per_user = recs.groupBy("userId").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("movieId").alias("items"))
    assert per_user.count() == users
    assert per_user.where((F.col("n") != k) | (F.col("items") != k)).isEmpty()


def test_a_model_declared_once_is_planned_offered_served_and_evaluated(spark, small_warehouse_copy):
    """One declaration (popularity's own list function under another name) and nothing else: the nightly plans it,
    the CLI offers and fits it, the server lists and serves it, the evaluator scores it."""
    from fastapi.testclient import TestClient

    from jobs.plan import Run, plan
    from jobs.topn import build_parser
    from recsys_serve.api import create_app
    from recsys_spark.evaluate import read_metrics

    from recsys_core import catalogue as declared

    warehouse = small_warehouse_copy
    declared.declare(declared.Model("dummy", declared.BASELINE, "the tests' dummy: popularity under another name",
                                    implementation="recsys_spark.baselines.popularity:popularity"))
    try:
        steps = plan(PipelineConfig.from_dict({"spark_models": ["popularity", "dummy"], "torch_models": []}),
                     Run("data", str(warehouse), DAY.isoformat(), "local"))
        baselines = next(step for step in steps if step.name == "baselines")
        assert "baselines.models=[popularity,dummy]" in baselines.overrides and "dummy" in baselines.lists_of
        assert "dummy" in build_parser().format_help()
        argv = ["--warehouse", str(warehouse), "--k", str(K), "--run-date", DAY.isoformat()]
        assert recsys(["topn", *argv, "--model", "dummy"]) == 0
        with TestClient(create_app(warehouse, reload_interval=0)) as client:
            served = client.get("/models").json()["models"]
            assert "dummy" in [m["name"] for m in served]
            user = client.get("/users").json()["users"][0]["userId"]
            body = client.get(f"/users/{user}/recommendations", params={"model": "dummy", "k": K}).json()
            assert body["model"] == "dummy" and len(body["items"]) == K and body["fallback"] is None
        assert recsys(["evaluate", *argv[:2], "--model", "dummy", "--run-date", DAY.isoformat()]) == 0
        scored = {(r["model"], r["metric"], r["k"]) for r in read_metrics(warehouse).to_pylist()}
        assert ("dummy", "ndcg", 10) in scored
    finally:
        declared.withdraw("dummy")
    with pytest.raises(ConfigError, match="unknown model 'dummy'"):
        catalogue.find("dummy")


def test_the_real_time_roles_the_catalogue_declares_are_the_codes():
    """Model.realtime: () for exactly the torch models that score a history, the tables a count model reads (the
    last: interactions, whose popularity pads every list) for those the server has tiers for."""
    from recsys_serve.count_models import CountModels, table_models
    from recsys_serve.realtime import sequence_models
    from recsys_torch.realtime import is_sequence_model

    assert sequence_models() == [m for m in catalogue.names(catalogue.TORCH) if is_sequence_model(m)] != []
    assert table_models() and all(catalogue.find(m).family is catalogue.BASELINE for m in table_models())
    for model in table_models():
        assert callable(getattr(CountModels, f"_{model}_tiers", None)), model
        assert catalogue.find(model).realtime[-1] == "interactions", model
