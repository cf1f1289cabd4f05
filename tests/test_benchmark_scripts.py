"""The benchmark scripts that import library internals still run (train_throughput.py is also what a GPU check
runs first): a tiny CPU run of each, not a measurement."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_train_throughput_runs_both_models_on_cpu():
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cpu", "--n-items", "500",
                           "--seq-len", "20", "--batch-size", "4", "--steps", "1", "--warmup", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sasrec:" in proc.stdout and "ss4rec:" in proc.stdout and "SS4Rec / SASRec step time" in proc.stdout


def test_ncf_topn_times_both_scoring_paths_and_they_agree(tmp_path):
    out = tmp_path / "ncf.json"
    proc = subprocess.run([sys.executable, "benchmarks/ncf_topn.py", "--items", "300", "--batch", "20", "--repeats",
                           "1", "--threads", "1", "--tiles", "8x64,3x100", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["chunked", "tiled 8x64", "tiled 3x100"]
    assert all(r["ns_per_pair"] > 0 and r["max_abs_diff"] < 1e-5 for r in rows) and "min/list" in proc.stdout


# Every other script, run as a user starts it (`python benchmarks/<script>.py …`) with tiny flags: it must exit 0 and
# print its figures. The Spark ones share one small warehouse (generated data through the real ETL and the sequence
# export), each writing into a copy of its own, so none generates or ETLs again (but benchmarks/etl.py, whose subject
# is the ETL).
SPARK = ["--threads", "1", "--driver-memory", "1g"]


def run_script(script: str, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RECSYS_DELTA_WRITER": "delta-rs"})
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def bench(spark, tmp_path_factory) -> dict[str, Path]:
    """{"data": generated MovieLens-shaped files, "warehouse": their ETL tables and sequence shards}: read-only."""
    from recsys_data.generate import generate
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_spark.sequences import SequenceConfig, export_sequences

    root = tmp_path_factory.mktemp("bench")
    generate(root / "data", n_users=40, n_items=150, n_ratings=2000, seed=4)
    run_etl(spark, root / "data", root / "warehouse", EtlConfig())
    export_sequences(spark, root / "warehouse", config=SequenceConfig(max_len=20, rows_per_group=8))
    return {"data": root / "data", "warehouse": root / "warehouse"}


@pytest.fixture
def warehouse(bench, tmp_path) -> Path:
    """A copy of the shared warehouse that the script may write into."""
    return Path(shutil.copytree(bench["warehouse"], tmp_path / "warehouse", symlinks=True))


def test_etl_runs_spark_and_duckdb(tmp_path):
    out = run_script("etl.py", "--cache", str(tmp_path), "--users", "30", "--items", "80", "--ratings", "900", *SPARK)
    figures = json.loads(out.splitlines()[-1])
    assert figures["input_rows"] == 900 and figures["spark_etl_seconds"] > 0 and figures["spark_over_duckdb"] > 0


def test_markov_counts_both_orders(warehouse):
    out = run_script("markov.py", "--warehouse", str(warehouse), "--top-k", "5", *SPARK)
    assert "AR(1):" in out and "AR(2):" in out and "train rows/s" in out
    assert (warehouse / "transitions_ar2" / "_delta_log").is_dir()


def test_itemcf_writes_neighbors_and_lists(warehouse):
    out = run_script("itemcf.py", "--warehouse", str(warehouse), "--neighbors", "5", "--k", "10", *SPARK)
    assert "item_neighbors:" in out and "top-10 of every user:" in out


def test_ease_times_its_phases_and_writes_lists(warehouse):
    out = run_script("ease.py", "--warehouse", str(warehouse), "--max-items", "60", "--k", "10", *SPARK)
    for phase in ("kept items:", "Gram (", "solve:", "every user scored, top-10 ranked"):
        assert phase in out, out
    rows = int(re.search(r"([\d,]+) rows written", out).group(1).replace(",", ""))
    assert "process tree peak" in out and rows > 0 and rows % 10 == 0  # every listed user gets 10


def test_als_topn_times_both_ways_and_their_agreement(warehouse, tmp_path):
    out = run_script("als_topn.py", "--warehouse", str(warehouse), "--cache", str(tmp_path), "--rank", "4",
                     "--max-iter", "2", "--k", "10", "--block-size", "16", "--sample-users", "10", *SPARK)
    figures = json.loads(out[out.index("{"):])
    assert figures["fit_s"] >= 0 and figures["blocked_topn_s"] >= 0 and figures["speedup"] > 0
    assert 0 <= figures["agreement"] <= 1


def test_quality_runs_the_commands_and_prints_the_table(bench, tmp_path):
    (tmp_path / "small.yaml").write_text(
        "spark:\n  spark.master: local[1]\n  spark.driver.memory: 1g\n  spark.sql.shuffle.partitions: 2\n"
        "baselines:\n  models: [popularity, markov, ar2]\nevaluate:\n  bootstrap_resamples: 100\n")
    out = run_script("quality.py", str(bench["data"]), "--tie-breaks", "movieId", "--models", "", "--config",
                     str(tmp_path / "small.yaml"), "--work", str(tmp_path), "--json", str(tmp_path / "quality.json"))
    assert "tie-break movieId" in out and "(reference)" in out
    results = json.loads((tmp_path / "quality.json").read_text())["results"]["movieId"]
    assert {"popularity", "ar2"} <= set(results) and 0 <= results["ar2"]["ndcg"]["value"] <= 1


def test_serve_load_serves_and_reloads(bench, warehouse):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = run_script("serve_load.py", "--data", str(bench["data"]), "--warehouse", str(warehouse), "--port",
                     str(port), "--connections", "2", "--duration", "1", "--reload-duration", "2",
                     "--max-requests", "300", "--reload-interval", "0.5")
    assert "recommendations:" in out and " 0 errors" in out
    assert "hot reload under load: new run date served" in out and "served None" not in out


def test_train_memory_measures_a_real_training_run(warehouse, tmp_path):
    out = run_script("train_memory.py", str(warehouse), "--model", "sasrec", "--nproc", "1", "--out",
                     str(tmp_path / "model"), "--", "train.max_steps=2", "train.eval_every=2", "train.device=cpu",
                     "sasrec.hidden=16", "sasrec.n_layers=1")
    assert "sasrec --nproc 1: peak RSS of the process tree" in out


def test_chaos_nightly_spreads_its_kills_and_its_comparison_finds_duplicates_and_lost_rows(tmp_path):
    """The chaos benchmark's parts that decide its figures (the run itself takes minutes: docs/OPERATIONS.md): the
    kill moments cover every step, and the comparison counts what a kill could break, on real Delta tables."""
    import datetime as dt

    import deltalake
    import pyarrow as pa

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import chaos_nightly as chaos
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    targets = chaos.kill_targets({"etl": 30.0, "baselines": 60.0, "evaluate": 20.0}, 20, seed=1)
    assert len(targets) == 20 and [t[0] for t in targets] == ["etl"] * 7 + ["baselines"] * 7 + ["evaluate"] * 6
    assert all(0.05 <= fraction <= 0.95 for _, fraction in targets)
    assert chaos.kill_moments({"etl": 30.0, "baselines": 60.0, "evaluate": 20.0}, "baselines", 0.5) == \
        {"baselines": 30.0, "evaluate": 10.0}  # a later step is killed when the aimed-at one is already done
    assert targets == chaos.kill_targets({"etl": 30.0, "baselines": 60.0, "evaluate": 20.0}, 20, seed=1)

    def recs(users, model="popularity"):
        return pa.table({"model": [model] * len(users), "run_date": [dt.date(2026, 11, 23)] * len(users), "userId": users,
                         "rank": [1] * len(users), "movieId": [5] * len(users)})

    reference, broken = tmp_path / "reference", tmp_path / "broken"
    deltalake.write_deltalake(str(reference / "recommendations"), pa.concat_tables([recs([1, 2, 3]),
                                                                                  recs([1, 2], "ease")]))
    deltalake.write_deltalake(str(reference / "items"), pa.table({"movieId": [5]}))
    deltalake.write_deltalake(str(broken / "recommendations"), pa.concat_tables([recs([1, 1, 2]), recs([1], "ease")]))
    (broken / "_staging-recommendations-host-1-0123abcd").mkdir()
    assert chaos.compare(reference, reference)["rows_lost"] == 0
    found = chaos.compare(reference, broken)
    assert found["tables_missing"] == ["items"] and found["duplicate_recommendations"] == 1
    assert found["rows_lost"] == 1 and found["rows"]["recommendations"] == [5, 4]
    assert found["deterministic_lists_differing"] == ["ease", "popularity"]
    assert found["staging_left"] == ["_staging-recommendations-host-1-0123abcd"] and not found["lock_left"]


def test_warehouse_growth_replays_what_each_night_added_and_kept(tmp_path):
    """benchmarks/warehouse_growth.py's Delta figures (its nightly runs take minutes: docs/OPERATIONS.md)."""
    import time

    import deltalake
    import pyarrow as pa

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import warehouse_growth as growth
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    table = tmp_path / "wh" / "items"
    deltalake.write_deltalake(str(table), pa.table({"movieId": list(range(100))}))
    first = int(time.time() * 1000) + 1
    time.sleep(0.01)
    deltalake.write_deltalake(str(table), pa.table({"movieId": list(range(50))}), mode="overwrite")
    sizes = {p.name: p.stat().st_size for p in table.glob("*.parquet")}
    newest = deltalake.DeltaTable(str(table)).file_uris()[0].rsplit("/", 1)[1]
    assert growth.delta_bytes_at(tmp_path / "wh", first) == (sizes[next(n for n in sizes if n != newest)],) * 2
    assert growth.delta_bytes_at(tmp_path / "wh", first + 10**9) == (sum(sizes.values()), sizes[newest])
