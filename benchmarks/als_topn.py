"""ALS benchmark: fit time and peak memory, then blocked top-N vs MLlib's recommendForAllUsers, and their agreement.

    .venv/bin/python benchmarks/als_topn.py [--ratings 2000000] [--users 20000] [--items 10000] [--threads 2]
    .venv/bin/python benchmarks/als_topn.py --ratings 25000095 --users 162541 --items 59047   # ML-25M scale
    .venv/bin/python benchmarks/als_topn.py --data ../shared/data/ml-latest-small              # real, small

Data: MovieLens-shaped files from recsys_data.generate (cached under --cache), or --data DIR; then the real ETL.
Timed on local[--threads]:
  fit        ALS on the train split (rank, max_iter as given);
  blocked    recsys_spark.als_topn.score_top_k: top-k of every user, train/validation items excluded;
  mllib      model.recommendForAllUsers(k), written to the noop sink. It does NOT exclude seen items (that would
             need k + max |seen| per user), so its time is a lower bound on what MLlib needs for the same lists.
Agreement: on a sample of users, the blocked lists vs recommendForUserSubset(k + max seen) with seen items removed,
as the share of list items whose score is above the k-th score (ties aside). Goal: blocked >= 5x faster at ML-25M.
--json PATH also writes {"figures": ..., "lists": {"blocked": ..., "mllib": ...}}: the sampled users' two lists that
the agreement compares, each {user_idx: [[item_idx, score], ...] best first} (MLlib's with seen items removed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import jvm_peak_rss_gb, machine, python_peak_rss_gb, reset_jvm_peak_rss  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def prepare_data(args) -> Path:
    if args.data:
        return Path(args.data)
    try:
        from recsys_data.generate import generate
    except ImportError:
        fallback = REPO.parent / "shared" / "data" / "ml-latest-small"
        print(f"recsys_data.generate not available: using {fallback}")
        return fallback
    out = Path(args.cache) / f"gen-u{args.users}-i{args.items}-r{args.ratings}-s{args.seed}"
    if not (out / "ratings.csv").exists():
        start = time.perf_counter()
        generate(out, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=args.seed)
        print(f"generated {args.ratings:,} ratings in {time.perf_counter() - start:.0f}s -> {out}")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="MovieLens-layout directory (default: generate one)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--ratings", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(REPO / ".bench"))
    parser.add_argument("--warehouse", help="a warehouse the ETL filled: used as it is, no data generated "
                                            "(default: <cache>/wh-<data>, filled when missing)")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--sample-users", type=int, default=500)
    parser.add_argument("--skip-mllib", action="store_true", help="time only the blocked top-N")
    parser.add_argument("--json", type=Path, help="also write the figures and the sampled users' lists here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RECSYS_DELTA_WRITER", "delta-rs")

    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.session import get_spark

    filled = args.warehouse and (Path(args.warehouse) / "interactions" / "_delta_log").exists()
    data = None if filled else prepare_data(args)
    warehouse = Path(args.warehouse) if args.warehouse else Path(args.cache) / f"wh-{data.name}"
    spark = get_spark("bench-als", master=f"local[{args.threads}]",
                      conf={"spark.driver.memory": args.driver_memory,
                            "spark.sql.shuffle.partitions": str(4 * args.threads)})
    spark.sparkContext.setCheckpointDir(str(Path(args.cache) / "_checkpoints"))
    figures: dict[str, object] = {"machine": machine(), "data": str(data or warehouse), "threads": args.threads,
                                  "rank": args.rank, "max_iter": args.max_iter, "k": args.k}
    if not (warehouse / "interactions" / "_delta_log").exists():
        start = time.perf_counter()
        run_etl(spark, data, warehouse, EtlConfig())
        figures["etl_s"] = round(time.perf_counter() - start, 1)

    lists = measure(spark, warehouse, figures, args)
    figures["jvm_peak_gb"] = round(jvm_peak_rss_gb(spark), 2)
    figures["python_driver_peak_gb"] = round(python_peak_rss_gb(), 2)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "lists": lists}, indent=1))
    return 0


def measure(spark, warehouse: Path, figures: dict, args) -> dict:
    """Fit, then the blocked top-N and (unless --skip-mllib) MLlib's recommendForAllUsers, timed; their agreement."""
    from pyspark.sql import functions as F

    from recsys_core.ties import Ties
    from recsys_spark.als import AlsConfig, fit, ratings
    from recsys_spark.als_topn import score_top_k
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.recommendations import seen_pairs

    interactions = read_table(spark, table_path(warehouse, "interactions"))
    train = ratings(interactions.where(F.col("split") == "train")).cache()
    figures["train_rows"] = train.count()
    seen = seen_pairs(interactions).cache()
    seen.count()

    reset_jvm_peak_rss(spark)  # the fit's own peak, not the ETL's of a first, uncached run
    start = time.perf_counter()
    model = fit(train, AlsConfig(rank=args.rank, max_iter=args.max_iter, num_blocks=2 * args.threads))
    user_factors = model.userFactors.withColumnRenamed("id", "user_idx").cache()
    item_factors = model.itemFactors.withColumnRenamed("id", "item_idx").cache()
    figures["users"], figures["items"] = user_factors.count(), item_factors.count()
    figures["fit_s"] = round(time.perf_counter() - start, 1)
    figures["fit_jvm_peak_gb"] = round(jvm_peak_rss_gb(spark), 2)

    start = time.perf_counter()
    blocked = score_top_k(user_factors, item_factors, seen, args.k, Ties.of_warehouse(warehouse), args.block_size)
    blocked.write.format("noop").mode("overwrite").save()
    figures["blocked_topn_s"] = round(time.perf_counter() - start, 1)

    if not args.skip_mllib:
        start = time.perf_counter()
        model.recommendForAllUsers(args.k).write.format("noop").mode("overwrite").save()
        figures["mllib_recommend_for_all_users_s"] = round(time.perf_counter() - start, 1)
        figures["speedup"] = round(figures["mllib_recommend_for_all_users_s"] / figures["blocked_topn_s"], 2)

    figures["agreement"], lists = agreement(spark, model, user_factors, item_factors, seen, args)
    return lists


