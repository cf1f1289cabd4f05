"""Training throughput of the sequence models at ML-25M scale: sequences/s, step time, peak memory and MFU.

    .venv/bin/python benchmarks/train_throughput.py                        # GPU: bf16 autocast, ML-25M shapes
    .venv/bin/python benchmarks/train_throughput.py --models sasrec@256,ss4rec@64,ss4rec@256 --compile --json out.json
    .venv/bin/python benchmarks/train_throughput.py --models sasrec@256 --set sasrec.n_layers=3 --loss bce \\
        --precision fp32                                                    # pmixer/SASRec.pytorch's setting
    .venv/bin/python benchmarks/train_throughput.py --device cpu --n-items 2000 --seq-len 50 --batch-size 8 \\
        --steps 2 --warmup 1                                                # CPU smoke check (float32)

Models are the registry's sequence models (recsys_torch.models whose class is a `models.base.SequenceModel`), each `name` or
`name@width`; the rest of a model's config is its dataclass's defaults, changed with `--set name.key=value`.

One step is what the trainer (recsys_torch/train.py) does per batch: `training_loss` under its `autocast`
(bf16 on CUDA, none on CPU), backward, gradient clipping at norm 1, AdamW (fused on CUDA) step, zero_grad.
After --warmup steps, each of --steps steps is timed on its own between torch.cuda.synchronize() calls; the
median is reported. Peak memory is torch.cuda.max_memory_allocated over the timed steps (optimizer state included).

Data loading is excluded: batches are synthetic (uniform random items, every position a real item with a
next-item target, timestamps increasing by random gaps of up to 30 days) and made on the device before timing.
This isolates the model's compute from the Petastorm reader, which is measured on its own and overlaps with the
GPU in training; with all positions real, every step does the full B x L work (real shards are left-padded).

Model FLOPs (counted analytically; a multiply-add is 2 FLOPs; training = 3 x forward: the backward pass of a
matmul computes both the input and the weight gradient). T = batch x seq_len tokens, d = hidden,
V = n_items + 1 rows of the tied output table, L = seq_len:

  SASRec, per layer:  6 * 12 d^2 * T           qkv (3 d^2) + proj (d^2) + FFN (8 d^2) weights
                    + 12 * L * d * T           attention scores QK^T and weighted sum AV: 2 * 2 L d forward per
                                               token; the kernel computes the full L x L block (a boolean mask,
                                               not is_causal), so this is not halved
  output layer:       6 * T * d * V            full-softmax logits over the catalogue; dominates (about 90% at
                                               d=256, V=59,048; 96% for SS4Rec at d=64)

  SS4Rec, per layer (E = expand * d inner width, N = state_size, P = time_state_size, R = ceil(d / 16),
  K = conv_kernel), 6 * T times:
      4 d P                 time-aware SSM: B (real, imag) and C (real, imag) projections, run in float32
    + 2 d E + E (R + 2N) + R E + E d     selective SSM: in_proj, x_proj, dt_proj, out_proj
    + K E + E N             depthwise causal conv and the C readout einsum (a batched matmul)
    + 8 d^2                 FFN
  output layer:       6 * T * d * V, as SASRec

MFU = model FLOPs per step / median step time / --peak-tflops (default 989 TFLOP/s, H100 SXM dense bf16; the
small float32 matmuls in SS4Rec's SSMs are counted against that same peak). Not in model FLOPs, printed apart:
  - recompute: when the [T, V] logits exceed losses.LOGITS_PER_CHUNK, full_softmax_cross_entropy runs them in
    chunks under activation checkpointing, so the backward pass redoes the forward logits matmul, 2 * T * d * V
    more hardware FLOPs; on CUDA the fused attention kernel's
    backward also recomputes the scores QK^T, 2 * L * d * T per layer (the CPU math path keeps them);
  - SS4Rec's scans (chunked_linear_scan) and discretisation are elementwise, memory-bound work: estimated at
    about 10 real ops per state element per token forward (step * A, exp, step * u * B, the recurrence's
    multiply-add, the chunk cumsum, exp and carry multiply-add), 40 for a complex state element, times 3 for
    training, over E * N real (selective) and P complex (time-aware) state elements per token per layer.
    Tiny next to the output layer, yet what sets SS4Rec's step time.

The analytic count (model + recompute) is cross-checked against torch.utils.flop_counter.FlopCounterMode on one
eager forward + backward: it counts matmuls, convolutions and attention (fused kernels or the math path's bmm),
nothing elementwise. Its convolution_backward formula ignores `groups`, so SS4Rec's depthwise conv backward comes
out `inner` times too big; the corrected figure counts that backward as 2 x the counter's conv forward instead.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from _measure import machine, peak_rss_gb, reset_peak_rss  # noqa: E402
from recsys_torch.losses import LOGITS_PER_CHUNK, NextItemLoss  # noqa: E402
from recsys_torch.models import MODELS, build_config, build_model, model_class  # noqa: E402
from recsys_torch.models.base import SequenceModel  # noqa: E402
from recsys_torch.runtime import autocast  # noqa: E402
from recsys_torch.trainer import LossModule, param_groups  # noqa: E402

MODEL_NAMES = tuple(name for name in MODELS if issubclass(model_class(name), SequenceModel))
SECONDS_PER_DAY = 86_400


@dataclass
class StepFlops:
    """FLOPs of one training step (forward + backward)."""
    encoder: float      # matmuls (and SS4Rec's conv) inside the encoder, attention included
    output: float       # full-softmax output layer
    recompute: float    # the output layer's forward again, under activation checkpointing (hardware, not model)
    elementwise: float  # SS4Rec's scans, an estimate; 0 for SASRec

    @property
    def model(self) -> float:
        return self.encoder + self.output


def step_flops(name: str, cfg, batch: int, length: int, fused_attention: bool) -> StepFlops:
    """The model's analytic encoder FLOPs (its `encoder_flops`) and the full-softmax output layer's; a model without
    an estimate: NaN (no MFU)."""
    estimate = getattr(model_class(name), "encoder_flops", None)
    if estimate is None:
        return StepFlops(math.nan, math.nan, math.nan, 0.0)
    tokens, d, vocab = batch * length, cfg.hidden, cfg.n_items + 1
    encoder, recompute, elementwise = estimate(cfg, tokens, length, fused_attention)
    return StepFlops(encoder=encoder, output=6 * tokens * d * vocab,
                     recompute=output_recompute(tokens, d, vocab) + recompute, elementwise=elementwise)


def output_recompute(tokens: int, d: int, vocab: int) -> float:
    """The full softmax recomputes its logits in backward only when they are too big to keep (losses.py)."""
    return 2 * tokens * d * vocab if tokens * vocab > LOGITS_PER_CHUNK else 0.0


def model_spec(entry: str, args) -> tuple[str, dict]:
    """(registry name, config dict) of a --models entry `name` or `name@width`, with its --set overrides."""
    name, _, width = entry.partition("@")
    cfg = {"n_items": args.n_items, "max_len": args.seq_len, **args.overrides.get(name, {})}
    if width:
        cfg["hidden"] = int(width)
    return name, cfg


def synthetic_batches(n: int, batch: int, length: int, n_items: int, device: torch.device) -> list[dict]:
    """n batches of items, timestamps, targets [B, L], every position a real item (see the docstring)."""
    batches = []
    for _ in range(n):
        sequence = torch.randint(1, n_items + 1, (batch, length + 1), device=device)
        gaps = torch.randint(0, 30 * SECONDS_PER_DAY, (batch, length), device=device)
        timestamps = 1_000_000_000 + gaps.cumsum(dim=1)
        batches.append({"items": sequence[:, :-1], "timestamps": timestamps, "targets": sequence[:, 1:]})
    return batches


def zipf_counts(n_items: int) -> torch.Tensor:
    """A long-tailed popularity (the sampled softmax's proposal), like MovieLens' ratings per movie."""
    return (1e6 / torch.arange(1, n_items + 2, dtype=torch.float64)).round().clamp(min=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model: nn.Module, batch: dict, device: torch.device, amp: bool) -> tuple[float, float]:
    """(total, corrected) FLOPs of one eager forward + backward as FlopCounterMode sees them; corrected counts
    convolution_backward as 2 x convolution forward (the counter ignores groups, see the docstring)."""
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(device, amp):
            loss = model(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    by_op = {str(op): float(n) for op, n in counter.get_flop_counts()["Global"].items()}
    total = sum(by_op.values())
    conv_forward = sum(n for op, n in by_op.items() if "convolution" in op and "backward" not in op)
    return total, total - by_op.get("aten.convolution_backward", 0.0) + 2 * conv_forward


def benchmark(entry: str, args, device: torch.device) -> dict:
    registry_name, cfg_dict = model_spec(entry, args)
    cfg = build_config(registry_name, cfg_dict)
    torch.manual_seed(0)
    model = build_model(registry_name, cfg_dict, device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    is_cuda = device.type == "cuda"
    amp = is_cuda and args.precision == "bf16"
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, betas=(0.9, 0.98),
                                  fused=True if is_cuda else None)
    loss_module = LossModule(model, NextItemLoss(args.loss, args.n_items, args.negatives,
                                                 zipf_counts(args.n_items)).to(device))
    loss_fn = torch.compile(loss_module) if args.compile else loss_module
    batches = synthetic_batches(4, args.batch_size, args.seq_len, args.n_items, device)

    def step(batch: dict) -> None:
        with autocast(device, amp):
            loss = loss_fn(batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rss_reset = reset_peak_rss()
    for i in range(args.warmup):
        step(batches[i % len(batches)])
    sync(device)
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step_seconds = []
    for i in range(args.steps):
        sync(device)
        start = time.perf_counter()
        step(batches[i % len(batches)])
        sync(device)
        step_seconds.append(time.perf_counter() - start)
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if is_cuda else None
    process_peak_gb = peak_rss_gb() if rss_reset else None  # the whole process: what one rank would hold

    flops = step_flops(registry_name, cfg, args.batch_size, args.seq_len, fused_attention=is_cuda)
    counted, counted_corrected = count_flops(loss_module, batches[0], device, amp)
    median = statistics.median(step_seconds)
    result = {
        "model": registry_name, "config": asdict(cfg), "params": n_params, "precision": "bf16" if amp else "fp32",
        "step_ms_median": median * 1e3, "step_ms_min": min(step_seconds) * 1e3,
        "sequences_per_s": args.batch_size / median, "tokens_per_s": args.batch_size * args.seq_len / median,
        "peak_memory_gib": peak_gib, "process_peak_rss_gb": process_peak_gb,
        "flops": {**asdict(flops), "model": flops.model, "analytic_hardware": flops.model + flops.recompute,
                  "flop_counter": counted, "flop_counter_corrected": counted_corrected},
        "model_tflops_per_s": flops.model / median / 1e12,
        "mfu": flops.model / median / (args.peak_tflops * 1e12),
    }
    del model, optimizer, batches
    if is_cuda:
        torch.cuda.empty_cache()
    return result


def report(r: dict) -> None:
    f = r["flops"]
    memory = f"{r['peak_memory_gib']:.2f} GiB on the GPU" if r["peak_memory_gib"] is not None else "n/a (cpu)"
    if r["process_peak_rss_gb"] is not None:
        memory += f", process peak RSS {r['process_peak_rss_gb']:.2f} GB"
    cfg = r["config"]
    print(f"{r['model']}: hidden {cfg['hidden']}, layers {cfg['n_layers']}, {r['precision']}, "
          f"params {r['params'] / 1e6:.2f}M")
    print(f"  step {r['step_ms_median']:.2f} ms median ({r['step_ms_min']:.2f} min) | "
          f"{r['sequences_per_s']:,.0f} seq/s | {r['tokens_per_s']:,.0f} tok/s | peak memory {memory}")
    print(f"  model FLOPs/step {f['model'] / 1e9:,.2f} G (encoder {f['encoder'] / 1e9:,.2f} + output layer "
          f"{f['output'] / 1e9:,.2f}) | {r['model_tflops_per_s']:.2f} TFLOP/s | MFU {100 * r['mfu']:.2f}%")
    counter = f"FlopCounterMode {f['flop_counter'] / 1e9:,.2f} G"
    if f["flop_counter_corrected"] != f["flop_counter"]:
        counter += f", {f['flop_counter_corrected'] / 1e9:,.2f} G with depthwise conv backward corrected"
    ratio = f["flop_counter_corrected"] / f["analytic_hardware"]
    print(f"  cross-check: analytic model + recompute {f['analytic_hardware'] / 1e9:,.2f} G "
          f"(recompute {f['recompute'] / 1e9:,.2f}) vs {counter} (ratio {ratio:.3f})")
    if f["elementwise"]:
        print(f"  scan elementwise (estimate, not in MFU): {f['elementwise'] / 1e9:,.2f} G")


def environment(device: torch.device, args) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
           "precision": "bf16 autocast" if device.type == "cuda" and args.precision == "bf16" else "float32",
           "peak_tflops_assumed": args.peak_tflops, "compile": args.compile}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["machine"] = machine()
    return env


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="sasrec@256,ss4rec@64",
                   help=f"comma-separated name or name@width, names of the registry: {', '.join(MODEL_NAMES)}")
    p.add_argument("--set", action="append", default=[], metavar="NAME.KEY=VALUE", dest="settings",
                   help="a model config value, e.g. sasrec.n_heads=4 (repeatable)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--n-items", type=int, default=59_047, help="catalogue size (ML-25M rated movies)")
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator, autotune)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="CUDA: bf16 autocast (what training uses) or plain float32; the CPU always runs float32")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="peak for MFU, TFLOP/s (default: H100 SXM dense bf16)")
    p.add_argument("--loss", choices=("ce", "sampled_ce", "bce"), default="ce",
                   help="training loss (default: full-softmax ce, what `train.loss: auto` picks on a GPU)")
    p.add_argument("--negatives", type=int, default=1024, help="sampled_ce: negatives shared by the batch")
    p.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted({m.partition("@")[0] for m in args.models} - set(MODEL_NAMES))
    if unknown or not args.models:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)} (optionally name@width)")
    bad_widths = [m for m in args.models if "@" in m and not m.partition("@")[2].isdigit()]
    if bad_widths:
        p.error(f"bad width in {bad_widths}: name@width takes a positive integer, e.g. sasrec@256")
    args.overrides = parse_settings(args.settings, p)
    for flag in ("n_items", "seq_len", "batch_size", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.peak_tflops <= 0:
        p.error("--warmup must be >= 0 and --peak-tflops > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device (torch " + torch.__version__ + ")")
    return args


def step_time_ratio(results: dict) -> float | None:
    """The first SS4Rec entry's median step time over the first SASRec entry's (the issue's goal: within 2x)."""
    first = {}
    for r in results.values():
        first.setdefault(r["model"], r["step_ms_median"])
    return first["ss4rec"] / first["sasrec"] if "sasrec" in first and "ss4rec" in first else None


def parse_settings(settings: list[str], parser: argparse.ArgumentParser) -> dict[str, dict]:
    """--set name.key=value pairs as {name: {key: value}}, values read as int, float, true/false or text."""
    overrides: dict[str, dict] = {}
    for item in settings:
        target, sep, raw = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not key:
            parser.error(f"--set {item!r}: expected NAME.KEY=VALUE, e.g. sasrec.n_heads=4")
        if name not in MODEL_NAMES:
            parser.error(f"--set {item!r}: unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
        overrides.setdefault(name, {})[key] = parse_value(raw)
    return overrides


def parse_value(raw: str):
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    env = environment(device, args)
    print(f"torch {env['torch']}, CUDA {env['cuda']}, device {env.get('gpu', env.get('machine'))}")
    print(f"{env['precision']}, batch {args.batch_size} x seq_len {args.seq_len}, n_items {args.n_items:,}, "
          f"{args.warmup} warm-up + {args.steps} timed steps, compile {args.compile}, synthetic batches "
          f"(no data loading)")
    print(f"MFU assumes a peak of {args.peak_tflops:g} TFLOP/s (default: H100 SXM dense bf16)")

    results = {}
    for entry in args.models:
        try:
            results[entry] = benchmark(entry, args, device)
        except ValueError as error:  # a bad model config (e.g. hidden not divisible by heads, an unknown key)
            print(f"error: {entry}: {error}", file=sys.stderr)
            return 2
        report(results[entry])

    ratio = step_time_ratio(results)
    if ratio is not None:
        print(f"SS4Rec / SASRec step time: {ratio:.2f}x (goal: within 2x: {'met' if ratio <= 2 else 'NOT met'})")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"environment": env, "settings": settings, "results": results,
                                         "ss4rec_over_sasrec_step_time": ratio}, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
