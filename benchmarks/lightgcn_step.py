"""LightGCN's training step at ML-25M size on CPU: the whole graph propagated per step vs only the batch's rows.

    .venv/bin/python benchmarks/lightgcn_step.py [--users 162541 --items 59047 --edges 24675013] [--steps 10]

Builds a random bipartite graph of --edges distinct (user, item) edges (the normalised adjacency of
recsys_torch.models.lightgcn), then times what the trainer does per step on a batch of --batch-size edges with one
sampled negative each: the BPR pair loss, backward, AdamW. `whole graph` forces the propagation of every node
(what every step did before, and what models of two or more layers still do); `batch rows` is the one-layer default
(the batch's rows of the graph times E_0). The median of --steps timed steps after one warm-up step is printed,
with the peak RSS, and the two losses of the same batch (they must agree).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine, python_peak_rss_gb  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--edges", type=int, default=24_675_013)
    p.add_argument("--batch-size", type=int, default=2048, help="conf/lightgcn.yaml's train.batch_size")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the figures here as JSON too")
    return p.parse_args()


def timed_steps(model, optimizer, users, items, batch, negatives, steps: int) -> tuple[float, float]:
    """The median seconds of `steps` training steps on one batch (after one untimed), and that batch's loss
    after them."""
    import torch

    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        loss = model.pair_loss(users[batch], items[batch], negatives)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - started)
    with torch.no_grad():
        same_batch_loss = float(model.pair_loss(users[batch], items[batch], negatives))
    return statistics.median(times), same_batch_loss


def main() -> int:
    args = parse_args()

    import torch

    from recsys_torch.models import build_model
    from recsys_torch.models.lightgcn import normalized_adjacency

    torch.set_num_threads(args.threads)
    print(machine())
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    users = torch.randint(1, args.users + 1, (args.edges,), generator=gen)
    items = torch.randint(1, args.items + 1, (args.edges,), generator=gen)
    model = build_model("lightgcn", {"n_users": args.users, "n_items": args.items, "dim": args.dim,
                                     "n_layers": 1}, "cpu")
    model.set_graph(normalized_adjacency(users, items, args.users, args.items))
    print(f"graph: {model.adj._nnz():,} non-zeros over {model.adj.shape[0]:,} nodes, built in "
          f"{time.perf_counter() - started:.1f} s")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.0)
    rows = model.adj_rows
    figures = {"machine": machine(), "users": args.users, "items": args.items, "nnz": model.adj._nnz(),
               "batch_size": args.batch_size, "threads": args.threads}
    batch = torch.randint(0, args.edges, (args.batch_size,), generator=gen)
    negatives = torch.randint(1, args.items + 1, (args.batch_size, 1), generator=gen)
    for name, adj_rows in (("whole graph", None), ("batch rows", rows)):
        model.adj_rows = adj_rows
        median, same_batch_loss = timed_steps(model, optimizer, users, items, batch, negatives, args.steps)
        figures[name] = {"median_step_s": round(median, 4), "loss_of_a_fixed_batch": same_batch_loss}
        print(f"{name:<12} median step {median * 1000:8.1f} ms over {args.steps} steps")
    model.adj_rows = None
    with torch.no_grad():
        whole = float(model.pair_loss(users[batch], items[batch], negatives))
    model.adj_rows = rows
    with torch.no_grad():
        local = float(model.pair_loss(users[batch], items[batch], negatives))
    figures["same_weights_loss"] = {"whole graph": whole, "batch rows": local}
    figures["speedup"] = round(figures["whole graph"]["median_step_s"] / figures["batch rows"]["median_step_s"], 1)
    figures["peak_rss_gb"] = round(python_peak_rss_gb(), 2)
    print(f"same weights, same batch: loss {whole:.6f} (whole graph) vs {local:.6f} (batch rows); "
          f"{figures['speedup']}x faster; peak RSS {figures['peak_rss_gb']} GB")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