def agreement(spark, model, user_factors, item_factors, seen, args) -> tuple[float, dict]:
    """Share of MLlib's (seen-filtered) top-k items above its k-th score that the blocked list also has; and the
    sampled users' lists, {"blocked": {user_idx: [[item_idx, score], ...] best first}, "mllib": the same}."""
    from pyspark.sql import functions as F

    from recsys_core.ties import Ties
    from recsys_spark.als_topn import score_top_k

    sample = user_factors.select("user_idx").orderBy(F.rand(args.seed)).limit(args.sample_users).cache()
    sample_seen = seen.join(sample, "user_idx").cache()
    max_seen = sample_seen.groupBy("user_idx").count().agg(F.max("count")).first()[0] or 0
    seen_by_user: dict[int, set[int]] = {}
    for row in sample_seen.collect():
        seen_by_user.setdefault(row.user_idx, set()).add(row.item_idx)
    ours: dict[int, list[tuple[int, int, float]]] = {}
    for row in score_top_k(user_factors.join(sample, "user_idx"), item_factors, sample_seen, args.k, Ties(),
                           args.block_size).collect():
        ours.setdefault(row.user_idx, []).append((row.rank, row.item_idx, row.score))
    lists: dict[str, dict[int, list]] = {"blocked": {u: [[item, score] for _, item, score in sorted(rows)]
                                                     for u, rows in ours.items()}, "mllib": {}}
    agreed = total = 0
    for row in model.recommendForUserSubset(sample,
                                            args.k + max_seen).collect():
        theirs = [(r.item_idx, r.rating) for r in row.recommendations
                  if r.item_idx not in seen_by_user.get(row.user_idx, set())][:args.k]
        lists["mllib"][row.user_idx] = [[item, score] for item, score in theirs]
        if not theirs:
            continue
        kth = theirs[-1][1]
        above = {item for item, score in theirs if score > kth + 1e-4}
        mine = {item for _, item, _ in ours.get(row.user_idx, [])}
        agreed += len(above & mine)
        total += len(above)
    return (round(agreed / total, 4) if total else float("nan")), lists


if __name__ == "__main__":
    sys.exit(main())
