"""The GPU check: what one short session on a bare accelerator machine measures, printed as one Markdown block that
pastes into README as is. Needs only Python, torch and numpy (pyarrow is used when present); installs nothing.

    scripts/gpu_check.sh                        # on the GPU machine: CUDA, full sizes, about 5 minutes on an H100
    scripts/gpu_check.sh --device cpu --tiny    # anywhere: tiny sizes (what tests/test_gpu_check.py runs)
    scripts/gpu_check.sh --prepare              # here, once: the quality set -> .gpu_carry/ (see docs/GPU.md)

Sections, in order:
1. the machine: device name and count, torch, CUDA, NCCL, Python, numpy, pyarrow and the shard reader;
2. training throughput of the registry's sequence models at 59,047 items, length 200, batch 128, widths 64 and
   256, bf16: benchmarks/train_throughput.py's `benchmark` (sequences/s, median step time, peak GPU memory, MFU),
   then SASRec in pmixer/SASRec.pytorch's setting (width 256, 3 blocks, fp32, BCE) against its 8,193 seq/s;
3. a DDP smoke: one process per GPU (2 on CPU), the project's `init_distributed` (NCCL on GPU, gloo on CPU), an
   all_reduce and one DDP training step whose gradients must come out identical on every rank;
4. full-ranking top-100 throughput in users/s at 59,047 items: evaluation.score_batch, seen items masked, topk
   (what `recsys topn` does per batch), histories of length 200;
5. quality: SASRec trained a few hundred steps on the carried real set (ml-latest-small's shards as exported by
   `recsys export-sequences`, read from arrays.npz) with the trainer's loss, optimizer and schedule; validation
   NDCG@10 (evaluation.validate) before and after must rise. When pyarrow is installed, the carried validation
   shard is also read through recsys_torch.data's pyarrow reader and must equal the carried arrays.
Exit 0 when every check passed, 1 when one failed, 2 on bad input.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import train_throughput  # noqa: E402
from _gpu_carry import (CARRY, CARRY_LIMIT_MIB, load_quality_set, prepare, reader_matches_arrays,  # noqa: E402
                        report_carried_size)
from recsys_torch.shards import EVAL_COLUMNS, SEQUENCE_COLUMNS, resolve_reader  # noqa: E402
from recsys_torch.errors import RecsysError  # noqa: E402
from recsys_torch.evaluation import score_batch, validate  # noqa: E402
from recsys_torch.losses import NextItemLoss  # noqa: E402
from recsys_torch.metrics import mask_seen  # noqa: E402
from recsys_torch.models import build_model  # noqa: E402
from recsys_torch.runtime import DistEnv, autocast, close_distributed, init_distributed, trim_left_padding  # noqa: E402
from recsys_torch.trainer import LossModule, lr_lambda, param_groups  # noqa: E402

PEER_SEQ_PER_S = 8_193        # pmixer/SASRec.pytorch, one H100: width 256, 3 blocks, length 200, batch 128, fp32 BCE
PEER_GOAL = 3.0
TOP_K = 100
# dense bf16 peak TFLOP/s by device name (for MFU); anything else: train_throughput's default, said in the block
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


@dataclass
class Sizes:
    n_items: int
    seq_len: int
    batch: int
    widths: tuple[int, int]
    steps: int            # timed steps per throughput row
    warmup: int
    topn_users: int       # users per scoring batch
    topn_batches: int
    quality_width: int
    quality_steps: int
    quality_batch: int
    quality_eval_rows: int


FULL = Sizes(n_items=59_047, seq_len=200, batch=128, widths=(64, 256), steps=10, warmup=3, topn_users=1024,
             topn_batches=8, quality_width=64, quality_steps=300, quality_batch=128, quality_eval_rows=610)
TINY = Sizes(n_items=500, seq_len=20, batch=4, widths=(16, 32), steps=1, warmup=1, topn_users=16, topn_batches=2,
             quality_width=32, quality_steps=30, quality_batch=16, quality_eval_rows=200)


def versions(device: torch.device) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "cuda": torch.version.cuda, "nccl": None, "gpus": 0, "device_name": platform.processor() or "cpu"}
    try:
        import pyarrow

        out["pyarrow"] = pyarrow.__version__
    except ImportError:
        out["pyarrow"] = None
    if device.type == "cuda":
        out["gpus"] = torch.cuda.device_count()
        out["device_name"] = torch.cuda.get_device_name(device)
        if torch.distributed.is_nccl_available():
            nccl = torch.cuda.nccl.version()  # a tuple in torch 2.x, an int before
            out["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    else:
        out["device_name"] = f"CPU ({os.cpu_count()} cores)"
    out["reader"] = resolve_reader() if out["pyarrow"] else "none (pyarrow absent: the quality set is read from .npz)"
    return out


def peak_tflops(name: str) -> tuple[float, str]:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value, f"{key} dense bf16"
    return 989.0, "H100 SXM dense bf16 (this device is not in the table)"


def throughput(device: torch.device, sizes: Sizes, peak: float) -> tuple[list[dict], dict]:
    """Rows of benchmarks/train_throughput.py: every registry sequence model at both widths (bf16), then SASRec in
    the peer's setting (fp32, BCE, 3 blocks, width 256)."""
    common = ["--device", device.type, "--n-items", str(sizes.n_items), "--seq-len", str(sizes.seq_len),
              "--batch-size", str(sizes.batch), "--steps", str(sizes.steps), "--warmup", str(sizes.warmup),
              "--peak-tflops", str(peak)]
    entries = [f"{name}@{width}" for name in train_throughput.MODEL_NAMES for width in sizes.widths]
    args = train_throughput.parse_args(common + ["--models", ",".join(entries)])
    rows = [train_throughput.benchmark(entry, args, device) for entry in entries]
    peer_args = train_throughput.parse_args(common + ["--models", f"sasrec@{sizes.widths[1]}", "--set",
                                                      "sasrec.n_layers=3", "--loss", "bce", "--precision", "fp32"])
    peer = train_throughput.benchmark(f"sasrec@{sizes.widths[1]}", peer_args, device)
    return rows, peer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, device_type: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    env = init_distributed(device_type, cpu_threads=1)
    if not torch.distributed.is_initialized():  # init_distributed makes no group for a single process
        torch.distributed.init_process_group("nccl" if env.device.type == "cuda" else "gloo")
    try:
        started = time.perf_counter()
        total = torch.tensor([rank + 1.0], device=env.device)
        torch.distributed.all_reduce(total)
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = build_model("sasrec", {"n_items": 1000, "max_len": 20, "hidden": 32, "n_layers": 1}, env.device)
        ddp = nn.parallel.DistributedDataParallel(
            LossModule(model, NextItemLoss("ce", 1000)),
            device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        torch.manual_seed(100 + rank)  # a different batch on every rank: the all-reduce must make the grads agree
        batch = train_throughput.synthetic_batches(1, 8, 20, 1000, env.device)[0]
        with autocast(env.device, True):
            loss = ddp(batch)
        loss.backward()
        grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
        spread = torch.stack([grads.sum(), -grads.sum(), grads.abs().sum()])
        low, high = spread.clone(), spread.clone()
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        if rank == 0:
            Path(out).write_text(json.dumps({
                "backend": torch.distributed.get_backend(), "world": world,
                "all_reduce_ok": float(total.item()) == world * (world + 1) / 2,
                "grads_equal": bool(torch.equal(low, high)), "grad_abs_sum": float(spread[2]),
                "seconds": time.perf_counter() - started}))
    finally:
        close_distributed()
    # Leave without the interpreter's shutdown: with pyarrow imported, a rank that returned normally aborted in 3 of
    # 6 runs here ("terminate called without an active exception", apache/arrow#34314), failing a smoke that passed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ddp_smoke(device: torch.device, cpu_world: int = 2) -> dict:
    """One process per GPU (`cpu_world` on CPU, gloo), through torch.multiprocessing."""
    world = torch.cuda.device_count() if device.type == "cuda" else cpu_world
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        try:
            torch.multiprocessing.spawn(_ddp_rank, args=(world, _free_port(), device.type, str(out)),
                                        nprocs=world, join=True)
        except Exception as error:  # noqa: BLE001 - the check reports it and fails, it does not stop
            return {"world": world, "backend": "nccl" if device.type == "cuda" else "gloo", "error": str(error)}
        return json.loads(out.read_text())


@torch.no_grad()
def topn_throughput(device: torch.device, sizes: Sizes) -> list[dict]:
    """users/s of full-ranking top-100 for each registry sequence model at the first width."""
    rows = []
    amp = device.type == "cuda"
    for name in train_throughput.MODEL_NAMES:
        torch.manual_seed(0)
        model = build_model(name, {"n_items": sizes.n_items, "max_len": sizes.seq_len,
                                   "hidden": sizes.widths[0]}, device).eval()
        batches = []
        for _ in range(2):
            seq = train_throughput.synthetic_batches(1, sizes.topn_users, sizes.seq_len, sizes.n_items, device)[0]
            batches.append({"items": seq["items"], "timestamps": seq["timestamps"],
                            "query_timestamp": seq["timestamps"][:, -1] + 3600, "seen_items": seq["items"]})

        def top(batch):
            with autocast(device, amp):
                logits = score_batch(model, batch)
            return torch.topk(mask_seen(logits, batch["seen_items"]), TOP_K, dim=1)

        top(batches[0])
        train_throughput.sync(device)
        started = time.perf_counter()
        for i in range(sizes.topn_batches):
            top(batches[i % 2])
        train_throughput.sync(device)
        seconds = time.perf_counter() - started
        rows.append({"model": name, "hidden": sizes.widths[0],
                     "users_per_s": sizes.topn_users * sizes.topn_batches / seconds})
        del model, batches
    return rows


def quality(device: torch.device, sizes: Sizes, folder: Path, seed: int = 42) -> dict:
    """SASRec trained on the carried set as the trainer would (its loss, AdamW, warm-up + cosine, clipping);
    validation NDCG@10 before and after."""
    meta, arrays = load_quality_set(folder)
    n_items, on_gpu = int(meta["n_items"]), device.type == "cuda"
    train = {name: torch.from_numpy(arrays[f"train.{name}"].astype(np.int64)) for name in SEQUENCE_COLUMNS}
    rows = len(train["items"])
    eval_rows = min(sizes.quality_eval_rows, len(arrays["validation.user_idx"]))
    valid = {name: torch.from_numpy(arrays[f"validation.{name}"][:eval_rows].astype(np.int64))
             for name in EVAL_COLUMNS}
    valid_batches = [{name: t[i:i + 256] for name, t in valid.items()} for i in range(0, eval_rows, 256)]
    torch.manual_seed(seed)
    model = build_model("sasrec", {"n_items": n_items, "max_len": int(meta["max_len"]),
                                   "hidden": sizes.quality_width}, device)
    targets = train["targets"][train["targets"] > 0]
    counts = torch.bincount(targets, minlength=n_items + 1)[: n_items + 1]
    loss_name = "ce" if on_gpu else "sampled_ce"  # TrainConfig.resolved_loss's `auto`
    loss = NextItemLoss(loss_name, n_items, 1024, counts, targets_per_row=float(counts.sum()) / max(rows, 1)).to(device)
    module = LossModule(model, loss)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=2e-3, betas=(0.9, 0.98),
                                  fused=True if on_gpu else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(round(0.05 * sizes.quality_steps), sizes.quality_steps, 0.1))
    env = DistEnv(rank=0, world=1, local_rank=0, local_world=1, device=device)
    from recsys_core.ties import Ties

    before = validate(model, valid_batches, env, True, Ties.of_report(meta))
    order = torch.Generator().manual_seed(seed)
    batch_size = min(sizes.quality_batch, rows)
    started = time.perf_counter()
    perm, at = torch.randperm(rows, generator=order), 0
    for _ in range(sizes.quality_steps):
        if at + batch_size > rows:
            perm, at = torch.randperm(rows, generator=order), 0
        idx = perm[at:at + batch_size]
        at += batch_size
        batch = trim_left_padding({name: t[idx].to(device, non_blocking=True) for name, t in train.items()})
        with autocast(device, True):
            value = module(batch)
        value.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    train_throughput.sync(device)
    seconds = time.perf_counter() - started
    after = validate(model, valid_batches, env, True, Ties.of_report(meta))
    return {"set": meta.get("source", folder.name), "users": int(meta["n_users"]), "items": n_items,
            "train_rows": rows, "eval_rows": eval_rows, "steps": sizes.quality_steps, "batch": batch_size,
            "hidden": sizes.quality_width, "loss": loss_name, "ndcg_before": before["ndcg@10"],
            "ndcg_after": after["ndcg@10"], "hr_after": after["hr@10"], "seconds": seconds,
            "rose": after["ndcg@10"] > before["ndcg@10"], "reader": reader_matches_arrays(folder, arrays)}


