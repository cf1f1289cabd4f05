"""Shared fixtures: one local SparkSession for the whole test run, and the real ml-latest-small data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from servers import free_port, start_server

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ML_SMALL = SHARED_DATA / "ml-latest-small"

# The tests exercise the delta-rs path: the Delta Lake jars cannot be downloaded here.
os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")


@pytest.fixture(scope="session")
def spark():
    from recsys_spark.session import get_spark

    session = get_spark(
        "recsys-tests",
        conf={
            "spark.master": "local[2]",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.driver.memory": "3g",
            "spark.ui.enabled": "false",
        },
        master="local[2]",
    )
    yield session
    session.stop()


ML_SMALL_MISSING = f"real data absent: {ML_SMALL}/ratings.csv (MovieLens ml-latest-small, in ../shared beside the repo)"


def pytest_collection_modifyitems(config, items) -> None:
    """Without the real data, every test whose fixtures reach ml_small is skipped before any fixture starts Spark
    (pytest's -ra summary folds them into one line per file)."""
    if (ML_SMALL / "ratings.csv").exists():
        return
    for item in items:
        if "ml_small" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=ML_SMALL_MISSING))


def pytest_terminal_summary(terminalreporter) -> None:
    if not (ML_SMALL / "ratings.csv").exists():
        terminalreporter.write_line(ML_SMALL_MISSING)


@pytest.fixture(scope="session")
def ml_small() -> Path:
    """The real ml-latest-small; every test that needs it (directly or through ml_small_warehouse) is skipped,
    with one line naming the expected path, when it is absent."""
    if not (ML_SMALL / "ratings.csv").exists():
        pytest.skip(ML_SMALL_MISSING)
    return ML_SMALL


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def ml_small_warehouse(ml_small, spark, tmp_path_factory) -> Path:
    """ml-latest-small through the real ETL, once per test run; tests must treat it as read-only."""
    from recsys_spark.etl import EtlConfig, run_etl

    warehouse = tmp_path_factory.mktemp("ml_small_warehouse")
    run_etl(spark, ml_small, warehouse, EtlConfig())
    return warehouse


@pytest.fixture(scope="session")
def served_warehouse(spark, ml_small_warehouse, tmp_path_factory) -> dict:
    """ml_small_warehouse plus what `recsys serve` reads (tests/serve_warehouse.py): {"warehouse", "reports"};
    tests must treat it as read-only (copy it to change it)."""
    from serve_warehouse import build

    return build(spark, ml_small_warehouse, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def served_url(served_warehouse, tmp_path_factory) -> str:
    """`recsys serve` over served_warehouse in its own process on a free loopback port, for the tests that need a
    real HTTP server (the browser, the schema fuzzer); its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server([sys.executable, "-m", "jobs.cli", "serve", "--warehouse", str(served_warehouse["warehouse"]),
                           "--reports", str(served_warehouse["reports"]), "--port", str(port), "--reload-interval",
                           "0"], url, "/health", tmp_path_factory.mktemp("served_url") / "serve.log",
                          "recsys serve", cwd=REPO)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def small_warehouse(spark, tmp_path_factory) -> Path:
    """Small generated data through the real ETL, with what every family's top-N reads: ALS factors (`als`), the
    sequence shards and a trained SASRec. Tests may add partitions of their own to `recommendations`, nothing else."""
    import subprocess

    from pyspark.sql import functions as F

    from recsys_data.generate import generate
    from recsys_spark.als import AlsConfig, fit, ratings, save
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.sequences import SequenceConfig, export_sequences

    root = tmp_path_factory.mktemp("small")
    generate(root / "data", n_users=60, n_items=200, n_ratings=3000, seed=5)
    warehouse = root / "warehouse"
    run_etl(spark, root / "data", warehouse, EtlConfig())
    interactions = read_table(spark, table_path(warehouse, "interactions"))
    model = fit(ratings(interactions.where(F.col("split") == "train")), AlsConfig(rank=4, max_iter=2))
    save(model, warehouse, "als", read_table(spark, table_path(warehouse, "users")),
         read_table(spark, table_path(warehouse, "items")))
    export_sequences(spark, warehouse, config=SequenceConfig(max_len=20, rows_per_group=8))
    train = subprocess.run(
        [sys.executable, "jobs/train.py", "--warehouse", str(warehouse), "--model", "sasrec", "--max-steps", "4",
         "train.eval_every=2", "train.device=cpu", "mlflow.enabled=false", "sasrec.hidden=16", "sasrec.n_layers=1"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    return warehouse


@pytest.fixture(autouse=True)
def _isolated_mlflow_env():
    """mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; a job run in-process must not leak its store
    into the next test's subprocesses."""
    keys = [k for k in os.environ if k.startswith("MLFLOW_") or k.startswith("RECSYS_MLFLOW")]
    saved = {k: os.environ[k] for k in keys}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_") or k.startswith("RECSYS_MLFLOW")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
    try:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory) -> dict:
    """moto's S3 server in its own process on a free loopback port for the whole run (skipped without moto[server]);
    the AWS_* settings recsys_core.storage reads to reach it. Tests set them with monkeypatch or pass them to a
    subprocess. Its own process: a server thread inside pytest would share the GIL with the clients it answers."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (the S3 API tests)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url,
                          "/moto-api/", tmp_path_factory.mktemp("moto") / "moto.log", "moto's server", timeout=60)
    yield {"AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    server.terminate()
    server.wait(timeout=30)
