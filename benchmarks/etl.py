"""ETL benchmark: `recsys etl` on generated ML-25M-sized data vs the same work in DuckDB.

    .venv/bin/python benchmarks/etl.py [--ratings 25000095] [--cache .bench/ml25m-gen] [--threads 2]

Generates the data once (cached), runs the Spark ETL (local[N]) and prints wall time, peak memory of the Python
driver and of the Spark JVM (driver + executors in local mode), rows/s; then does the typed read, validation,
de-duplication and leave-last-out split in DuckDB on the same files and prints the ratio. Goals: <= 3 min and
<= 8 GB at 25M rows on 2 cores, within 4x of DuckDB.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import jvm_peak_rss_gb, machine, python_peak_rss_gb, timed  # noqa: E402

DUCKDB_ETL = """
CREATE TEMP TABLE movies AS
  SELECT TRY_CAST(movieId AS BIGINT) AS movieId FROM read_csv('{data}/movies.csv', header=true, all_varchar=true,
         columns={{'movieId':'VARCHAR','title':'VARCHAR','genres':'VARCHAR'}}, ignore_errors=true);
CREATE TEMP TABLE parsed AS
  SELECT row_number() OVER () + 1 AS line, *,
         TRY_CAST(userId_s AS BIGINT) AS userId, TRY_CAST(movieId_s AS BIGINT) AS movieId,
         TRY_CAST(rating_s AS DOUBLE) AS rating, TRY_CAST(ts_s AS BIGINT) AS ts
  FROM read_csv('{data}/ratings.csv', header=true, all_varchar=true, ignore_errors=true, store_rejects=true,
       columns={{'userId_s':'VARCHAR','movieId_s':'VARCHAR','rating_s':'VARCHAR','ts_s':'VARCHAR'}});
CREATE TEMP TABLE checked AS
  SELECT *, CASE
      WHEN userId IS NULL OR movieId IS NULL OR rating IS NULL OR ts IS NULL THEN 'non_numeric'
      WHEN userId <= 0 OR movieId <= 0 OR ts <= 0 THEN 'non_positive'
      WHEN rating < 0.5 OR rating > 5.0 THEN 'rating_out_of_range'
      WHEN rating * 2 <> floor(rating * 2) THEN 'not_half_star'
      WHEN movieId NOT IN (SELECT movieId FROM movies) THEN 'unknown_movie'
      ELSE NULL END AS reason
  FROM parsed;
CREATE TEMP TABLE deduped AS
  SELECT *, row_number() OVER (PARTITION BY userId, movieId ORDER BY ts DESC, line DESC) AS dup
  FROM checked WHERE reason IS NULL;
CREATE TEMP TABLE interactions AS
  SELECT userId, movieId, rating, ts,
         dense_rank() OVER (ORDER BY userId) AS user_idx, dense_rank() OVER (ORDER BY movieId) AS item_idx,
         row_number() OVER (PARTITION BY userId ORDER BY ts, movieId) AS seq,
         count(*) OVER (PARTITION BY userId) AS n
  FROM deduped WHERE dup = 1;
COPY (SELECT *, CASE WHEN seq = n THEN 'test' WHEN seq = n - 1 THEN 'validation' ELSE 'train' END AS split
      FROM interactions) TO '{out}/interactions.parquet' (FORMAT parquet);
COPY (SELECT line, reason FROM checked WHERE reason IS NOT NULL
      UNION ALL SELECT line, 'duplicate' FROM deduped WHERE dup > 1) TO '{out}/rejects.parquet' (FORMAT parquet);
"""


def run_duckdb(data: Path, threads: int, memory_gb: int) -> dict:
    import duckdb

    out = Path(tempfile.mkdtemp(prefix="duckdb-etl-"))
    con = duckdb.connect(config={"threads": threads, "memory_limit": f"{memory_gb}GB"})
    start = time.perf_counter()
    con.execute(DUCKDB_ETL.format(data=data, out=out))
    seconds = time.perf_counter() - start
    rows = con.execute(f"SELECT count(*) FROM '{out}/interactions.parquet'").fetchone()[0]
    con.close()
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "interactions": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--ratings", type=int, default=25_000_095)
    p.add_argument("--cache", default=".bench/ml25m-gen")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--skip-duckdb", action="store_true")
    args = p.parse_args()

    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_data.generate import generate
    from recsys_spark.session import get_spark

    figures: dict = {"machine": machine(), "ratings_requested": args.ratings}
    data = Path(args.cache) / f"{args.users}u-{args.items}i-{args.ratings}r"
    if not (data / "ratings.csv").exists():
        with timed(figures, "generate_seconds"):
            generate(data, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=0)
    input_rows = sum(1 for _ in open(data / "ratings.csv", "rb")) - 1

    warehouse = Path(tempfile.mkdtemp(prefix="bench-etl-"))
    spark = get_spark("bench-etl", conf={"spark.driver.memory": args.driver_memory,
                                         "spark.sql.shuffle.partitions": str(4 * args.threads)},
                      master=f"local[{args.threads}]")
    with timed(figures, "spark_etl_seconds"):
        run_etl(spark, data, warehouse, EtlConfig())
    figures["spark_jvm_peak_rss_gb"] = round(jvm_peak_rss_gb(spark), 2)
    figures["python_driver_peak_rss_gb"] = round(python_peak_rss_gb(), 2)
    figures["input_rows"] = input_rows
    figures["spark_rows_per_s"] = round(input_rows / figures["spark_etl_seconds"])
    spark.stop()
    shutil.rmtree(warehouse, ignore_errors=True)

    if not args.skip_duckdb:
        duck = run_duckdb(data, args.threads, memory_gb=8)
        figures["duckdb_seconds"] = round(duck["seconds"], 1)
        figures["spark_over_duckdb"] = round(figures["spark_etl_seconds"] / duck["seconds"], 2)
    figures["spark_etl_seconds"] = round(figures["spark_etl_seconds"], 1)
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
