"""Training recipe (recsys_torch.train), checkpoints, inference and the `recsys train` entry point, on CPU.

Data: planted-pattern shards (tests/torch_shards.py) where the next item follows from the last one and a user's
cluster from their history, while popularity is close to chance.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from jobs.config import load_config
from recsys_core.ties import Ties
from recsys_torch.errors import RecsysError
from recsys_torch.losses import bpr
from recsys_torch.models.base import PairModel
from recsys_torch.tables import read_recommendations
from recsys_torch.metrics import hit_and_ndcg, mask_seen, target_ranks
from recsys_torch.config import batch_size_for
from recsys_torch.runtime import close_distributed, init_distributed
from recsys_torch.train import TrainConfig, train
from recsys_torch.trainer import Trainer
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API

# Small models and few steps: each training here takes seconds on 2 CPU cores. An epoch is 5 sequence steps (160
# windows of 32), 40 NCF steps (1,273 pairs) or 20 LightGCN steps (the same pairs as graph edges, 64 a batch); the
# default (CPU) loss of the sequence models is sampled_ce.
FAST = {
    "ncf": ["ncf.gmf_dim=16", "ncf.mlp_dims=[32,16]", "train.lr=0.01", "train.max_steps=200", "train.eval_every=40"],
    "sasrec": ["sasrec.hidden=32", "sasrec.n_layers=1", "sasrec.dropout=0.1", "train.lr=0.01",
               "train.max_steps=15", "train.eval_every=5"],
    "ss4rec": ["ss4rec.hidden=16", "ss4rec.n_layers=1", "ss4rec.state_size=8", "ss4rec.time_state_size=8",
               "ss4rec.dropout=0.1", "train.lr=0.01", "train.max_steps=15", "train.eval_every=5"],
    "lightgcn": ["lightgcn.dim=16", "lightgcn.n_layers=2", "train.lr=0.05", "train.max_steps=80",
                 "train.eval_every=40", "train.batch_size=64"],
}
MIN_HR = 0.5  # validation HR@10 every model must reach; popularity gets about 0.15 here


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"), PlantedData(n_users=160))


def config(model: str, seq_dir: Path, *extra: str) -> dict:
    return load_config(["train", model], overrides=[
        f"train.sequences={seq_dir}", "train.device=cpu", "train.warmup=0.1", "train.patience=5",
        "train.batch_size=32", "train.min_steps_per_epoch=1", "train.shuffle_buffer=64", "mlflow.enabled=false",
        *FAST[model], *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, seq_dir):
    """model -> (warehouse, summary), each model trained once for the tests that need a trained one."""
    cache: dict = {}

    def get(model: str):
        if model not in cache:
            warehouse = tmp_path_factory.mktemp(f"wh-{model}")
            cache[model] = (warehouse, train(warehouse, model, config(model, seq_dir)))
        return cache[model]

    return get


def popularity_hr_at_10(seq_dir: Path) -> float:
    meta = json.loads((seq_dir / "meta.json").read_text())
    counts = np.bincount(pq.read_table(seq_dir / "ncf_train").column("item_idx").to_numpy(),
                         minlength=meta["n_items"] + 1).astype(np.float32)
    rows = pq.read_table(seq_dir / "validation").to_pydict()
    width = max(len(s) for s in rows["seen_items"])
    seen = torch.tensor([s + [0] * (width - len(s)) for s in rows["seen_items"]])
    logits = torch.from_numpy(counts).repeat(len(seen), 1)
    logits[:, 0] = float("-inf")
    ranks = target_ranks(mask_seen(logits, seen), torch.tensor(rows["target_item"]), torch.tensor(rows["user_idx"]),
                         Ties.of_report(meta))
    return float(hit_and_ndcg(ranks, 10)[0].mean())


@pytest.mark.parametrize("model", ["ncf", "sasrec", "ss4rec", "lightgcn"])
def test_short_training_beats_popularity_by_far(trained, seq_dir, model):
    warehouse, summary = trained(model)
    popularity = popularity_hr_at_10(seq_dir)
    best_hr = max(h["val_hr@10"] for h in summary["history"])
    assert popularity < 0.25
    assert best_hr >= MIN_HR and best_hr >= 3 * popularity, (best_hr, popularity)
    out = warehouse / "models" / model
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["model_config"]["n_items"] == 80 and resolved["last_gap_protocol"] == "query_time"


def test_checkpoints_load_with_weights_only(trained):
    warehouse, summary = trained("sasrec")
    out = warehouse / "models" / "sasrec"
    last = torch.load(out / "checkpoint.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert last["progress"]["step"] == summary["steps"] == 15
    assert [h["step"] for h in last["progress"]["history"]] == [5, 10, 15]
    assert set(last) == {"model_name", "model_config", "model", "optimizer", "scheduler", "rng", "world_size",
                         "batch_size", "progress"}
    assert set(last["rng"][0]) >= {"torch", "numpy", "python", "pair_negatives"}
    assert best["step"] == summary["best_step"]
    assert best["metrics"]["ndcg@10"] == pytest.approx(summary["best_ndcg@10"])
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def params(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("model", ["sasrec", "ncf", "lightgcn"])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, seq_dir, model):
    """Cut at step 3, inside an epoch (5 sasrec / 40 ncf / 20 lightgcn steps an epoch): resume skips the batches
    already trained on and draws the same dropout masks and negatives."""
    budget = ["train.max_steps=8", "train.eval_every=3"]
    (tmp_path / "a").mkdir()
    straight = train(tmp_path / "a", model, config(model, seq_dir, *budget))
    cut = tmp_path / "b"
    cut.mkdir()
    first = train(cut, model, config(model, seq_dir, *budget, "train.stop_after_step=3"))
    assert first["steps"] == 3
    after_three = params(cut / "models" / model)
    resumed = train(cut, model, config(model, seq_dir, *budget), resume=True)
    assert resumed["steps"] == 8 and [h["step"] for h in resumed["history"]] == [3, 6, 8]
    a, b = params(tmp_path / "a" / "models" / model), params(cut / "models" / model)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not all(torch.equal(after_three[name], b[name]) for name in a)
    assert [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in resumed["history"]]


def test_budget_is_steps_capped_by_epochs_and_small_data_gets_a_smaller_batch(tmp_path, seq_dir):
    capped = train(tmp_path, "sasrec", config("sasrec", seq_dir, "train.max_steps=1000", "train.max_epochs=2",
                                              "train.eval_every=4"))
    assert capped["total_steps"] == capped["steps"] == 10 and capped["epochs"] == 2  # 5 steps an epoch
    assert [h["step"] for h in capped["history"]] == [4, 8, 10]  # and once more at the end
    small = train(tmp_path, "sasrec", config("sasrec", seq_dir, "train.min_steps_per_epoch=20", "train.min_batch_size=8",
                                             "train.max_steps=2"))
    assert small["batch_size"] == 8  # 160 windows: 32 -> 16 -> 8 gives 20 steps an epoch


def test_batch_size_for_halves_until_an_epoch_has_enough_steps():
    cfg = TrainConfig(batch_size=128, min_batch_size=16, min_steps_per_epoch=25)
    assert batch_size_for(892, 1, cfg) == 32       # ml-latest-small's train windows: 28 steps an epoch
    assert batch_size_for(200_000, 1, cfg) == 128  # ML-25M: plenty of steps at the full batch
    assert batch_size_for(100, 2, cfg) == 16       # never below min_batch_size


def test_early_stopping_counts_validations_without_improvement(tmp_path, seq_dir):
    # lr 0: the model never changes, so after the first validation none is better
    summary = train(tmp_path, "sasrec", config("sasrec", seq_dir, "train.lr=1.0e-12", "train.max_steps=100",
                                               "train.eval_every=2", "train.patience=2"))
    assert summary["stopped_early"] and summary["steps"] == 6 and summary["best_step"] == 2


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, seq_dir):
    with pytest.raises(RecsysError, match="checkpoint not found"):
        train(tmp_path, "ncf", config("ncf", seq_dir), resume=True)


def test_unknown_keys_are_clear_errors(tmp_path, seq_dir):
    with pytest.raises(RecsysError, match=r"unknown config key\(s\) train.max_stpes"):
        train(tmp_path, "ncf", config("ncf", seq_dir, "train.max_stpes=3"))
    with pytest.raises(RecsysError, match="unknown config key"):
        train(tmp_path, "ncf", config("ncf", seq_dir, "ncf.layers=3"))


@pytest.mark.parametrize("values, message", [
    ({"max_steps": True}, "train.max_steps must be a positive integer"),
    ({"num_workers": -1}, "train.num_workers must be an integer >= 0"),
    ({"min_lr_ratio": 5}, r"train.min_lr_ratio must be a number in \[0, 1\]"),
    ({"stop_after_step": -1}, "train.stop_after_step must be null or a positive integer"),
    ({"warmup": 100}, r"train.warmup must be a number in \[0, 1\)"),
    ({"loss": "hinge"}, "train.loss must be one of auto, ce, sampled_ce, bce"),
    ({"epochs": 3}, "train.epochs is gone: use train.max_epochs"),
    ({"ncf_negatives": 4}, "train.ncf_negatives is gone: use train.pair_negatives"),
    ({"ncf_reject_positives": True}, "train.ncf_reject_positives is gone: use train.pair_reject_positives"),
    ({"batch_size": 8, "min_batch_size": 16}, r"train.min_batch_size must be at most train.batch_size \(8\), got 16"),
    ({"max_grad_norm": 0}, "train.max_grad_norm must be null or a number > 0"),
    ({"amp": "yes"}, "train.amp must be true or false"),
    ([1], "train config section must be a mapping"),
])
def test_bad_train_values_are_named_before_anything_starts(values, message):
    from recsys_torch.train import TrainConfig

    with pytest.raises(RecsysError, match=message):
        TrainConfig.from_dict(values)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, warehouse: str, cfg: dict, out: str, model: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from recsys_torch.shards import read_meta

    tcfg = TrainConfig.from_dict(cfg["train"])
    seq = Path(tcfg.sequences)
    env = init_distributed("cpu", cpu_threads=1)
    try:
        trainer = Trainer(Path(warehouse), model, cfg, tcfg, seq, read_meta(seq), env)
        trainer.fit(resume=False)
        torch.save({"state": trainer.model.state_dict(), "steps": trainer.progress.step}, f"{out}/rank{rank}.pt")
    finally:
        close_distributed()


@pytest.mark.parametrize("model", ["sasrec", "lightgcn"])
def test_two_process_ddp_keeps_the_ranks_identical(tmp_path, seq_dir, model):
    """Each rank trains on its own share of the rows (and, for LightGCN, the same whole graph): the all-reduced
    gradients keep the weights identical."""
    cfg = config(model, seq_dir, "train.max_steps=4", "train.grad_accum=2", "train.batch_size=16")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), cfg, str(tmp_path), model),
                                nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert rank0["steps"] == rank1["steps"] > 0
    assert all(torch.equal(rank0["state"][name], rank1["state"][name]) for name in rank0["state"])
    init = torch.load(tmp_path / "models" / model / "checkpoint.pt", weights_only=True)
    assert init["world_size"] == 2 and len(init["rng"]) == 2


def _validation_worker(rank: int, world: int, port: int, split: str, out: str) -> None:
    from recsys_torch.evaluation import validate, validation_batches
    from recsys_torch.models import build_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    env = init_distributed("cpu", cpu_threads=1)
    try:
        torch.manual_seed(0)
        model = build_model("sasrec", {"n_items": 80, "hidden": 16, "n_layers": 1, "max_len": 12}, "cpu")
        batches = list(validation_batches(split, 8, 37, env.rank, env.world))  # 37: not a multiple of a group
        metric = validate(model, batches, env, amp=False, ties=Ties())
        users = torch.cat([b["user_idx"] for b in batches]).tolist()
        Path(out, f"world{world}-rank{rank}.json").write_text(json.dumps({"users": users, **metric}))
    finally:
        close_distributed()


def test_validation_scores_the_same_rows_and_metric_with_one_or_two_ranks(tmp_path, seq_dir):
    """The first eval_rows rows of validation/ in file order, split among the ranks: before, each rank scored
    eval_rows // world rows of its own row groups, so early stopping and best.pt moved with the world size."""
    for world in (1, 2):
        torch.multiprocessing.spawn(_validation_worker, args=(world, _free_port(), str(seq_dir / "validation"),
                                                              str(tmp_path)), nprocs=world)
    one = json.loads((tmp_path / "world1-rank0.json").read_text())
    two = [json.loads((tmp_path / f"world2-rank{r}.json").read_text()) for r in range(2)]
    first = pq.read_table(seq_dir / "validation", columns=["user_idx"]).column("user_idx").to_pylist()
    assert one["users"] == first[:37] and one["rows"] == 37  # the first 37 rows in file order
    assert sorted(two[0]["users"] + two[1]["users"]) == sorted(one["users"])
    assert not set(two[0]["users"]) & set(two[1]["users"])
    for r in two:
        assert r["rows"] == 37
        assert r["hr@10"] == pytest.approx(one["hr@10"], abs=1e-12)
        assert r["ndcg@10"] == pytest.approx(one["ndcg@10"], abs=1e-9)
    assert 0 < one["hr@10"] < 1  # a metric that can tell rows apart


