"""`recsys <command> …`: dispatches to jobs/<command>.py, the same module `spark-submit jobs/<command>.py` runs.

Modules are imported lazily so that `recsys train` never imports Spark and `recsys etl` never imports torch.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

from jobs import catalogue

COMMANDS = {
    "generate": ("jobs.generate", "write MovieLens-25M-shaped CSVs"),
    "etl": ("jobs.etl", "raw MovieLens CSVs -> interactions, items, users, tags, rejects, splits (Delta)"),
    "als": ("jobs.fit_als", "fit Spark MLlib ALS on the train split"),
    "baselines": ("jobs.baselines", f"{catalogue.summary(catalogue.BASELINE)} (+ their top-N)"),
    "export-sequences": ("jobs.export_sequences", "per-user sequences -> Petastorm Parquet shards + meta.json"),
    "train": ("jobs.train", f"torchrun DDP training of {catalogue.summary(catalogue.TORCH)}"),
    "ensemble": ("jobs.ensemble", "blend of ensemble.models' lists, weights chosen on validation NDCG@10 (+ its top-N)"),
    "topn": ("jobs.topn", "top-K of one model for every user -> recommendations (Delta)"),
    "evaluate": ("jobs.evaluate", "one evaluator for every model -> metrics (Delta)"),
    "drift": ("jobs.drift", "input and output drift against the last published run -> drift (Delta), warnings"),
    "tune": ("jobs.tune", "Optuna study of one model's tune.<model> space on validation NDCG@10"),
    "retention": ("jobs.retention", "vacuum every Delta table, keeping retention.days and the published versions"),
    "publish": ("jobs.publish", "the regression gate per model, then one `runs` commit: the snapshot readers read"),
    "pipeline": ("jobs.pipeline", "the nightly run: every step above, skipping unchanged inputs"),
    "ship": ("jobs.ship", "the code Spark executors import, as dist/recsys-<version>.zip for spark-submit --py-files"),
    "serve": ("jobs.serve", "read-only API and web page over the warehouse (each model's latest top-N)"),
}


def version() -> str:
    """The installed distribution's version; in a checkout that is not installed, pyproject.toml's."""
    try:
        return importlib.metadata.version("recsys")
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


def usage() -> str:
    lines = ["usage: recsys <command> [flags] | recsys --version", "", "commands:"]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`recsys <command> --help` for a command's flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(f"recsys {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)


def run() -> None:
    """The `recsys` console script: main's exit code, without the interpreter's shutdown (jobs.common.exit_now)."""
    from jobs.common import exit_now

    exit_now(main())


if __name__ == "__main__":
    run()
