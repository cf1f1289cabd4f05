"""`recsys train --warehouse DIR --model MODEL [--nproc N] [--max-steps S] [--resume] [key=value ...]`: a
torch-family model of the catalogue (jobs/catalogue.py).

Outside torchrun this re-launches itself under `python -m torch.distributed.run` with the flags of jobs/torchrun.py:
`--standalone --nproc-per-node=N` on one node, the c10d rendezvous of `train.nnodes`/`train.rdzv_endpoint` on several
(every node runs the same command); under torchrun (or `torchrun jobs/train.py ...` by hand) each process trains one
rank.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/train.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import catalogue  # noqa: E402
from jobs.common import add_config_flags, guarded, local_warehouse, parse_run_date  # noqa: E402
from jobs.config import build_section, load_config  # noqa: E402
from jobs.torchrun import is_multi_node, launch_config, torchrun_args, torchrun_env  # noqa: E402
from jobs.tracking import export_env  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys train",
                                     description=f"DDP training of {catalogue.summary(catalogue.TORCH)}")
    parser.add_argument("--warehouse", required=True, help="warehouse folder (reads sequences/, writes models/)")
    parser.add_argument("--model", required=True, choices=catalogue.names(catalogue.TORCH))
    parser.add_argument("--nproc", type=int, default=None, help="processes on this node (default: train.nproc)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: train.max_steps)")
    parser.add_argument("--resume", action="store_true", help="continue from models/<model>/checkpoint.pt")
    parser.add_argument("--run-date", default=None,
                        help="several nodes: names the rendezvous recsys-<model>-<run date> unless train.rdzv_id "
                             "is set (default: today in UTC; give every node the same)")
    add_config_flags(parser)
    return parser


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def failure_line(stderr: str, returncode: int, log_path: Path) -> tuple[str, int]:
    """One line for a failed torchrun: a worker's own `error:` line, else its exception's last line."""
    lines = [re.sub(r"^\[(default)?\d+\]:", "", line).strip() for line in stderr.splitlines()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[0], 2
    exceptions = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*", line)
                  and "ChildFailedError" not in line]
    died = [m for m in (re.search(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)", line) for line in lines) if m]
    if exceptions:
        reason = exceptions[0]
    elif died:
        reason = f"local rank {died[0].group(2)} exited with code {died[0].group(1)}"
    else:
        reason = f"exit code {returncode}"
    return f"error: training worker failed: {reason} (full log: {log_path})", returncode or 1


def launch(argv: list[str], launcher_args: list[str], log_path: Path, env: dict[str, str]) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher_args, str(Path(__file__).resolve()), *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # written as the workers go (tail -f), kept if the launcher is killed
    with log_path.open("w") as log, subprocess.Popen(cmd, stderr=log, env={**os.environ, **env}) as agent:
        # A SIGTERM or SIGHUP sent to the launcher alone would leave the agent training on: pass it on, and the
        # agent stops its ranks. (SIGINT: as with subprocess.run, the agent is killed and its ranks go with it.)
        previous = {sig: signal.signal(sig, lambda signum, _: agent.send_signal(signum))
                    for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            returncode = agent.wait()
        except BaseException:
            agent.kill()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if returncode == 0:
        return 0
    line, code = failure_line(log_path.read_text(errors="replace"), returncode, log_path)
    print(line, file=sys.stderr)
    return code


@guarded
def main(argv: list[str] | None = None) -> int:
    parent = os.getppid()  # under torchrun the elastic agent: read before the slow imports below
    from recsys_torch.shards import read_meta, sequences_dir
    from recsys_torch.errors import RecsysError
    from recsys_torch.runtime import exit_with_launcher
    from recsys_torch.train import train

    if under_torchrun():
        exit_with_launcher(parent)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.nproc is not None:
        overrides.append(f"train.nproc={args.nproc}")
    cfg = load_config(catalogue.MODELS[args.model].sections, config_file=args.config, overrides=overrides,
                      env=args.env)
    tcfg = build_section(cfg, "train")
    build_section(cfg, args.model)  # its sizes come from the shards; the rest is checked here, not in every worker
    warehouse = local_warehouse(args.warehouse, "train")
    read_meta(sequences_dir(warehouse, tcfg.sequences))  # fail here, before starting any process

    if under_torchrun():
        summary = train(warehouse, args.model, cfg, resume=args.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{args.model}: best validation NDCG@10 {summary['best_ndcg@10']:.4f} at step "
                  f"{summary['best_step']} ({summary['steps']} steps, {summary['epochs']} epoch(s), batch "
                  f"{summary['batch_size']}, loss {summary['loss']}) -> {summary['output_dir']}")
        return 0
    # The workers get the resolved flags (not the raw argv: torchrun's own parser would take `--nproc` as an
    # ambiguous abbreviation of its --nproc-per-node).
    worker_argv = ["--warehouse", str(warehouse), "--model", args.model, "--env", args.env, *overrides]
    if args.config:
        worker_argv += ["--config", args.config]
    if args.resume:
        worker_argv.append("--resume")
    out_dir = Path(tcfg.output) if tcfg.output else warehouse / "models" / args.model
    train_section = cfg.get("train") or {}
    launcher_args = torchrun_args(train_section, model=args.model,
                                  run_date=parse_run_date(args.run_date) if args.run_date else None)
    log_name = "torchrun.log"
    if is_multi_node(launch_config(train_section)):  # the nodes may share the model folder: a log each
        log_name = f"torchrun-{socket.gethostname()}-{os.getpid()}.log"
    mlflow_env = {}
    if (cfg.get("mlflow") or {}).get("enabled", True):
        for name in ("mlflow", "alembic"):  # store set-up chatter would bury the one-line result
            logging.getLogger(name).setLevel(logging.WARNING)
        mlflow_env = export_env(cfg, warehouse)
    return launch(worker_argv, launcher_args, out_dir / log_name, {**torchrun_env(train_section), **mlflow_env})


if __name__ == "__main__":
    sys.exit(main())