def block(info: dict, rows: list[dict], peer: dict, ddp: dict, topn: list[dict], qual: dict, sizes: Sizes,
          peak_note: str, device: torch.device, seconds: float, passed: bool) -> str:
    """The Markdown block README takes as is."""
    gpu = device.type == "cuda"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"#### GPU check: {info['device_name']}"
             + (f" x {info['gpus']}" if gpu else "") + f", {when} (`scripts/gpu_check.sh"
             + ("" if gpu else " --device cpu --tiny") + "`)", "",
             f"- device: {info['device_name']}; GPUs: {info['gpus']}; CUDA {info['cuda'] or 'none'}; "
             f"NCCL {info['nccl'] or 'none'}",
             f"- software: torch {info['torch']}, Python {info['python']}, numpy {info['numpy']}, "
             f"pyarrow {info['pyarrow'] or 'absent'}; shard reader: {info['reader']}",
             f"- training throughput: {sizes.n_items:,} items, length {sizes.seq_len}, batch {sizes.batch}, "
             f"full-softmax CE, {'bf16 autocast' if gpu else 'float32 (CPU)'}, median of {sizes.steps} steps "
             f"after {sizes.warmup} warm-up, synthetic batches; MFU against {peak_note}", "",
             "| model | width | layers | precision | seq/s | step ms | peak GPU memory GiB | MFU |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows + [peer]:
        memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["precision"] == "bf16" or not gpu else "n/a (fp32)"
        lines.append(f"| {r['model']} | {r['config']['hidden']} | {r['config']['n_layers']} | {r['precision']}"
                     f"{' BCE' if r is peer else ''} | {r['sequences_per_s']:,.0f} | {r['step_ms_median']:.1f} | "
                     f"{memory} | {mfu} |")
    ratio = peer["sequences_per_s"] / PEER_SEQ_PER_S
    lines += ["", f"- peer: SASRec width {peer['config']['hidden']}, {peer['config']['n_layers']} blocks, fp32 BCE: "
              f"{peer['sequences_per_s']:,.0f} seq/s vs pmixer/SASRec.pytorch's {PEER_SEQ_PER_S:,} on one H100 = "
              f"{ratio:.2f}x (goal >= {PEER_GOAL:g}x: {'met' if ratio >= PEER_GOAL else 'NOT met'})"
              + ("" if gpu else " (CPU run: not comparable)")]
    if "error" in ddp:
        lines.append(f"- DDP smoke: {ddp['backend']}, world {ddp['world']}: FAILED ({ddp['error'].splitlines()[0]})")
    else:
        lines.append(f"- DDP smoke: {ddp['backend']}, world {ddp['world']}: all_reduce "
                     f"{'ok' if ddp['all_reduce_ok'] else 'WRONG'}, one DDP step, gradients "
                     f"{'identical on every rank' if ddp['grads_equal'] else 'DIFFER between ranks'} "
                     f"({ddp['seconds']:.1f} s)")
    lines.append(f"- full-ranking top-{TOP_K}: " + ", ".join(
        f"{r['model']} width {r['hidden']} {r['users_per_s']:,.0f} users/s" for r in topn)
        + f" ({sizes.n_items:,} items, histories of {sizes.seq_len}, {sizes.topn_users} users a batch, seen masked)")
    lines.append(f"- quality: {qual['set']} ({qual['users']:,} users, {qual['items']:,} items, "
                 f"{qual['train_rows']:,} train windows): SASRec width {qual['hidden']}, {qual['steps']} steps of "
                 f"{qual['batch']}, {qual['loss']}: validation NDCG@10 {qual['ndcg_before']:.4f} -> "
                 f"{qual['ndcg_after']:.4f} ({'rose' if qual['rose'] else 'DID NOT RISE'}; HR@10 "
                 f"{qual['hr_after']:.4f}, {qual['eval_rows']} users, {qual['seconds']:.0f} s); pyarrow reader vs "
                 f"carried arrays: {qual['reader']}")
    lines.append(f"- result: {'PASS' if passed else 'FAIL'} in {seconds:.0f} s")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (CI): a run of the code, not a measurement")
    p.add_argument("--data", type=Path, default=CARRY, help=f"the carried quality set (default {CARRY})")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--prepare-from", type=Path, metavar="SHARDS",
                   help="write the quality set to --data from these exported shards, then exit")
    p.add_argument("--source", default="ml-latest-small", help="--prepare-from: the name the block gives the set")
    p.add_argument("--carried-size", type=Path, metavar="DIR",
                   help=f"print the size of the repository's files + DIR, exit 1 when over {CARRY_LIMIT_MIB} MiB")
    args = p.parse_args(argv)
    if args.device == "cuda" and not (args.prepare_from or args.carried_size) and not torch.cuda.is_available():
        p.error(f"--device cuda, but torch {torch.__version__} sees no CUDA device (use --device cpu)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.carried_size:
            return report_carried_size(args.carried_size)
        if args.prepare_from:
            return prepare(args.prepare_from, args.data, args.source)
        load_quality_set(args.data)  # a missing set fails now, not after the benchmarks
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    device = torch.device(args.device)
    sizes = TINY if args.tiny else FULL
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    try:
        info = versions(device)
        peak, peak_note = peak_tflops(info["device_name"]) if device.type == "cuda" else (989.0, "H100 dense bf16")
        rows, peer = throughput(device, sizes, peak)
        ddp = ddp_smoke(device)
        topn = topn_throughput(device, sizes)
        qual = quality(device, sizes, args.data)
    except RecsysError as error:  # e.g. $RECSYS_SHARD_READER names a reader that is not installed
        print(f"error: {error}", file=sys.stderr)
        return 2
    passed = (qual["rose"] and "error" not in ddp and ddp["all_reduce_ok"] and ddp["grads_equal"]
              and not qual["reader"].startswith("DIFFERENT"))
    seconds = time.perf_counter() - started
    print(block(info, rows, peer, ddp, topn, qual, sizes, peak_note, device, seconds, passed))
    if args.json:
        args.json.write_text(json.dumps({"versions": info, "throughput": rows, "peer": peer, "ddp": ddp,
                                         "topn": topn, "quality": qual, "passed": passed, "seconds": seconds},
                                        indent=2, default=str))
    return 0 if passed else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not through the interpreter's shutdown: with pyarrow read, it can abort (see _ddp_rank)
