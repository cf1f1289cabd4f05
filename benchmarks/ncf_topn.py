"""NCF's full-ranking scores on CPU at ML-25M size: the chunked path vs the cache-sized tiles inference uses.

    .venv/bin/python benchmarks/ncf_topn.py [--items 59047 --users-per-list 162541] [--batch 1024] [--repeats 3]

Builds conf/ncf.yaml's NeuMF (random weights: the cost does not depend on them) over --items items and scores one
batch of --batch users (recsys topn's batch) over the whole catalogue with each path: `chunked` (pair_logits over
8,192-item chunks, [batch, 8192, width] activations) and `tiled` (score_users_tiled at each --tiles size). Prints
ns per (user, item) pair, the minutes one list of --users-per-list users would take, and the largest difference
from the chunked logits (the paths compute the same function). The median of --repeats runs is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=59_047)
    p.add_argument("--users-per-list", type=int, default=162_541)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--mlp-dims", default="128,64,32", help="conf/ncf.yaml's ncf.mlp_dims")
    p.add_argument("--tiles", default="32x512,64x512,16x1024,32x1024,64x256,128x128",
                   help="users x items per tile, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the figures here as JSON too")
    args = p.parse_args()

    import torch

    from recsys_torch.models.ncf import NCF, NCFConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = NCF(NCFConfig(n_users=args.batch, n_items=args.items,
                        mlp_dims=tuple(int(d) for d in args.mlp_dims.split(","))))
    net.init_weights()
    net.eval()
    users = torch.arange(1, args.batch + 1)
    pairs = args.batch * (args.items + 1)

    def timed(score) -> tuple[float, torch.Tensor]:
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            with torch.no_grad():
                logits = score()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), logits

    load_before = os.getloadavg()[0]
    rows = []
    reference = None
    paths = [("chunked", lambda: net.score_users_chunked(users))]
    for tile in args.tiles.split(","):
        n_users, n_items = (int(x) for x in tile.split("x"))
        paths.append((f"tiled {tile}", lambda u=n_users, i=n_items: net.score_users_tiled(users, u, i)))
    for name, score in paths:
        seconds, logits = timed(score)
        if reference is None:
            reference = logits
        row = {"path": name, "seconds_per_batch": round(seconds, 3), "ns_per_pair": round(seconds / pairs * 1e9, 1),
               "minutes_per_list": round(seconds / args.batch * args.users_per_list / 60, 1),
               "max_abs_diff": float((logits[:, 1:] - reference[:, 1:]).abs().max())}
        rows.append(row)
        print(f"{name:>16}  {row['seconds_per_batch']:8.3f} s/batch  {row['ns_per_pair']:7.1f} ns/pair  "
              f"{row['minutes_per_list']:6.1f} min/list  max diff {row['max_abs_diff']:.1e}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "args": vars(args), "load_before": load_before,
                                              "load_after": os.getloadavg()[0], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
