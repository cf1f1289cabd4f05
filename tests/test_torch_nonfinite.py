"""A diverged torch model never wins and never publishes (issue 19, non-finite guards): NaN or infinite scores are
misses in validation, a non-finite training loss stops `recsys train` with one line and leaves best.pt as it was,
and top-N refuses non-finite scores instead of writing a partial partition."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.config import load_config
from recsys_core.ties import Ties
from recsys_torch.errors import RecsysError
from recsys_torch.metrics import hit_and_ndcg, mask_seen, target_ranks
from recsys_torch.tables import read_recommendations
from recsys_torch.train import train
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"), PlantedData(n_users=40))


def overrides(seq_dir: Path, *extra: str) -> list[str]:
    return [f"train.sequences={seq_dir}", "train.device=cpu", "train.batch_size=32", "train.min_steps_per_epoch=1",
            "train.shuffle_buffer=64", "mlflow.enabled=false", "train.max_steps=6", "train.eval_every=3", *extra]


def test_nan_and_infinite_scores_are_misses_never_hits():
    logits = torch.tensor([[-INF, 1.0, 2.0, 3.0, 0.5],    # target 3 ranked first: a hit
                           [-INF, NAN, NAN, NAN, NAN],    # a diverged model: no item is >= NaN
                           [-INF, 1.0, NAN, 3.0, 0.5],    # a NaN elsewhere in the row
                           [-INF, 1.0, INF, 3.0, 0.5],    # an infinite target
                           [-INF, 1.0, 2.0, 3.0, 0.5]])   # target 2, seen (masked to -inf)
    targets = torch.tensor([3, 1, 3, 2, 2])
    seen = torch.tensor([[0], [0], [0], [0], [2]])
    ranks = target_ranks(mask_seen(logits, seen), targets, torch.arange(5), Ties())
    hit, ndcg = hit_and_ndcg(ranks, k=3)
    assert ranks[0] == 0 and hit.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert ndcg.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0] and torch.isfinite(ndcg).all()


def test_validation_of_a_diverged_model_scores_zero(seq_dir):
    """Before the guard a NaN model got HR@10 = 1 and NDCG@10 = inf, and so became best.pt."""
    from recsys_torch.data import ShardSpec, make_loader
    from recsys_torch.shards import EVAL_COLUMNS
    from recsys_torch.evaluation import validate
    from recsys_torch.models import build_model
    from recsys_torch.runtime import DistEnv

    torch.manual_seed(0)
    model = build_model("sasrec", {"n_items": 80, "hidden": 16, "n_layers": 1, "max_len": 20}, "cpu")
    env = DistEnv(rank=0, world=1, local_rank=0, local_world=1, device=torch.device("cpu"))
    _, loader = make_loader(ShardSpec(seq_dir / "validation", EVAL_COLUMNS, 16, shuffle=False))
    healthy = validate(model, loader, env, amp=False, ties=Ties())
    with torch.no_grad():
        model.final_norm.weight.fill_(NAN)
    diverged = validate(model, loader, env, amp=False, ties=Ties())
    assert healthy["rows"] == diverged["rows"] == 40 and healthy["hr@10"] > 0
    assert diverged["hr@10"] == 0.0 and diverged["ndcg@10"] == 0.0


def test_a_nan_loss_exits_nonzero_with_one_line_and_leaves_best_pt_as_it_was(tmp_path, seq_dir):
    train(tmp_path, "sasrec", load_config(["train", "sasrec"], overrides=overrides(
        seq_dir, "sasrec.hidden=16", "sasrec.n_layers=1")))
    out = tmp_path / "models" / "sasrec"
    best, last = (out / "best.pt").read_bytes(), (out / "checkpoint.pt").read_bytes()

    # a learning rate of 1e30 sends the weights, then the loss, to NaN within the first steps
    result = subprocess.run([sys.executable, "jobs/train.py", "--warehouse", str(tmp_path), "--model", "sasrec",
                             *overrides(seq_dir, "sasrec.hidden=16", "sasrec.n_layers=1", "train.lr=1.0e+30")],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sasrec: the training loss is nan"), result.stderr[-3000:]
    assert (out / "best.pt").read_bytes() == best and (out / "checkpoint.pt").read_bytes() == last


def test_topn_refuses_non_finite_scores_and_keeps_the_last_lists(tmp_path, seq_dir):
    """One user's NaN vector: writing would drop that user's list (a partial partition); nothing is written."""
    from recsys_torch.infer import topn

    train(tmp_path, "ncf", load_config(["train", "ncf"], overrides=overrides(
        seq_dir, "ncf.gmf_dim=8", "ncf.mlp_dims=[16,8]")))
    first = topn(tmp_path, "ncf", k=5, run_date="2024-01-02", run_id="good", sequences=seq_dir)
    best_path = tmp_path / "models" / "ncf" / "best.pt"
    state = torch.load(best_path, weights_only=True)
    state["model"]["user_gmf.weight"][7] = NAN
    torch.save(state, best_path)
    with pytest.raises(RecsysError, match=r"ncf: non-finite scores for 1 of 40 users of test/ \(user_idx \[7\]\)"):
        topn(tmp_path, "ncf", k=5, run_date="2024-01-02", run_id="bad", sequences=seq_dir)
    recs = read_recommendations(tmp_path).to_pandas()
    assert set(recs.run_id) == {"good"} and len(recs) == first["rows"] == 5 * 40


def test_nan_weights_with_a_finite_loss_stop_before_a_fresh_run_writes_anything(tmp_path, seq_dir):
    """The batch whose gradient turned the weights NaN can itself have a finite loss: the weights are checked too,
    or the NaN model would validate at 0, beat a fresh run's -1 and become best.pt."""
    from recsys_torch.config import TrainConfig
    from recsys_torch.shards import read_meta
    from recsys_torch.runtime import close_distributed, init_distributed
    from recsys_torch.trainer import Trainer

    cfg = load_config(["train", "sasrec"], overrides=overrides(seq_dir, "sasrec.hidden=16", "sasrec.n_layers=1"))
    env = init_distributed("cpu", cpu_threads=1)
    trainer = Trainer(tmp_path, "sasrec", cfg, TrainConfig.from_dict(cfg["train"]), seq_dir, read_meta(seq_dir), env)
    try:
        trainer._window.update(loss=2.5, micro=1)
        with torch.no_grad():
            trainer.model.item_emb.weight[3, 0] = NAN
        with pytest.raises(RecsysError, match="sasrec: the weights are not finite by step 0; training stopped"):
            trainer.validate_and_checkpoint()
        assert not (tmp_path / "models").exists()
    finally:
        trainer.release()
        close_distributed()
