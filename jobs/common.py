"""What every entry point shares: one-line errors instead of stack traces, and config flags."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from jobs.config import build_section, config_class, load_config, qualify
from recsys_core.config import POSITIVE, check_value
from recsys_core.errors import ConfigError, RecsysError


def guarded(main: Callable[..., int]) -> Callable[..., int]:
    """Run `main`; an error the user can act on (it carries `exit_code`) prints one line instead of a stack trace."""

    def run(argv: Sequence[str] | None = None, **kwargs) -> int:
        try:
            return main(argv, **kwargs) or 0
        except Exception as exc:  # noqa: BLE001 - user errors carry exit_code (RecsysError, recsys_data's, the server's)
            code = getattr(exc, "exit_code", None)
            if code is None:
                raise
            print(f"error: {exc}", file=sys.stderr)
            return code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    run.__name__ = getattr(main, "__name__", "main")
    run.__doc__ = main.__doc__
    return run


def exit_now(code: int) -> None:
    """End the process with `code`, its output flushed, without the interpreter's shutdown: a delta-rs / Arrow
    thread still alive then can abort it ("terminate called without an active exception", exit -6;
    apache/arrow#34314, delta-rs#2184) and turn a finished job into a failed one. For a process's entry point only."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="extra YAML config file, merged over conf/")
    parser.add_argument("--env", default="local", help="environment config: conf/<env>.yaml (default: local)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. als.rank=20")


def add_list_flags(parser: argparse.ArgumentParser,
                   run_date_help: str = "YYYY-MM-DD partition to (re)write (default: today); a re-run replaces it") -> None:
    """--k and --run-date of a command that writes top-k lists (check --k with `list_length`)."""
    parser.add_argument("--k", type=int, default=100, help="items per user (default 100)")
    parser.add_argument("--run-date", help=run_date_help)


def list_length(args: argparse.Namespace) -> int:
    return check_value("--k", args.k, POSITIVE)


def resolve_config(args: argparse.Namespace, *sections: str) -> dict:
    return load_config(sections, config_file=args.config, overrides=args.overrides, env=args.env)


def job_config(args: argparse.Namespace, name: str, *extra_sections: str) -> tuple[dict, Any]:
    """The resolved config (sections `name` and `extra_sections`), section `name` built as its class (every section
    is checked, the extra ones too, before the command does anything).

    On a command's own line a bare key of its config (`rank=20`) means `<name>.rank=20`.
    """
    args.overrides = qualify(args.overrides, name, config_class(name))
    cfg = resolve_config(args, name, *extra_sections)
    for extra in extra_sections:
        build_section(cfg, extra)
    return cfg, build_section(cfg, name)


def local_warehouse(location: str, command: str) -> Path:
    """The warehouse folder of a command that writes plain files beside the tables (checkpoints, vacuum): a path or
    `file:///…`; one line (exit 2) for a remote location or a folder that does not exist."""
    from recsys_core import storage

    if not storage.is_local(location):
        raise RecsysError(f"recsys {command} needs the warehouse on a filesystem this machine mounts (a path or "
                          f"file:///…), got {location}")
    warehouse = Path(storage.local_path(location))
    if not warehouse.is_dir():
        raise RecsysError(f"warehouse not found: {warehouse}")
    return warehouse


def require_tables(warehouse: str, *names: str) -> None:
    """Refuse to start (one line, exit 2) when an input table is missing, before Spark or MLflow create anything."""
    from recsys_spark.delta import table_exists, table_path

    for name in names:
        if not table_exists(table_path(warehouse, name)):
            raise RecsysError(f"Delta table not found: {table_path(warehouse, name)} (run the step that writes it "
                              f"first: `recsys etl` for the ETL tables)")


def parse_run_date(value: str | None) -> dt.date:
    """--run-date: YYYY-MM-DD, today when not given."""
    try:
        return dt.date.fromisoformat(value) if value else dt.date.today()
    except ValueError:
        raise ConfigError(f"--run-date {value!r} is not a date of the form YYYY-MM-DD") from None


def comparison_view(table, title: str):
    """recsys_spark.report.comparison_table (or intervals_table) as a rich Table for the console."""
    from rich.table import Table

    view = Table(title=title)
    view.add_column("model")
    for column in table.columns:
        view.add_column(column, justify="right")
    for model, row in table.iterrows():
        view.add_row(model, *[value if isinstance(value, str) else "" if value != value else f"{value:.4f}"
                              for value in row])
    return view
