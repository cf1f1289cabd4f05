"""`recsys serve --warehouse DIR|s3://BUCKET/PREFIX [--host 127.0.0.1] [--port 8000]`: the read-only API and web page (recsys_serve).

Loads each model's latest lists, the users' recent history and the catalogue from the warehouse's Delta tables,
then answers until stopped; a new run date committed by the nightly job is picked up without a restart (the
tables' Delta versions are checked every --reload-interval seconds). Imports neither Spark nor torch, until a
real-time request for a sequence model (POST /recommendations) loads its checkpoint (recsys_torch.realtime).

Only requests naming this server in their Host header are answered: loopback names by default (localhost,
127.0.0.1, ::1); bound to another address, pass the names clients use with --allowed-hosts.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import guarded  # noqa: E402
from recsys_serve.errors import ServeError  # noqa: E402


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineErrors(prog="recsys serve", description="Serve the warehouse's recommendations: API and web page.")
    p.add_argument("--warehouse", required=True, help="the warehouse the nightly run writes: a directory, file:///… or s3://bucket/prefix "
                        "(S3 settings from the AWS_* environment variables, docs/SERVING.md)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--reports", default="reports", help="where the pipeline wrote reports/<run_date>/ (plots)")
    p.add_argument("--reload-interval", type=float, default=10.0,
                   help="seconds between checks of the tables' Delta versions (0: never reload)")
    p.add_argument("--history", type=int, default=10, help="last rated movies shown per user (default 10)")
    p.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                   help="comma-separated Host header values to answer, e.g. recsys.internal,10.0.0.5 or "
                        "'*.example.com' ('*': any). Default: the loopback names, plus --host when it is one address")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads per real-time request of a sequence model (default 1: concurrent requests "
                        "run side by side instead of sharing the cores' threads)")
    p.add_argument("--checkpoint-interval", type=float, default=1.0,
                   help="seconds between looks at a sequence model's checkpoint file for a swap (default 1)")
    return p


def allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The Host header values the server answers: --allowed-hosts, or the loopback names and the bound address."""
    from recsys_serve.api import LOOPBACK_HOSTS

    if args.allowed_hosts is not None:
        hosts = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
        if not hosts:
            raise ServeError("--allowed-hosts names no host (use '*' to answer any Host header)")
        for host in hosts:
            if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ServeError(f"--allowed-hosts: {host!r} is not a host name, an address, '*.domain' or '*'")
        return hosts
    hosts = list(LOOPBACK_HOSTS)
    if args.host not in ("0.0.0.0", "::", "") and args.host not in hosts:
        hosts.append(args.host)
    return hosts


@guarded
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ServeError(f"--port must be 0..65535, got {args.port}")
    if args.reload_interval < 0 or args.history < 0 or args.checkpoint_interval < 0:
        raise ServeError("--reload-interval, --history and --checkpoint-interval must not be negative")
    if args.torch_threads < 1:
        raise ServeError(f"--torch-threads must be >= 1, got {args.torch_threads}")
    # One BLAS thread per request, as one torch thread: concurrent requests run side by side. Left to itself, numpy
    # 2's OpenBLAS spreads each similar-items product over every core, and under load their threads contend
    # (p99 5 ms -> 64 ms at 5M ratings, docs/BENCHMARKS.md). Set before numpy loads (recsys_serve imports it); an
    # explicit setting wins.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    hosts = allowed_hosts(args)
    from recsys_serve.reader import Warehouse
    from recsys_serve.store import SERVED_TABLES

    warehouse = Warehouse(args.warehouse)  # a missing directory or table is one line here, not a server traceback
    try:
        warehouse.require(*SERVED_TABLES)
    finally:
        warehouse.close()
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: binding {args.host}, not loopback: anyone who can reach it can read the warehouse's lists "
              f"(Host headers answered: {', '.join(hosts)}; --allowed-hosts changes them)", file=sys.stderr)

    import uvicorn

    from recsys_serve.api import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(args.warehouse, reload_interval=args.reload_interval, reports=args.reports,
                     history_len=args.history, allowed_hosts=hosts,
                     checkpoint_interval=args.checkpoint_interval, torch_threads=args.torch_threads)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
