"""Quality benchmark: what each model scores on real data, with intervals, under the default (full) recipe.

    .venv/bin/python benchmarks/quality.py ../shared/data/ml-latest-small
    .venv/bin/python benchmarks/quality.py DATA_DIR --tie-breaks movieId,hash --models sasrec,ss4rec,ncf
    .venv/bin/python benchmarks/quality.py DATA_DIR --json quality.json -- train.max_steps=3000   # extra overrides

For each tie-break: `recsys etl` -> `recsys baselines` (every baseline of the catalogue) ->
`recsys export-sequences` -> for each torch model `recsys train` + `recsys topn` -> `recsys evaluate`, each the
same command a user runs, in a fresh warehouse under --work. Then one table per tie-break: HR@10 and NDCG@10 with
their 95% bootstrap intervals over users, each model's paired NDCG@10 difference to AR(2) (and whether its
interval excludes zero), training steps and seconds per optimizer step, and wall time of the model's own commands
(the baselines are fitted by one command together; that time is shown on each of their rows).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine, recsys  # noqa: E402

from recsys_core import catalogue  # noqa: E402

RUN_DATE = "2026-01-01"
BASELINES = tuple(catalogue.names(catalogue.BASELINE))  # what `recsys baselines` fits (baselines.models: all)
VERSUS = f"ndcg_minus_{catalogue.REFERENCE_MODEL}"  # the evaluator's paired difference to evaluate.reference_model


def run_one(data: Path, work: Path, tie_break: str, models: list[str], overrides: list[str],
            config: Path | None = None) -> dict:
    warehouse = work / f"warehouse-{tie_break}"
    log = work / f"quality-{tie_break}.log"
    log.write_text("")
    common = ["--warehouse", str(warehouse), *(["--config", str(config)] if config else [])]
    seconds: dict[str, float] = {}
    recsys("etl", "--data", str(data), *common, f"etl.tie_break={tie_break}", log=log)
    seconds["baselines"] = recsys("baselines", *common, "--run-date", RUN_DATE, log=log)
    if models:
        recsys("export-sequences", *common, log=log)
    for model in models:
        seconds[model] = recsys("train", *common, "--model", model, "mlflow.experiment=quality", *overrides, log=log)
        seconds[model] += recsys("topn", *common, "--model", model, "--run-date", RUN_DATE, *overrides, log=log)
    recsys("evaluate", *common, "--run-date", RUN_DATE, log=log)

    from recsys_spark.evaluate import read_metrics

    metrics = [r for r in read_metrics(warehouse).to_pylist() if r["k"] == 10 and r["split"] == "test"]
    rows = {}
    for model in [*BASELINES, *models]:
        found = {r["metric"]: r for r in metrics if r["model"] == model}
        if "ndcg" not in found:
            continue
        history_path = warehouse / "models" / model / "history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        rows[model] = {
            **{m: {"value": found[m]["value"], "ci": [found[m]["ci_low"], found[m]["ci_high"]]}
               for m in ("hr", "ndcg")},
            "ndcg_minus_reference": ({"value": found[VERSUS]["value"],
                                      "ci": [found[VERSUS]["ci_low"], found[VERSUS]["ci_high"]]}
                                     if VERSUS in found else None),
            "steps": history[-1]["step"] if history else None,
            "seconds_per_step": (sum(h["seconds"] for h in history) / history[-1]["step"]) if history else None,
            "wall_seconds": seconds["baselines" if model in BASELINES else model],
        }
    return rows


def show(tie_break: str, rows: dict) -> None:
    print(f"\ntie-break {tie_break} (test split, full ranking, 95% bootstrap intervals over users)")
    print(f"{'model':<12} {'HR@10':>24} {'NDCG@10':>24} {'NDCG@10 - ' + catalogue.REFERENCE_MODEL:>28} {'steps':>6} {'s/step':>7} "
          f"{'wall s':>7}")
    order = sorted(rows, key=lambda m: -rows[m]["ndcg"]["value"])
    for model in order:
        r = rows[model]
        cell = lambda m: f"{r[m]['value']:.4f} [{r[m]['ci'][0]:.4f}, {r[m]['ci'][1]:.4f}]"  # noqa: E731
        diff = r["ndcg_minus_reference"]
        if diff is None:
            versus = "(reference)" if model == catalogue.REFERENCE_MODEL else ""
        else:
            noise = "" if diff["ci"][0] > 0 or diff["ci"][1] < 0 else " ~"
            versus = f"{diff['value']:+.4f} [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]{noise}"
        steps = "" if r["steps"] is None else str(r["steps"])
        per_step = "" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.3f}"
        print(f"{model:<12} {cell('hr'):>24} {cell('ndcg'):>24} {versus:>28} {steps:>6} {per_step:>7} "
              f"{r['wall_seconds']:>7.0f}")
    print("~: the interval of the difference contains zero (within the noise)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="MovieLens folder (ratings.csv, movies.csv, ...)")
    p.add_argument("--tie-breaks", default="movieId,hash", help="comma-separated etl.tie_break values")
    p.add_argument("--models", default="sasrec,ss4rec,ncf", help="torch models of the catalogue, comma-separated")
    p.add_argument("--work", type=Path, default=REPO / ".bench" / "quality", help="warehouses and logs")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--config", type=Path, help="a config layer file every command reads (recsys <command> --config)")
    p.add_argument("overrides", nargs="*", help="key=value for train/topn (after --), e.g. train.max_steps=3000")
    args = p.parse_intermixed_args(argv)
    if not (args.data / "ratings.csv").is_file():
        p.error(f"{args.data / 'ratings.csv'} not found")
    tie_breaks = [t.strip() for t in args.tie_breaks.split(",") if t.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in catalogue.names(catalogue.TORCH)]
    if unknown:
        p.error(f"--models: {', '.join(unknown)} not a torch model of the catalogue "
                f"({catalogue.summary(catalogue.TORCH)})")
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}\ndata {args.data}; models {', '.join(models)}; overrides {args.overrides or 'none'}")
    results = {}
    for tie_break in tie_breaks:
        results[tie_break] = run_one(args.data.resolve(), args.work.resolve(), tie_break, models, args.overrides,
                                     args.config.resolve() if args.config else None)
        show(tie_break, results[tie_break])
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "data": str(args.data), "overrides": args.overrides,
                                         "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
