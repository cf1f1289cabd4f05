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

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def test_train_throughput_runs_both_models_on_cpu(tmp_path):
    from recsys_torch.models import build_model

    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cpu", "--n-items", "500",
                           "--seq-len", "20", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads(out.read_text())
    results = written["results"]
    assert list(results) == ["sasrec@256", "ss4rec@64"]
    for name, r in results.items():
        model = build_model(r["model"], r["config"], "cpu")
        assert r["params"] == sum(p.numel() for p in model.parameters()), name
        assert r["sequences_per_s"] == pytest.approx(4 / (r["step_ms_median"] / 1000))
        # torch's own FLOP counter agrees with the analytic count the MFU is computed from
        assert r["flops"]["flop_counter_corrected"] == pytest.approx(r["flops"]["analytic_hardware"], rel=0.03), name
    sasrec, layers = results["sasrec@256"]["flops"], results["sasrec@256"]["config"]["n_layers"]
    tokens, d, vocab, length = 4 * 20, 256, 500 + 1, 20  # the docstring's formulas, at the flags' sizes
    assert sasrec["output"] == 6 * tokens * d * vocab and sasrec["recompute"] == 0
    assert sasrec["flop_counter"] == sasrec["analytic_hardware"]  # SASRec's matmuls are all the counter sees
    assert sasrec["encoder"] == layers * (6 * 12 * d * d * tokens + 12 * length * d * tokens)
    ratio = results["ss4rec@64"]["step_ms_median"] / results["sasrec@256"]["step_ms_median"]
    assert written["ss4rec_over_sasrec_step_time"] == pytest.approx(ratio)
    assert f"SS4Rec / SASRec step time: {ratio:.2f}x" in proc.stdout