def run_job(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "jobs/train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_job_launches_torchrun_with_two_processes_and_logs_to_mlflow(tmp_path, seq_dir):
    import mlflow

    result = run_job("--warehouse", str(tmp_path), "--model", "ncf", "--nproc", "2", "--max-steps", "40",
                     f"train.sequences={seq_dir}", "train.device=cpu", "mlflow.experiment=test-train",
                     "train.eval_every=20", *FAST["ncf"][:-2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best validation NDCG@10" in result.stdout
    state = torch.load(tmp_path / "models" / "ncf" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and state["progress"]["step"] == 40

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '_mlflow' / 'mlflow.db'}")
    run = client.get_run(state["progress"]["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "test-train"
    assert run.data.params["train.max_steps"] == "40" and run.data.params["model"] == "ncf"
    assert len(client.get_metric_history(run.info.run_id, "val_ndcg_10")) == 2
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"checkpoint.pt", "best.pt", "config.json"}


def test_failed_worker_gives_one_line_and_nonzero_exit(tmp_path):
    seq = write_shards(tmp_path, PlantedData(n_users=40, rows_per_group=1000, n_files=1))  # one row group per split
    result = run_job("--warehouse", str(tmp_path), "--model", "ncf", "--nproc", "2", "--max-steps", "1",
                     f"train.sequences={seq}", "train.device=cpu", "mlflow.enabled=false")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "row group" in lines[0], result.stderr[-3000:]


def test_missing_warehouse_exits_2_with_one_line(tmp_path):
    result = run_job("--warehouse", str(tmp_path / "nope"), "--model", "sasrec", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: warehouse not found: {tmp_path / 'nope'}"


def test_topn_writes_k_distinct_unseen_items_and_reruns_replace(trained, seq_dir):
    from recsys_torch.infer import topn

    warehouse, _ = trained("sasrec")
    first = topn(warehouse, "sasrec", k=10, run_date="2024-01-02", run_id="r1", batch_size=50,
                 sequences=seq_dir)
    recs = read_recommendations(warehouse).to_pandas()
    test = pq.read_table(seq_dir / "test").to_pandas()
    assert first["users"] == len(test) and len(recs) == first["rows"] == 10 * len(test)
    assert set(recs.columns) == {"model", "run_id", "run_date", "userId", "rank", "movieId", "score"}
    seen = {1000 + u: {10 * i + 7 for i in s} for u, s in zip(test.user_idx, test.seen_items)}
    target = {1000 + u: 10 * t + 7 for u, t in zip(test.user_idx, test.target_item)}
    for user, group in recs.groupby("userId"):
        assert sorted(group["rank"]) == list(range(1, 11))
        assert group["movieId"].nunique() == 10 and not set(group["movieId"]) & seen[user]
        assert group.sort_values("rank")["score"].is_monotonic_decreasing
    hits = np.mean([target[u] in set(g["movieId"]) for u, g in recs.groupby("userId")])
    assert hits >= MIN_HR  # the ids are mapped right: the planted next item is found

    topn(warehouse, "sasrec", k=10, run_date="2024-01-02", run_id="r2", sequences=seq_dir)
    again = read_recommendations(warehouse).to_pandas()
    assert len(again) == len(recs) and set(again.run_id) == {"r2"}
    older = read_recommendations(warehouse, version=first["table_version"]).to_pandas()
    assert len(older) == len(recs) and set(older.run_id) == {"r1"}

    topn(warehouse, "sasrec", k=5, run_date="2024-01-03", run_id="r3", sequences=seq_dir)
    both = read_recommendations(warehouse).to_pandas()
    assert len(both) == len(recs) + 5 * len(test)  # another date is another partition


def test_ncf_scores_each_user_once_for_both_lists_and_writes_what_a_pass_per_split_writes(trained, seq_dir,
                                                                                         tmp_path):
    """NCF's scores do not depend on the history: topn_lists scores the validation rows once and derives the test
    list from them (the validation item becomes seen); test users without a validation row are scored on their own.
    Both lists must equal those of one topn pass per split."""
    import shutil

    from recsys_torch.infer import topn, topn_lists

    warehouse, _ = trained("ncf")
    shards = tmp_path / "sequences"
    shutil.copytree(seq_dir, shards)
    for part in sorted((shards / "validation").glob("*.parquet")):  # every 8th user loses their validation row
        rows = pq.read_table(part)
        pq.write_table(rows.filter(pc.not_equal(pc.bit_wise_and(rows["user_idx"], 7), 0)), part, row_group_size=16)
    test_users = set(pq.read_table(shards / "test").column("user_idx").to_pylist())
    alone = test_users - set(pq.read_table(shards / "validation").column("user_idx").to_pylist())
    assert alone

    common = dict(k=10, run_date="2024-01-02", run_id="r", batch_size=50, sequences=shards,
                  model_dir=warehouse / "models" / "ncf")
    stats = topn_lists(tmp_path / "one", "ncf", **common)
    assert [s["split"] for s in stats] == ["test", "validation"]
    for split in ("test", "validation"):
        topn(tmp_path / "per-split", "ncf", split=split, **common)
        one, per_split = (read_recommendations(tmp_path / w, split=split).to_pandas()
                          .sort_values(["userId", "rank"]).reset_index(drop=True) for w in ("one", "per-split"))
        assert len(one) == len(per_split) > 0
        assert (one[["userId", "rank", "movieId"]] == per_split[["userId", "rank", "movieId"]]).all().all(), split
        # float32 scores of differently sized batches may differ by an ulp (2.4e-7 seen on a score near 0.02)
        np.testing.assert_allclose(one.score, per_split.score, rtol=1e-5, atol=1e-6)
    assert {u - 1000 for u in read_recommendations(tmp_path / "one").to_pandas().userId} == test_users


def test_topn_without_a_trained_model_is_a_clear_error(tmp_path, seq_dir):
    from recsys_torch.infer import topn

    with pytest.raises(RecsysError, match="no trained ss4rec model"):
        topn(tmp_path, "ss4rec", sequences=seq_dir)


def test_topn_reads_the_model_folder_training_used_and_refuses_another_models_weights(trained, seq_dir, tmp_path):
    import shutil

    from recsys_torch.infer import topn

    warehouse, _ = trained("sasrec")
    elsewhere = tmp_path / "nightly-models" / "sasrec"  # as with train.output=...
    shutil.copytree(warehouse / "models" / "sasrec", elsewhere)
    stats = topn(tmp_path, "sasrec", k=5, run_date="2024-01-03", sequences=seq_dir, model_dir=elsewhere)
    assert stats["rows"] == 5 * stats["users"]

    with pytest.raises(RecsysError, match="holds a 'sasrec' model, not 'ss4rec'"):
        topn(tmp_path, "ss4rec", k=5, sequences=seq_dir, model_dir=elsewhere)


def test_lightgcn_lists_propagate_over_the_validation_edges_at_test_time_and_exclude_the_history(trained, seq_dir):
    from recsys_torch.shards import read_meta
    from recsys_torch.graph import graph_edges
    from recsys_torch.infer import topn

    meta = read_meta(seq_dir)
    validation = pq.read_table(seq_dir / "validation").to_pandas()
    test = pq.read_table(seq_dir / "test").to_pandas()
    train_users, train_items = graph_edges(seq_dir, meta, "validation")
    test_users, test_items = graph_edges(seq_dir, meta, "test")
    assert len(train_users) == meta["rows"]["edges"]
    assert sorted(zip(test_users.tolist(), test_items.tolist())) == sorted(
        list(zip(train_users.tolist(), train_items.tolist())) + list(zip(validation.user_idx, validation.target_item)))

    warehouse, _ = trained("lightgcn")
    for split, rows in (("test", test), ("validation", validation)):
        stats = topn(warehouse, "lightgcn", k=10, run_date="2024-01-02", run_id=split, sequences=seq_dir,
                     split=split)
        recs = read_recommendations(warehouse, split=split).to_pandas()
        assert stats["users"] == len(rows) and len(recs) == stats["rows"] == 10 * len(rows)
        seen = {1000 + u: {10 * i + 7 for i in s} for u, s in zip(rows.user_idx, rows.seen_items)}
        target = {1000 + u: 10 * t + 7 for u, t in zip(rows.user_idx, rows.target_item)}
        for user, group in recs.groupby("userId"):
            assert group["movieId"].nunique() == 10 and not set(group["movieId"]) & seen[user]
        hits = np.mean([target[u] in set(g["movieId"]) for u, g in recs.groupby("userId")])
        assert hits >= MIN_HR, (split, hits)  # the ids are mapped right: the planted cluster is found


def test_lightgcn_without_edges_or_with_bad_edges_is_a_clear_error(tmp_path):
    import shutil

    import pyarrow as pa

    seq = write_shards(tmp_path, PlantedData(n_users=40))
    shutil.rmtree(seq / "edges")
    with pytest.raises(RecsysError, match=r"no Parquet shards in \S+edges \(run `recsys export-sequences`"):
        train(tmp_path, "lightgcn", config("lightgcn", seq))
    (seq / "edges").mkdir()
    pq.write_table(pa.table({"user_idx": pa.array([1, 41], pa.int32()), "item_idx": pa.array([1, 2], pa.int32())}),
                   seq / "edges" / "part-00000.parquet")
    with pytest.raises(RecsysError, match=r"edges: user_idx 41 is outside 1..40 \(n_users of meta.json\)"):
        train(tmp_path, "lightgcn", config("lightgcn", seq))
    pq.write_table(pa.table({"user_idx": pa.array([1], pa.int32())}), seq / "edges" / "part-00000.parquet")
    with pytest.raises(RecsysError, match=r"part-00000.parquet: missing column\(s\) \['item_idx'\]"):
        train(tmp_path, "lightgcn", config("lightgcn", seq))


@dataclasses.dataclass
class DotConfig:
    n_users: int
    n_items: int
    dim: int = 16


class Dot(PairModel):
    """Plain matrix factorisation that recsys_torch has never heard of: the contract is all it offers."""
    train_shard = "ncf_train"
    pair_loss_name = "bpr (dot)"

    def __init__(self, cfg: DotConfig):
        super().__init__()
        self.cfg = cfg
        self.users, self.items = nn.Embedding(cfg.n_users + 1, cfg.dim), nn.Embedding(cfg.n_items + 1, cfg.dim)

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def pair_loss(self, users, pos_items, neg_items):
        u = self.users(users)
        return bpr((u * self.items(pos_items)).sum(-1), (u[:, None] * self.items(neg_items)).sum(-1))

    def score_users(self, users):
        logits = self.users(users) @ self.items.weight.T
        logits[:, 0] = float("-inf")
        return logits

    def item_vectors(self):
        return self.items.weight


def test_a_fifth_model_trains_validates_and_writes_lists_and_vectors_through_the_contract(tmp_path, seq_dir,
                                                                                        monkeypatch):
    """Registered under a name nothing in recsys_torch spells out: the trainer, validation and top-N call only what
    models/base.py declares (no ITEM_VECTORS table keyed by name, no batch-kind switch)."""
    import deltalake

    from recsys_torch import models
    from recsys_torch.infer import topn
    from recsys_torch.tables import item_embeddings_path

    monkeypatch.setitem(models.MODELS, "dot", (Dot, DotConfig))
    cfg = load_config(["train"], overrides=[
        f"train.sequences={seq_dir}", "train.device=cpu", "train.batch_size=32", "train.min_steps_per_epoch=1",
        "train.shuffle_buffer=64", "mlflow.enabled=false", "train.lr=0.02", "train.max_steps=120",
        "train.eval_every=40", "train.weight_decay=0.0"])
    summary = train(tmp_path, "dot", cfg)
    assert summary["loss"] == "bpr (dot)" and summary["steps"] == 120
    assert max(h["val_hr@10"] for h in summary["history"]) >= 2 * popularity_hr_at_10(seq_dir)

    stats = topn(tmp_path, "dot", k=10, run_date="2024-01-02", sequences=seq_dir)
    recs = read_recommendations(tmp_path).to_pandas()
    assert set(recs.model) == {"dot"} and len(recs) == stats["rows"] == 10 * stats["users"]
    files = deltalake.DeltaTable(str(item_embeddings_path(tmp_path))).file_uris()
    assert len(files) == 1 and "model=dot" in files[0]
    vectors = pq.read_table(files[0]).to_pydict()
    best = torch.load(tmp_path / "models" / "dot" / "best.pt", weights_only=True)["model"]["items.weight"]
    assert sorted(vectors["movieId"]) == [10 * i + 7 for i in range(1, 81)]  # tests/torch_shards.py's item map
    row = vectors["movieId"].index(17)  # item 1
    torch.testing.assert_close(torch.tensor(vectors["vector"][row]), best[1])
