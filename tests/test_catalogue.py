"""The model catalogue (jobs/catalogue.py): it agrees with each library's registry and with conf/, and
`recsys topn --model X` works through the real CLI for a model of every family (on conftest's small_warehouse)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import catalogue
from jobs.cli import main as recsys
from jobs.config import CONF_DIR, ConfigError
from jobs.plan import config_sections
from recsys_spark.delta import read_table, table_path

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 11, 23)
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API
K = 5


def test_names_agree_with_the_libraries_registries():
    import recsys_torch.models
    from recsys_spark.baselines import BASELINES

    assert catalogue.names(catalogue.TORCH) == list(recsys_torch.models.MODELS)
    assert catalogue.names(catalogue.BASELINE) == list(BASELINES)
    assert {m.family for m in catalogue.MODELS.values()} == set(catalogue.FAMILIES)


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
def test_topn_through_the_cli_for_every_family(spark, small_warehouse, model):
    warehouse = small_warehouse
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
