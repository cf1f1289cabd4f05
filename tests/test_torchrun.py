"""Multi-node torchrun (jobs/torchrun.py): the launcher's flags from the `train:` section, and two torchrun agents on
loopback, each a one-process "node" meeting at a c10d rendezvous, training exactly what one node with two processes
trains (gloo on CPU, through `recsys train` as a user runs it on each node)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.torchrun import torchrun_args, torchrun_env
from recsys_core.errors import ConfigError
from torch_shards import PlantedData, write_shards

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API


def test_one_node_is_standalone_and_several_meet_at_the_c10d_rendezvous():
    assert torchrun_args({"nproc": 4}) == ["--standalone", "--nproc-per-node=4"]
    args = torchrun_args({"nproc": 8, "nnodes": 2, "rdzv_endpoint": "${HEAD}", "node_rank": 1, "max_restarts": 3},
                         model="sasrec", run_date="2026-12-02", environ={"HEAD": "gpu-0.internal:29400"})
    assert args == ["--nnodes=2", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu-0.internal:29400",
                    "--rdzv-id=recsys-sasrec-2026-12-02", "--node-rank=1", "--max-restarts=3"]
    assert "--rdzv-id=nightly-7" in torchrun_args({"nnodes": 2, "rdzv_endpoint": "h:1", "rdzv_id": "nightly-7"})
    # a printed plan keeps the reference for the node's shell to fill
    assert "--rdzv-endpoint=${HEAD}" in torchrun_args({"nnodes": 2, "rdzv_endpoint": "${HEAD}"}, expand_env=False)
    assert torchrun_env({"launch_env": {"NCCL_SOCKET_IFNAME": "${IF}", "NCCL_IB_DISABLE": 1}},
                        environ={"IF": "ens5"}) == {"NCCL_SOCKET_IFNAME": "ens5", "NCCL_IB_DISABLE": "1"}


@pytest.mark.parametrize("train, message", [
    ({"nnodes": 2}, "train.nnodes=2 needs train.rdzv_endpoint"),
    ({"nnodes": 2, "rdzv_endpoint": "head"}, "train.rdzv_endpoint must be host:port"),
    ({"nnodes": 2, "rdzv_endpoint": "${NOT_SET_HERE}"}, "train.rdzv_endpoint reads ${NOT_SET_HERE}, which is not set"),
    ({"nnodes": 2, "rdzv_endpoint": "${HEAD}"}, "train.rdzv_endpoint must be host:port"),  # HEAD=nonsense
    ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, "train.node_rank (2) must be below train.nnodes (2)"),
    ({"nnodes": 0}, "train.nnodes must be a positive integer"),
    ({"launch_env": ["NCCL_SOCKET_IFNAME=eth0"]}, "train.launch_env must be a mapping"),
])
def test_bad_launch_settings_are_one_line_errors(train, message):
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        torchrun_args(train, environ={"HEAD": "nonsense"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# NCF, small: 20 optimizer steps of 16 pairs per rank, validated at 10 and 20. One torch thread per rank in both
# setups (the default divides the node's cores among its ranks, and a matmul's sums depend on its thread count).
SETTINGS = ["train.device=cpu", "train.threads=1", "mlflow.enabled=false", "ncf.gmf_dim=8", "ncf.mlp_dims=[16,8]",
            "train.lr=0.01", "train.max_steps=20", "train.eval_every=10", "train.batch_size=16",
            "train.min_steps_per_epoch=1", "train.shuffle_buffer=64"]


def _recsys_train(warehouse: Path, seq_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "jobs/train.py", "--warehouse", str(warehouse), "--model", "ncf",
                             f"train.sequences={seq_dir}", *SETTINGS, *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: int = 240) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, err[-3000:]
    return out


def test_two_one_process_nodes_train_what_one_two_process_node_trains(tmp_path):
    seq_dir = write_shards(tmp_path, PlantedData(n_users=96))
    one_node, two_nodes = tmp_path / "one-node", tmp_path / "two-nodes"
    one_node.mkdir()
    two_nodes.mkdir()

    single = _recsys_train(one_node, seq_dir, "train.nproc=2")
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [_recsys_train(two_nodes, seq_dir, "train.nproc=1", "train.nnodes=2", f"train.rdzv_endpoint={endpoint}",
                           "train.rdzv_id=test-two-nodes") for _ in range(2)]
    outputs = [_finish(p) for p in (single, *nodes)]
    assert "best validation NDCG@10" in outputs[0]
    assert sum("best validation NDCG@10" in out for out in outputs[1:]) == 1  # printed by global rank 0 only

    for name in ("best.pt", "checkpoint.pt"):
        a, b = (torch.load(folder / "models" / "ncf" / name, weights_only=True) for folder in (one_node, two_nodes))
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6, msg=f"{name}: {key}")
        if name == "best.pt":
            assert a["step"] == b["step"] and a["metrics"] == pytest.approx(b["metrics"], abs=1e-9)
        else:
            assert a["world_size"] == b["world_size"] == 2 and a["progress"]["step"] == b["progress"]["step"] == 20
    logs = sorted(p.name for p in (two_nodes / "models" / "ncf").glob("torchrun*.log"))
    assert len(logs) == 2 and all(name.startswith(f"torchrun-{socket.gethostname()}-") for name in logs)
