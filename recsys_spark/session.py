"""The SparkSession: the embedded local default, or whatever master and configs `spark-submit` was given."""
from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

LOCAL_DEFAULTS = {
    "spark.driver.memory": "6g",
    "spark.driver.maxResultSize": "2g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "8",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.compression.codec": "snappy",
    # Spark already runs one Python worker per core: a multi-threaded BLAS in each of them only oversubscribes.
    "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
    "spark.executorEnv.OMP_NUM_THREADS": "1",
    "spark.executorEnv.MKL_NUM_THREADS": "1",
}


# Read when spark-submit starts the JVM or the first session: under spark-submit they belong on the submit line
# (`recsys pipeline --env cluster` puts them there, jobs/launchers.py); the builder would set them too late.
STATIC_SETTINGS = ("spark.master", "spark.submit.", "spark.jars", "spark.driver.memory", "spark.driver.cores",
                   "spark.driver.extra", "spark.sql.extensions", "spark.sql.catalog.spark_catalog",
                   "spark.pyspark.", "spark.archives", "spark.files")


def is_static(key: str) -> bool:
    return key.startswith(STATIC_SETTINGS)


def launched_by_spark_submit() -> bool:
    """spark-submit starts Python from the JVM and hands it the gateway port; a plain `python` has none."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(app_name: str = "recsys", conf: dict | None = None, master: str | None = None) -> SparkSession:
    """Get or create the session.

    Under spark-submit the master and every --conf come from the command line and are left alone: of `conf` only
    the runtime settings are added (the static ones, STATIC_SETTINGS, are the submit line's). Run as plain Python,
    the embedded default is `local[*]` with the settings above; `conf` (e.g. from conf/local.yaml's `spark:`
    section) overrides them. An empty value (null or "") sets nothing.
    """
    # Executors must run the interpreter that runs the driver, not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {}
    if not launched_by_spark_submit():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the embedded default never leaves this machine
        builder = builder.master(master or os.environ.get("RECSYS_SPARK_MASTER", "local[*]"))
        settings.update(LOCAL_DEFAULTS)
        settings["spark.pyspark.python"] = sys.executable
    for key, value in (conf or {}).items():
        if value is None or value == "":
            settings.pop(key, None)
            continue
        if is_static(key) and launched_by_spark_submit():
            continue  # spark-submit's --master and --conf win over the config file
        settings[key] = str(value).lower() if isinstance(value, bool) else str(value)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("RECSYS_SPARK_LOG_LEVEL", "WARN"))
    return spark
