"""`recsys pipeline` builds every config section each planned step reads, with that step's own overrides, before its
first step, the run lock, MLflow or any folder: a bad value of any family's section is one line naming `section.key`,
exit 2, and the warehouse stays empty. Each job run alone checks its own sections the same way."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from one_rating import make_data

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def imported():
    """Every section's class imported once (pyspark's Python side among them), so that a test times the check."""
    from jobs.config import SECTION_CLASSES, config_class

    for name in SECTION_CLASSES:
        config_class(name)


@pytest.mark.parametrize("override, line", [
    ("etl.tie_break=time", "etl.tie_break must be one of movieId, hash, got 'time'"),
    ("als.rank=0", "als.rank must be a positive integer, got 0"),
    ("baselines.hybrid.alpha=1.5", "baselines.hybrid.alpha must be a number in [0, 1], got 1.5"),
    ("sequences.max_len=0", "sequences.max_len must be a positive integer, got 0"),
    ("train.warmup=1", "train.warmup must be a number in [0, 1), got 1"),
    # ncf's own train section (batch_size 1024) takes 512; sasrec's step reads the default 128
    ("train.min_batch_size=512", "train.min_batch_size must be at most train.batch_size (128), got 512"),
    ("sasrec.hidden=63", "sasrec.hidden must be a multiple of sasrec.n_heads (2), got 63"),
    ("ncf.mlp_dims=[63,32]", "ncf.mlp_dims must be at least two positive widths, the first even, got (63, 32)"),
    ("lightgcn.reg=-1", "lightgcn.reg must be a number >= 0, got -1"),
    ("ss4rec.dt_min=0.5", "ss4rec.dt_min must be at most ss4rec.dt_max (0.1), got 0.5"),
    ("ensemble.depth=5", "ensemble.depth must be at least 10, got 5"),
    ("evaluate.ks=[10,10]", "evaluate.ks must be a non-empty list of distinct positive integers, got [10, 10]"),
])
def test_a_bad_value_of_any_section_stops_the_run_before_anything_is_made(override, line, imported, tmp_path,
                                                                          capsys):
    from jobs.pipeline import main

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    warehouse.mkdir()
    start = time.monotonic()
    code = main(["--data", str(data), "--warehouse", str(warehouse), override])
    seconds = time.monotonic() - start
    assert (code, capsys.readouterr().err.splitlines()) == (2, [f"error: {line}"])
    # about 0.2 s idle, 1.5 s at load 19: the bound tells a check up front from a step run (a JVM alone is seconds)
    assert seconds < 5 and list(warehouse.iterdir()) == []


def test_each_step_is_checked_with_its_own_overrides_and_a_model_not_planned_is_not(imported, tmp_path, capsys):
    """The baselines step's own `baselines.models=[popularity]` replaces the run's (bad) one, as when it runs; sasrec
    is not planned; ncf is, and its bad value is the one line."""
    from jobs.pipeline import main

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    warehouse.mkdir()
    assert main(["--data", str(data), "--warehouse", str(warehouse), "pipeline.spark_models=[popularity]",
                 "pipeline.torch_models=[ncf]", "baselines.models=[als]", "sasrec.hidden=63", "ncf.dropout=1"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: ncf.dropout must be a number in [0, 1), got 1"]
    assert list(warehouse.iterdir()) == []


def test_recsys_train_alone_checks_its_model_section_before_anything(tmp_path, capsys):
    from jobs.train import main

    assert main(["--warehouse", str(tmp_path / "wh"), "--model", "sasrec", "sasrec.n_heads=0"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: sasrec.n_heads must be a positive integer, got 0"]
    assert not (tmp_path / "wh").exists()


def test_the_cli_refuses_sasrec_hidden_63_in_one_line_before_spark_torch_or_mlflow(ml_small, tmp_path):
    warehouse = tmp_path / "wh"
    # The real CLI, and what it started before refusing: no Spark context (a config class's module may import
    # pyspark, which starts nothing), neither torch nor MLflow imported (1.6 s idle).
    code = ("import sys\nfrom jobs.cli import main\ncode = main(sys.argv[1:])\n"
            "spark = sys.modules.get('pyspark')\n"
            "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules), "
            "spark is not None and spark.SparkContext._active_spark_context is not None)\nsys.exit(code)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, "pipeline", "--data", str(ml_small), "--warehouse",
                           str(warehouse), "sasrec.hidden=63"], cwd=REPO, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - start
    assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (
        2, ["error: sasrec.hidden must be a multiple of sasrec.n_heads (2), got 63"], "[] False\n")
    assert seconds < 20 and not warehouse.exists()  # a bound for a loaded CI machine: the time is measured, not tested


def test_every_section_a_plan_reads_has_the_class_that_names_it():
    from jobs.config import config_class
    from jobs.plan import config_sections
    from recsys_core.config import Config

    for name in config_sections():
        assert issubclass(config_class(name), Config) and config_class(name).section == name, name
