"""`recsys tune --warehouse DIR --model NAME --trials N [--timeout S] [--seed 0] [--out FILE] [key=value ...]`:
an Optuna study (TPE, seeded; SQLite in <warehouse>/_tune, so a killed study resumes) over the search space
declared as `tune.<model>` beside the model's config; objective: validation NDCG@10 from the one evaluator. Writes
the best values as a config layer file for `recsys pipeline --config` (jobs/tuning_study.py says how)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # `python jobs/tune.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import catalogue  # noqa: E402
from jobs.common import add_config_flags, guarded, require_tables, resolve_config  # noqa: E402
from jobs.config import ConfigError, build_section, run_layer  # noqa: E402


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys tune", description=__doc__)
    parser.add_argument("--warehouse", required=True, help="warehouse with the ETL tables (and sequences/ for torch)")
    parser.add_argument("--model", required=True, help="a catalogue model with a tune.<model> search space")
    parser.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting trials after S seconds")
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed")
    parser.add_argument("--out", help="best-values layer file (default <warehouse>/_tune/<model>/best.yaml)")
    add_config_flags(parser)
    args = parser.parse_intermixed_args(argv)
    from jobs.tuning_study import search_space, tunable, tune

    model = tunable(args.model)
    if args.trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    cfg = resolve_config(args, *model.sections, "evaluate")
    for name in (*model.sections, "evaluate"):  # as the trials will build them, before Spark starts
        build_section(cfg, name)
    search_space(cfg, model.name)  # a bad space fails before Spark starts too
    needs = ["interactions", "items", "users"]
    require_tables(args.warehouse, *needs)
    if model.family is catalogue.TORCH and not (Path(args.warehouse) / "sequences").is_dir():
        raise ConfigError(f"{args.warehouse}/sequences not found: run `recsys export-sequences` first")
    result = tune(args.warehouse, model.name, args.trials, args.timeout, cfg, run_layer(args.config, args.overrides),
                  args.env, args.seed, args.out)
    print(f"{model.name}: {result.complete} complete, {result.pruned} pruned, {result.failed} failed trials; best "
          f"validation NDCG@10 {result.best_value:.4f} with {result.best_params}")
    print(f"best values -> {result.best_file} (recsys pipeline --config {result.best_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