def test_ncf_topn_times_both_scoring_paths_and_they_agree(tmp_path):
    out = tmp_path / "ncf.json"
    proc = subprocess.run([sys.executable, "benchmarks/ncf_topn.py", "--items", "300", "--batch", "20", "--repeats",
                           "1", "--threads", "1", "--tiles", "8x64,3x100", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["chunked", "tiled 8x64", "tiled 3x100"]
    assert all(r["ns_per_pair"] > 0 and r["max_abs_diff"] < 1e-5 for r in rows) and "min/list" in proc.stdout


# Every other script, run as a user starts it (`python benchmarks/<script>.py …`) with tiny flags: it must exit 0, and
# the figures it prints and the tables it writes must be what the test computes from the same data (pandas). The Spark ones share one small warehouse (generated data through the real ETL and the sequence
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


def table(warehouse: Path, name: str) -> pd.DataFrame:
    from recsys_spark.delta import read_arrow

    return read_arrow(warehouse / name).to_pandas()


def printed_rows(out: str, label: str) -> int:
    """The row count a Spark benchmark prints after a step's label and its seconds."""
    return int(re.search(rf"{re.escape(label)}:\s+[\d.]+ s\s+([\d,]+) rows", out).group(1).replace(",", ""))


def ranked(rows: pd.DataFrame, group: list[str], by: str, tie: str, keep: int) -> pd.DataFrame:
    """rows with `rank` 1.. within each group, largest `by` first, ties by the smaller `tie`; the first `keep`."""
    rows = rows.sort_values([*group, by, tie], ascending=[True] * len(group) + [False, True])
    rows["rank"] = rows.groupby(group).cumcount() + 1
    return rows[rows["rank"] <= keep].reset_index(drop=True)


def transitions(interactions: pd.DataFrame, state: list[str], top_k: int) -> pd.DataFrame:
    """The Markov tables by pandas: successor counts of each state over each user's train interactions in seq
    order, prob = count / all transitions out of the state, the top_k most frequent."""
    train = interactions[interactions.split == "train"].sort_values(["user_idx", "seq"])
    history = train.groupby("user_idx").item_idx
    steps = pd.DataFrame({"prev2_item_idx": history.shift(2), "prev_item_idx": history.shift(1),
                          "next_item_idx": train.item_idx})[[*state, "next_item_idx"]].dropna().astype("int64")
    counts = steps.groupby([*state, "next_item_idx"]).size().rename("count").reset_index()
    counts["prob"] = counts["count"] / counts.groupby(state)["count"].transform("sum")
    return ranked(counts, state, "count", "next_item_idx", top_k)


def test_etl_runs_spark_and_duckdb(tmp_path):
    out = run_script("etl.py", "--cache", str(tmp_path), "--users", "30", "--items", "80", "--ratings", "900", *SPARK)
    figures = json.loads(out.splitlines()[-1])
    assert figures["input_rows"] == 900 and figures["spark_etl_seconds"] > 0 and figures["spark_over_duckdb"] > 0


def test_markov_counts_both_orders(warehouse):
    out = run_script("markov.py", "--warehouse", str(warehouse), "--top-k", "5", *SPARK)
    interactions = table(warehouse, "interactions")
    assert f": {(interactions.split == 'train').sum():,} train interactions, top-k 5" in out
    for label, name, state in (("AR(1)", "transitions_ar1", ["prev_item_idx"]),
                               ("AR(2)", "transitions_ar2", ["prev2_item_idx", "prev_item_idx"])):
        expected = transitions(interactions, state, 5)
        written = table(warehouse, name).sort_values([*state, "rank"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(written[expected.columns], expected, check_dtype=False)
        assert printed_rows(out, label) == len(expected)
    assert transitions(interactions, ["prev_item_idx"], 6)["rank"].max() == 6  # the top-k cut drops rows


def test_itemcf_writes_neighbors_and_lists(warehouse):
    out = run_script("itemcf.py", "--warehouse", str(warehouse), "--neighbors", "5", "--k", "10", *SPARK)
    interactions = table(warehouse, "interactions")
    # Cosine by pandas over the binary train matrix (no user has more than --max-user-items' 500: 150 items in all).
    pairs = interactions[interactions.split == "train"][["user_idx", "item_idx"]].drop_duplicates()
    n_users = pairs.groupby("item_idx").size()
    both = pairs.merge(pairs, on="user_idx").query("item_idx_x != item_idx_y")
    co = both.groupby(["item_idx_x", "item_idx_y"]).size().rename("co_count").reset_index()
    co.columns = ["item_idx", "neighbor_idx", "co_count"]
    co["similarity"] = co.co_count / np.sqrt(n_users[co.item_idx].to_numpy() * n_users[co.neighbor_idx].to_numpy())
    expected = ranked(co, ["item_idx"], "similarity", "neighbor_idx", 5)
    written = table(warehouse, "item_neighbors").sort_values(["item_idx", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(written[expected.columns], expected, check_dtype=False)
    assert printed_rows(out, "item_neighbors") == len(expected)

    lists, users, items = (table(warehouse, name) for name in ("recommendations", "users", "items"))
    assert set(lists.model) == {"itemcf"} and sorted(lists.userId.unique()) == sorted(users.userId)
    by_user = lists.sort_values(["userId", "rank"]).groupby("userId")
    assert all(ranks == list(range(1, 11)) for ranks in by_user["rank"].apply(list))
    assert (by_user.movieId.nunique() == 10).all() and by_user.score.is_monotonic_decreasing.all()
    assert set(lists.movieId) <= set(items.movieId[items.item_idx.notna()])
    seen = interactions[interactions.split.isin(["train", "validation"])][["userId", "movieId"]]
    assert lists.merge(seen, on=["userId", "movieId"]).empty
    assert printed_rows(out, "top-10 of every user") == len(lists) == 10 * len(users)


def test_ease_times_its_phases_and_writes_lists(warehouse):
    out = run_script("ease.py", "--warehouse", str(warehouse), "--max-items", "60", "--k", "10", *SPARK)
    for phase in ("kept items:", "Gram (", "solve:", "every user scored, top-10 ranked"):
        assert phase in out, out
    rows = int(re.search(r"([\d,]+) rows written", out).group(1).replace(",", ""))
    assert "process tree peak" in out and rows > 0 and rows % 10 == 0  # every listed user gets 10


def test_als_topn_times_both_ways_and_their_agreement(warehouse, tmp_path):
    out = run_script("als_topn.py", "--warehouse", str(warehouse), "--cache", str(tmp_path), "--rank", "4",
                     "--max-iter", "2", "--k", "10", "--block-size", "16", "--sample-users", "10", *SPARK,
                     "--json", str(tmp_path / "als.json"))
    written = json.loads((tmp_path / "als.json").read_text())
    figures, blocked, mllib = written["figures"], written["lists"]["blocked"], written["lists"]["mllib"]
    assert json.loads(out[out.index("{"):]) == figures
    interactions = table(warehouse, "interactions")
    train = interactions[interactions.split == "train"]
    assert (figures["train_rows"], figures["users"], figures["items"]) == (
        len(train), train.user_idx.nunique(), train.item_idx.nunique())
    assert "speedup" in figures and "mllib_recommend_for_all_users_s" in figures

    seen = interactions[interactions.split.isin(["train", "validation"])].groupby("user_idx").item_idx.apply(set)
    assert len(blocked) == len(mllib) == 10 and set(blocked) == set(mllib)
    agreed = total = 0
    for user, ours in blocked.items():
        theirs = dict(mllib[user])
        assert len(ours) == len(theirs) == 10 and not {item for item, _ in ours} & seen[int(user)]
        assert [score for _, score in ours] == sorted((score for _, score in ours), reverse=True)
        # the same dot products, where both lists have an item (MLlib scores in float32)
        assert all(score == pytest.approx(theirs[item], abs=1e-4) for item, score in ours if item in theirs)
        above = {item for item, score in theirs.items() if score > min(theirs.values()) + 1e-4}
        agreed += len(above & {item for item, _ in ours})
        total += len(above)
    assert figures["agreement"] == round(agreed / total, 4) == 1.0  # both lists are the exact top-k


def test_quality_runs_the_commands_and_prints_the_table(bench, tmp_path):
    (tmp_path / "small.yaml").write_text(
        "spark:\n  spark.master: local[1]\n  spark.driver.memory: 1g\n  spark.sql.shuffle.partitions: 2\n"
        "baselines:\n  models: [popularity, ar2]\nevaluate:\n  bootstrap_resamples: 100\nmlflow:\n  enabled: false\n")
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
    figures = json.loads(out[out.index("\n{\n"):out.index("\n}\n") + 2])
    main, reload = figures["recommendations"], figures["hot_reload"]
    for load, seconds in ((main, 1), (reload, 2)):  # --max-requests caps a load, else --duration ends it
        assert 0 < load["requests"] <= 300 and load["errors"] == 0
        assert load["requests"] == 300 or load["seconds"] >= seconds
    assert f"0 errors ({main['requests']:,} requests, 2 connections)" in out
    assert reload["model"] == "popularity" and reload["served_after_s"] is not None

    users = table(warehouse, "users")
    assert figures["readers"]["partition_rows"] == 100 * len(users)
    lists = table(warehouse, "recommendations").groupby(["model", "run_date"]).userId.agg(["size", "nunique"])
    assert {(model, str(day)): tuple(counts) for (model, day), counts in lists.iterrows()} == {
        **{(model, "2030-01-01"): (100 * len(users), len(users)) for model in ("popularity", "markov", "als", "sasrec")},
        ("popularity", "2030-01-02"): (100 * len(users), len(users))}  # the hot reload's new run date


def test_serve_realtime_posts_histories_to_each_sequence_model(bench, warehouse):
    """On the shared warehouse (ETL'd, sequences exported: nothing is generated or exported again): seeded
    checkpoints of the default SASRec and SS4Rec, then each load of POST /recommendations answers without an error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = run_script("serve_realtime.py", "--data", str(bench["data"]), "--warehouse", str(warehouse), "--port",
                     str(port), "--duration", "1", "--max-requests", "40", "--history", "10", "--batch", "4")
    assert "export-sequences:" not in out and "etl:" not in out  # the warehouse was used as it is
    figures = json.loads(out[out.index("\n{\n"):out.rindex("\n}\n") + 2])
    models = [m for m in ("sasrec", "ss4rec") if m in figures]
    assert models == ["sasrec", "ss4rec"]
    for model in models:
        for load in ("single_1_connection", "single_2_connections", "batch_1_connection"):
            assert figures[model][load]["requests"] > 0 and figures[model][load]["errors"] == 0, (model, load)
        assert figures[model]["in_process_forward"]["p50_ms"] > 0


def test_train_memory_measures_a_real_training_run(warehouse, tmp_path):
    out = run_script("train_memory.py", str(warehouse), "--model", "sasrec", "--nproc", "1", "--out",
                     str(tmp_path / "model"), "--", "train.max_steps=2", "train.eval_every=2", "train.device=cpu",
                     "sasrec.hidden=16", "sasrec.n_layers=1")
    tree, largest = map(float, re.search(r"sasrec --nproc 1: peak RSS of the process tree ([\d.]+) GB, of the "
                                         r"largest process ([\d.]+) GB", out).groups())
    assert 0.1 < largest <= tree < 16  # a Python process with torch imported holds over 100 MB
    from recsys_torch.checkpoint import load

    best = load(tmp_path / "model" / "best.pt")
    assert best["model_name"] == "sasrec" and best["step"] == 2
    assert (best["model_config"]["hidden"], best["model_config"]["n_layers"]) == (16, 1)


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


def test_public_reports_a_finished_nightly_beside_the_published_figures(finished_nightly, tmp_path):
    """benchmarks/public.py --warehouse on the shared nightly (read only): its figures are the `metrics` table's, its
    best count model is the one of highest validation NDCG@10 and its paired differences are what pandas computes
    from the lists; the sampled column never ranks a target lower than the full ranking does."""
    warehouse, run_date = finished_nightly["warehouse"], finished_nightly["run_date"]
    out = tmp_path / "public.json"
    printed = run_script("public.py", "--warehouse", str(warehouse), "--name", "toys", "--sampled", "100",
                         "--device", "cpu", "--out", str(out))
    figures = json.loads(out.read_text())
    assert figures["dataset"] == "toys" and figures["run_date"] == run_date
    assert (figures["published"]["hr@10"], figures["published"]["ndcg@10"]) == (0.0834, 0.0480)
    assert "ICLRec" in figures["published"]["source"] and figures["lists_match_metrics"] is True

    metrics = table(warehouse, "metrics")
    metrics = metrics[(metrics.split == "test") & (metrics.k == 10) & (metrics.run_date.astype(str) == run_date)]
    rows = {(r.model, r.metric): r for r in metrics.itertuples()}
    models = set(metrics[metrics.metric == "ndcg"].model)
    assert set(figures["models"]) == models and {"markov", "ar2", "itemcf", "ease", "sasrec", "ncf"} <= models
    for model, got in figures["models"].items():
        for metric in ("hr", "ndcg"):
            row = rows[model, metric]
            assert got[f"{metric}@10"] == row.value and got[f"{metric}@10_ci"] == [row.ci_low, row.ci_high], model
        assert f"\n{model} " in printed
    assert (figures["tie_break"], figures["input"]["format"], figures["input"]["interactions_version"]) == (
        rows["ar2", "ndcg"].tie_break, rows["ar2", "ndcg"].input_format, rows["ar2", "ndcg"].interactions_version)

    interactions = table(warehouse, "interactions")

    def ndcg_at_10(name: str, split: str) -> pd.Series:
        """model -> NDCG@10 of its lists in `name` against each user's `split` item, over all of that split's users."""
        lists = table(warehouse, name)
        lists = lists[(lists.run_date.astype(str) == run_date) & (lists["rank"] <= 10)]
        target = interactions[interactions.split == split][["userId", "movieId"]]
        rank = lists.merge(target, on=["userId", "movieId"]).groupby(["model", "userId"])["rank"].min()
        return (1 / np.log2(rank + 1)).groupby("model").sum() / target.userId.nunique()

    validation = ndcg_at_10("recommendations_validation", "validation")[["markov", "ar2", "itemcf", "ease"]]
    best = figures["best_count_model"]["model"]
    assert best == validation.idxmax() and figures["best_count_model"]["candidates"] == pytest.approx(
        validation.to_dict(), abs=1e-12)
    test = ndcg_at_10("recommendations", "test").reindex(sorted(models), fill_value=0.0)
    assert test.to_dict() == pytest.approx({m: rows[m, "ndcg"].value for m in models}, abs=1e-12)
    for model, got in figures["models"].items():
        d, low, high = got["paired_vs_best_count"]
        assert d == pytest.approx(test[model] - test[best], abs=1e-12) and low <= high, model
        if best == "ar2" and model != best:  # the evaluator's own paired row: the very same resamples
            assert [d, low, high] == pytest.approx([rows[model, "ndcg_minus_ar2"].value, rows[model, "ndcg_minus_ar2"]
                                                    .ci_low, rows[model, "ndcg_minus_ar2"].ci_high], abs=1e-12)
    assert figures["models"][best]["paired_vs_best_count"] == [0.0, 0.0, 0.0] and "(reference)" in printed

    run_log = [json.loads(line) for line in (warehouse / "_pipeline" / run_date / "run.jsonl").read_text().splitlines()]
    assert figures["steps"] == {line["step"]: {"status": "ran", "seconds": line["seconds"]} for line in run_log
                                if line["status"] == "ran"}
    assert figures["sampled"]["models"] == ["ncf", "sasrec", "ss4rec"]  # the torch models the nightly trained
    for model in figures["sampled"]["models"]:  # the same scores, 100 of the unseen items: never a lower rank
        got = figures["models"][model]
        assert got["sampled_hr@10"] >= got["hr@10"] and got["sampled_ndcg@10"] >= got["ndcg@10"], model
        assert 0 < got["sampled_hr@10"] <= 1
    from recsys_torch.infer import sampled_ranks

    users, ranks = sampled_ranks(warehouse, "sasrec", 100, figures["sampled"]["seed"], device="cpu")
    n_test = interactions[interactions.split == "test"].userId.nunique()
    assert len(users) == n_test and ranks.min() >= 1 and ranks.max() <= 101
    assert figures["models"]["sasrec"]["sampled_hr@10"] == pytest.approx((ranks <= 10).sum() / n_test, abs=1e-12)
    assert figures["models"]["sasrec"]["sampled_ndcg@10"] == pytest.approx(
        np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).sum() / n_test, abs=1e-12)
    lists = table(warehouse, "recommendations")
    full = lists[lists.model == "sasrec"].merge(interactions[interactions.split == "test"][["userId", "movieId"]],
                                                on=["userId", "movieId"]).set_index("userId")["rank"]
    sampled = pd.Series(ranks, index=users)
    assert len(full) > 10 and (sampled[full.index] <= full).all()  # per user: a subset of the items ranked above


def test_public_runs_the_nightly_in_its_work_folder_and_resumes_its_date(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import public
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert public.dataset_name("/x/Toys_and_Games.txt") == "toys" and public.dataset_name("/x/Video.txt") == "video"
    assert public.dataset_name("/x/Beauty.txt") == "beauty"
    assert public.pipeline_command(Path("/d/Video.txt"), tmp_path, "2026-12-07", ["train.device=cuda"]) == [
        "pipeline", "--data", "/d/Video.txt", "--warehouse", str(tmp_path / "wh"), "--reports",
        str(tmp_path / "reports"), "--run-date", "2026-12-07", "train.device=cuda"]
    import datetime as dt

    assert public.default_run_date(tmp_path / "wh") == dt.date.today().isoformat()  # a new work folder: today
    (tmp_path / "wh" / "_pipeline" / "2026-01-02").mkdir(parents=True)
    (tmp_path / "wh" / "_pipeline" / "2026-01-02" / "run.jsonl").write_text(
        '{"step": "etl", "status": "ran", "seconds": 3.5}\n{"step": "etl", "status": "skipped", "seconds": 0.1}\n')
    assert public.default_run_date(tmp_path / "wh") == "2026-01-02"  # the same command again resumes that night
    assert public.step_seconds(tmp_path / "wh", "2026-01-02") == {"etl": {"status": "ran", "seconds": 3.5,
                                                                           "last_status": "skipped"}}
