"""Shared fixtures: one local SparkSession for the whole test run, and the real ml-latest-small data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from built_once import built_once, copy_warehouse
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
def ml_small_warehouse(ml_small, request, tmp_path_factory) -> Path:
    """ml-latest-small through the real ETL, once per test run; tests must treat it as read-only."""
    def build(folder: Path) -> dict:
        from recsys_spark.etl import EtlConfig, run_etl

        run_etl(request.getfixturevalue("spark"), ml_small, folder, EtlConfig())
        return {"warehouse": str(folder)}

    return Path(built_once(tmp_path_factory, "ml_small_warehouse", build)["warehouse"])


@pytest.fixture(scope="session")
def served_warehouse(ml_small_warehouse, request, tmp_path_factory) -> dict:
    """ml_small_warehouse plus what `recsys serve` reads (tests/serve_warehouse.py): {"warehouse", "reports"};
    tests must treat it as read-only (copy it to change it)."""
    def build(folder: Path) -> dict:
        from serve_warehouse import build

        built = build(request.getfixturevalue("spark"), ml_small_warehouse, folder)
        return {key: str(path) for key, path in built.items()}

    return {key: Path(path) for key, path in built_once(tmp_path_factory, "served", build).items()}


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
def small_warehouse(request, tmp_path_factory) -> Path:
    """Small generated data through the real ETL, with what every family's top-N reads: ALS factors (`als`), the
    sequence shards and a trained SASRec. Read-only: a test that writes takes `small_warehouse_copy`."""
    def build(root: Path) -> dict:
        import subprocess

        from pyspark.sql import functions as F

        from recsys_data.generate import generate
        from recsys_spark.als import AlsConfig, fit, ratings, save
        from recsys_spark.delta import read_table, table_path
        from recsys_spark.etl import EtlConfig, run_etl
        from recsys_spark.sequences import SequenceConfig, export_sequences

        spark = request.getfixturevalue("spark")
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
        return {"warehouse": str(warehouse)}

    return Path(built_once(tmp_path_factory, "small_warehouse", build)["warehouse"])


@pytest.fixture
def small_warehouse_copy(small_warehouse, tmp_path) -> Path:
    """A copy of small_warehouse of this test's own, to write into."""
    import shutil

    return Path(shutil.copytree(small_warehouse, tmp_path / "small_warehouse", symlinks=True))


# The shared nightly: every family on small generated data, CPU-sized (NCF, SASRec and SS4Rec for the torch family;
# LightGCN's steps are NCF's, and its training and lists are tests/test_train.py's).
NIGHTLY_RUN_DATE = "2026-11-23"
NIGHTLY_OVERRIDES = ["train.max_steps=6", "train.eval_every=3", "train.patience=1", "pipeline.k=20",
                     "sequences.max_len=50", "als.max_iter=5", "pipeline.torch_models=[ncf,sasrec,ss4rec]",
                     "als.rank=16", "als.temporal=false", "ss4rec.n_layers=1", "sasrec.n_layers=1",
                     "train.warmup=0.2",
                     # not ItemCF's defaults: the real-time ItemCF must take them from the night (tests/test_ties.py)
                     "baselines.itemcf.history=5", "baselines.itemcf.recency_decay=0.5"]


@pytest.fixture(scope="session")
def finished_nightly(request, tmp_path_factory) -> dict:
    """One whole nightly, run once per test run as `recsys pipeline` runs it (jobs.pipeline.main: the run lock, the
    MLflow parent run, the report, the gate, publish), but with every step in this process (Spark steps on the
    tests' JVM; training still through torchrun). Its warehouse is named as a file:// URI from an empty working
    folder (issue 20: `Path("file:///x")` is the relative folder `file:/x`).
    {"data", "warehouse", "reports", "cwd", "stdout", "run_date", "overrides"}: read-only; `nightly_copy` to write."""
    def build(root: Path) -> dict:
        import contextlib
        import io

        from jobs.pipeline import main as pipeline
        from jobs.steps import run_in_process
        from recsys_data.generate import generate

        request.getfixturevalue("spark")  # the steps' Spark session
        generate(root / "data", n_users=120, n_items=400, n_ratings=6000, seed=3)
        (root / "cwd").mkdir()
        argv = ["--data", str(root / "data"), "--warehouse", (root / "wh").as_uri(), "--reports",
                str(root / "reports"), "--run-date", NIGHTLY_RUN_DATE, *NIGHTLY_OVERRIDES]
        out, saved_env, saved_cwd = io.StringIO(), dict(os.environ), os.getcwd()
        try:
            os.chdir(root / "cwd")
            with contextlib.redirect_stdout(out):
                code = pipeline(argv, runner=lambda step, log, env: run_in_process(step, env))
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        (root / "stdout.txt").write_text(out.getvalue())
        assert code == 0, out.getvalue()[-4000:]
        return {"data": str(root / "data"), "warehouse": str(root / "wh"), "reports": str(root / "reports"),
                "cwd": str(root / "cwd"), "stdout": out.getvalue()}

    built = built_once(tmp_path_factory, "nightly", build)
    return {**{key: Path(built[key]) for key in ("data", "warehouse", "reports", "cwd")}, "stdout": built["stdout"],
            "run_date": NIGHTLY_RUN_DATE, "overrides": list(NIGHTLY_OVERRIDES)}


@pytest.fixture
def nightly_copy(finished_nightly, tmp_path) -> dict:
    """finished_nightly's warehouse and reports copied for this test to write into (the data is shared, read-only)."""
    import shutil

    return {**finished_nightly, "warehouse": copy_warehouse(finished_nightly["warehouse"], tmp_path / "warehouse"),
            "reports": Path(shutil.copytree(finished_nightly["reports"], tmp_path / "reports"))}


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
