"""Public benchmarks: the nightly's default recipe on a data set of the sequential-recommendation literature, every
model's test figures beside the published ones.

    .venv/bin/python benchmarks/public.py --data ../shared/data/s3rec/Toys_and_Games.txt
    .venv/bin/python benchmarks/public.py --data ../shared/data/s3rec/Sports_and_Outdoors.txt --work /scratch/sports
    .venv/bin/python benchmarks/public.py --data ../shared/data/sasrec/Video.txt train.device=cuda   # + sampled
    .venv/bin/python benchmarks/public.py --warehouse /work/runs/toys/wh --name toys   # a finished run, read only

Without --warehouse it runs `recsys pipeline --data PATH --warehouse WORK/wh --reports WORK/reports --run-date D`
and the key=value overrides given (as a subprocess, its output in WORK/pipeline.log); the same command again resumes
(the pipeline skips the steps it finished; D defaults to the one run date already under WORK/wh/_pipeline). With
--warehouse it runs nothing and reads that warehouse (nothing is written there).

From the warehouse, for the run date: every evaluated model's test-split HR@10 and NDCG@10 with their 95% intervals,
as the evaluator wrote them to `metrics` (full ranking over all items, each user's earlier items excluded, last item
test, the one before validation; bootstrap over the test users); and each model's paired NDCG@10 difference to the
best count model (markov, ar2, itemcf, ease; the best by validation NDCG@10 of `recommendations_validation`): the
evaluator's own per-user ranks (recsys_spark.evaluate.per_user_ranks) and paired bootstrap (recsys_spark.intervals)
with the run's evaluate seed and resamples, so the resamples are the very draws behind the metrics' intervals (the
script checks that its recomputed means and intervals equal the table's). --sampled N adds the literature's sampled
protocol for the torch models (the test item against N items the user never interacted with, drawn uniformly,
scored by the trained model: recsys_torch.infer.sampled_ranks); the default is 100 where the published figures are
sampled (Video), else none. Full ranking stays the headline. Beside them: the published figures and their source,
the input and its provenance, and the seconds of every step from <warehouse>/_pipeline/<D>/run.jsonl.

Prints a table and writes benchmarks/results/public-<name>.json (or --out).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import machine, run_recsys  # noqa: E402

from recsys_core import catalogue  # noqa: E402

COUNT_MODELS = tuple(catalogue.count_models())  # AR(1), AR(2), item-item cosine, EASE: counts of the train data
K = 10
FULL = ("full ranking over all items, each user's earlier items (train and validation) excluded; last item test, "
        "the one before validation, the rest train")
PUBLISHED_FULL = "full ranking over all items, the user's earlier items excluded, last item test"
SAMPLED = "the test item against {n} items drawn uniformly from those the user never interacted with"
PUBLISHED = {  # name -> the published test figures on exactly that file (see ../shared/data/*/README.md)
    "toys": {"file": "Toys_and_Games.txt", "hr@10": 0.0834, "ndcg@10": 0.0480, "protocol": PUBLISHED_FULL,
             "sampled": False, "source": "ICLRec (Chen et al., WWW 2022), its repository README (salesforce/ICLRec), "
                                          "its trained model; S3-Rec's 5-core file"},
    "sports": {"file": "Sports_and_Outdoors.txt", "hr@10": 0.0437, "ndcg@10": 0.0238, "protocol": PUBLISHED_FULL,
               "sampled": False, "source": "ICLRec (Chen et al., WWW 2022), its repository README (salesforce/ICLRec), "
                                            "its trained model; S3-Rec's 5-core file"},
    "video": {"file": "Video.txt", "hr@10": 0.7410, "ndcg@10": 0.5360, "sampled": True,
              "protocol": SAMPLED.format(n=100) + " (not full ranking)",
              "source": "SASRec (Kang & McAuley, ICDM 2018), Table III, Amazon Video Games (\"Games\"), SASRec's row"},
}


def dataset_name(data: str | None) -> str:
    """The published set a data file is (by its file name), else the file's stem in lower case."""
    if not data:
        return "dataset"
    name = Path(data).name
    return next((key for key, p in PUBLISHED.items() if p["file"] == name), Path(data).stem.lower())


def pipeline_command(data: Path, work: Path, run_date: str, overrides: list[str]) -> list[str]:
    """The `recsys` arguments of the run: the nightly's defaults, WORK/wh and WORK/reports."""
    return ["pipeline", "--data", str(data), "--warehouse", str(work / "wh"), "--reports", str(work / "reports"),
            "--run-date", run_date, *overrides]


def default_run_date(warehouse: Path) -> str:
    """The one run date already under <warehouse>/_pipeline (so that a second invocation resumes it), else today."""
    dates = sorted(p.name for p in (warehouse / "_pipeline").glob("*") if (p / "run.jsonl").is_file())
    if len(dates) > 1:
        raise SystemExit(f"error: {warehouse}/_pipeline holds runs of {', '.join(dates)}: name one with --run-date")
    return dates[0] if dates else dt.date.today().isoformat()


def step_seconds(warehouse: Path, run_date: str) -> dict[str, dict]:
    """step -> {"status", "seconds"} from <warehouse>/_pipeline/<run_date>/run.jsonl: the last time each step ran (a
    resumed night skips what an earlier invocation finished), else its last line; "last_status" where the step's
    latest line says something else (skipped, failed, not run)."""
    path = warehouse / "_pipeline" / run_date / "run.jsonl"
    if not path.is_file():
        return {}
    steps: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        step = steps.setdefault(entry["step"], {})
        if entry["status"] == "ran" or step.get("status") != "ran":
            step.update(status=entry["status"], seconds=entry["seconds"])
        step.pop("last_status", None)
        if entry["status"] != step["status"]:
            step["last_status"] = entry["status"]
    return steps


def run_config(warehouse: Path, run_date: str) -> dict:
    """The config the run's steps resolved: conf/ (evaluate, local env) plus the run's own layer (config.yaml)."""
    from jobs.config import load_config

    layer = warehouse / "_pipeline" / run_date / "config.yaml"
    return load_config(["evaluate"], config_file=layer if layer.is_file() else None)


def etl_tables(warehouse: Path) -> dict:
    """The rows of each table the ETL wrote (interactions, users, items, rejects, ...), from etl_report.json."""
    path = warehouse / "etl_report.json"
    return (json.loads(path.read_text()).get("tables") or {}) if path.is_file() else {}


def _interval(found: dict) -> list[float | None]:
    return [found["ci_low"], found["ci_high"]]


def report(warehouse: Path, run_date: str | None, sampled: int, device: str) -> dict:
    """The figures of one finished run (read only)."""
    import numpy as np
    from pyspark.sql import functions as F

    from jobs.config import section
    from recsys_spark.delta import read_table, table_path
    from recsys_spark.evaluate import EvaluateConfig
    from recsys_spark.intervals import PER_USER, intervals
    from recsys_spark.session import get_spark

    run_date, found, models, provenance = metrics_of_run(warehouse, run_date)
    cfg = run_config(warehouse, run_date)
    config = EvaluateConfig.from_dict(section(cfg, "evaluate"))
    spark = get_spark("recsys-public", conf=section(cfg, "spark"))
    interactions = read_table(spark, table_path(warehouse, "interactions"), provenance["interactions_version"])
    n_items = (read_table(spark, table_path(warehouse, "items")).where(F.col("item_idx").isNotNull()).count())

    def ranks_of(split: str, names) -> dict:
        return list_ranks(spark, warehouse, interactions, split, names, run_date, max(config.ks))

    test_ranks = ranks_of("test", models)
    test_users = np.array(sorted(r.userId for r in interactions.where(F.col("split") == "test")
                                 .select("userId").distinct().collect()), dtype=np.int64)
    counts = [m for m in COUNT_MODELS if m in models]
    validation = {m: float(PER_USER["ndcg"](r, K).mean())
                  for m, r in sorted(ranks_of("validation", counts).items(), key=lambda mr: COUNT_MODELS.index(mr[0]))}
    best = max(sorted(validation), key=lambda m: validation[m]) if validation else None
    single, paired = intervals(test_ranks, [K], best, config.bootstrap_resamples or 1000, config.seed,
                               config.ci_level)
    rows, mismatched = model_rows(models, found, single, paired, best, validation)
    if mismatched:
        print(f"warning: the lists of {', '.join(mismatched)} do not give the metrics table's NDCG@10 or its interval "
              "(lists rewritten after the evaluation?)", file=sys.stderr)

    figures = {
        "run_date": run_date, "warehouse": str(warehouse),
        "input": {"path": provenance["input_path"], "format": provenance["input_format"],
                  "interactions_version": provenance["interactions_version"], "catalogue_items": n_items,
                  "test_users": int(len(test_users)), "etl_tables": etl_tables(warehouse)},
        "tie_break": provenance["tie_break"], "tie_seed": provenance["tie_seed"],
        "protocol": FULL,
        "intervals": {"level": config.ci_level, "resamples": config.bootstrap_resamples, "seed": config.seed,
                      "over": "test users, paired across models (recsys_spark.intervals)"},
        "best_count_model": {"model": best, "chosen_by": "validation NDCG@10 (recommendations_validation)",
                             "candidates": validation},
        "lists_match_metrics": not mismatched,
        "models": rows,
    }
    figures["sampled"] = (sampled_figures(warehouse, [m for m in models if m in catalogue.names(catalogue.TORCH)],
                                          rows, test_users, sampled, config, device)
                          if sampled else "not computed")
    return figures


def metrics_of_run(warehouse: Path, run_date: str | None) -> tuple[str, dict, list[str], dict]:
    """The metrics table's test HR@10 and NDCG@10 rows of the run date (default: the latest): the run date, the rows
    by (model, metric), the models that have both, and the input they were scored on (PROVENANCE's columns)."""
    from recsys_spark.evaluate import PROVENANCE, read_metrics

    metrics = [r for r in read_metrics(warehouse).to_pylist()
               if r["split"] == "test" and r["k"] == K and r["metric"] in ("hr", "ndcg")]
    if not metrics:
        raise SystemExit(f"error: {warehouse}: no test metrics at k={K} (has the run's evaluate step finished?)")
    dates = sorted({r["run_date"].isoformat() for r in metrics})
    run_date = run_date or dates[-1]
    metrics = [r for r in metrics if r["run_date"].isoformat() == run_date]
    if not metrics:
        raise SystemExit(f"error: {warehouse}: no test metrics for run date {run_date} (there are: {', '.join(dates)})")
    found = {(r["model"], r["metric"]): r for r in metrics}
    models = sorted({m for m, metric in found if metric == "ndcg" and (m, "hr") in found})
    provenance = sorted({tuple(r[key] for key in PROVENANCE) for r in metrics}, key=str)
    if len(provenance) > 1:
        print(f"warning: the models' rows were scored on different inputs or versions: {provenance}", file=sys.stderr)
    return run_date, found, models, dict(zip(PROVENANCE, provenance[0]))


def list_ranks(spark, warehouse: Path, interactions, split: str, names, run_date: str, max_k: int) -> dict:
    """Each model's per-user rank of its `split` targets, from the lists the evaluator chose for the run date."""
    from pyspark.sql import functions as F

    from recsys_spark.delta import read_table, table_exists, table_path
    from recsys_spark.evaluate import per_user_ranks, select_runs
    from recsys_spark.recommendations import list_table

    if not table_exists(table_path(warehouse, list_table(split))):
        return {}
    recs = read_table(spark, table_path(warehouse, list_table(split))).where(F.col("model").isin(list(names)))
    runs = select_runs(recs, {}, run_date=dt.date.fromisoformat(run_date))  # as the evaluator chose them
    chosen = spark.createDataFrame([(r.model, r.run_date) for r in runs], "model string, run_date date")
    recs = recs.join(F.broadcast(chosen), ["model", "run_date"])
    target = interactions.where(F.col("split") == split)
    return per_user_ranks(recs, target, max_k)


def model_rows(models: list[str], found: dict, single: dict, paired: dict, best: str | None,
               validation: dict) -> tuple[dict, list[str]]:
    """Each model's row of figures, and the models whose lists do not give the metrics table's NDCG@10."""
    rows, mismatched = {}, []
    for model in models:
        hr, ndcg = found[model, "hr"], found[model, "ndcg"]
        row = {"hr@10": hr["value"], "hr@10_ci": _interval(hr), "ndcg@10": ndcg["value"],
               "ndcg@10_ci": _interval(ndcg), "run_id": ndcg["run_id"]}
        if model in single:  # the metrics as recomputed from the lists: the evaluator's own figures
            ours = single[model]["ndcg", K]
            if not (math.isclose(ours.value, ndcg["value"], abs_tol=1e-12)
                    and (ndcg["ci_low"] is None or math.isclose(ours.low, ndcg["ci_low"], abs_tol=1e-12))):
                mismatched.append(model)
        if model == best:
            row["paired_vs_best_count"] = [0.0, 0.0, 0.0]
        elif model in paired:
            diff = paired[model]["ndcg", K]
            row["paired_vs_best_count"] = [diff.value, diff.low, diff.high]
        else:
            row["paired_vs_best_count"] = None
        if model in validation:
            row["validation_ndcg@10"] = validation[model]
        rows[model] = row
    return rows, mismatched


def sampled_figures(warehouse: Path, torch_models: list[str], rows: dict, test_users, negatives: int, config,
                    device: str) -> dict:
    """The sampled protocol's HR@10 / NDCG@10 (and intervals) of each torch model, into `rows`; its description."""
    import numpy as np

    from recsys_spark.intervals import intervals
    from recsys_torch.infer import sampled_ranks

    done = []
    for model in torch_models:
        if not (warehouse / "models" / model / "best.pt").is_file():
            continue
        users, ranks = sampled_ranks(warehouse, model, negatives, config.seed, device=device)
        per_user = np.full(len(test_users), np.inf)  # a test user without a shard row: no hit, as in the evaluator
        at = np.searchsorted(test_users, users)
        inside = (at < len(test_users)) & (test_users[np.minimum(at, len(test_users) - 1)] == users)
        per_user[at[inside]] = ranks[inside]
        single, _ = intervals({model: per_user}, [K], None, config.bootstrap_resamples or 1000, config.seed,
                              config.ci_level)
        for metric in ("hr", "ndcg"):
            value = single[model][metric, K]
            rows[model][f"sampled_{metric}@10"] = value.value
            rows[model][f"sampled_{metric}@10_ci"] = [value.low, value.high]
        done.append(model)
    return {"negatives": negatives, "protocol": SAMPLED.format(n=negatives) + " (with replacement, as SASRec's "
            "code), scored by the trained model (models/<model>/best.pt); ties count against the target",
            "seed": config.seed, "models": done}


def show(name: str, figures: dict) -> None:
    source = figures["input"]
    print(f"\n{name}: {source['path']} ({source['format']}), {source['test_users']:,} test users, "
          f"{source['catalogue_items']:,} items; run {figures['run_date']}, tie_break {figures['tie_break']} (seed {figures['tie_seed']}), "
          f"interactions v{source['interactions_version']}")
    best = figures["best_count_model"]["model"]
    print(f"test split, {FULL}; {figures['intervals']['level']:.0%} bootstrap intervals over users")
    sampled = isinstance(figures["sampled"], dict)
    versus = f"NDCG@10 - {best} (best count)  " if best else "no count model  "
    print(f"{'model':<14}{'HR@10':>26}{'NDCG@10':>26}{versus:>34}" + (f"{'sampled HR@10':>16}{'NDCG@10':>9}"
                                                                           if sampled else ""))
    rows = figures["models"]
    for model in sorted(rows, key=lambda m: -rows[m]["ndcg@10"]):
        r = rows[model]
        cell = lambda m: (f"{r[m]:.4f} [{r[m + '_ci'][0]:.4f}, {r[m + '_ci'][1]:.4f}]"  # noqa: E731
                          if r[m + "_ci"][0] is not None else f"{r[m]:.4f}")
        d = r["paired_vs_best_count"]
        if model == best:
            diff = "(reference)  "
        elif d is None:
            diff = ""
        else:
            diff = f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]" + ("  " if d[1] > 0 or d[2] < 0 else " ~")
        extra = (f"{r['sampled_hr@10']:>16.4f}{r['sampled_ndcg@10']:>9.4f}" if sampled and "sampled_hr@10" in r
                 else "")
        print(f"{model:<14}{cell('hr@10'):>26}{cell('ndcg@10'):>26}{diff:>34}{extra}")
    print("~: the paired interval holds zero (within the noise)")
    if sampled:
        print(f"sampled: {figures['sampled']['protocol']}")
    published = figures["published"]
    if published.get("hr@10") is not None:
        print(f"published: HR@10 {published['hr@10']:.4f}, NDCG@10 {published['ndcg@10']:.4f} ({published['protocol']}); "
              f"{published['source']}")
    else:
        print(f"published: {published['source']}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="the data set (any input `recsys etl` reads); not with --warehouse")
    p.add_argument("--name", help="toys | sports | video (published figures), or any; default: from the file name")
    p.add_argument("--work", type=Path, help="WORK/wh, WORK/reports, WORK/pipeline.log (default .bench/public/NAME)")
    p.add_argument("--run-date", help="default: the run date under WORK/wh/_pipeline, else today; with --warehouse "
                                      "the latest evaluated")
    p.add_argument("--warehouse", type=Path, help="a finished run's warehouse to read instead of running (read only)")
    p.add_argument("--out", type=Path, help="default benchmarks/results/public-NAME.json")
    p.add_argument("--sampled", type=int, help="negatives of the sampled metric of the torch models (0: none); "
                                               "default 100 where the published figures are sampled, else 0")
    p.add_argument("--device", default="auto", help="torch device of the sampled metric's scoring")
    p.add_argument("overrides", nargs="*", help="key=value for `recsys pipeline` (the run's, not with --warehouse)")
    return p


def run_pipeline(args, name: str) -> tuple[Path, list[str], int]:
    """`recsys pipeline` into WORK/wh (resumed where it stopped): the warehouse, the command and its exit code."""
    work = (args.work or REPO / ".bench" / "public" / name).resolve()
    warehouse = work / "wh"
    work.mkdir(parents=True, exist_ok=True)
    args.run_date = args.run_date or default_run_date(warehouse)
    command = pipeline_command(args.data.resolve(), work, args.run_date, args.overrides)
    log = work / "pipeline.log"
    print(f"{machine()}\n$ recsys {shlex.join(command)}\n(output in {log})", flush=True)
    code, seconds = run_recsys(*command, log=log)
    print(f"recsys pipeline: exit {code} after {seconds:.0f} s", flush=True)
    if code != 0:  # a failed model is isolated: report the others, the same command again resumes
        print(f"warning: the pipeline exited {code} (see {log}); the same command resumes it", file=sys.stderr)
    return warehouse, command, code


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_intermixed_args(argv)
    if args.warehouse and (args.data or args.overrides or args.work):
        p.error("--warehouse reads a finished run: no --data, --work or overrides with it")
    if not args.warehouse and not args.data:
        p.error("--data PATH (to run) or --warehouse EXISTING (to read) is required")

    command, code = None, None  # the pipeline's, when this invocation runs it
    if args.warehouse:
        warehouse = args.warehouse.resolve()
        if not (warehouse / "metrics").is_dir():
            p.error(f"--warehouse {warehouse}: no metrics table (not a finished run)")
        etl = warehouse / "etl_report.json"
        name = args.name or dataset_name(json.loads(etl.read_text()).get("data") if etl.is_file() else None)
    else:
        if not args.data.exists():
            p.error(f"--data {args.data}: not found")
        name = args.name or dataset_name(str(args.data))
        warehouse, command, code = run_pipeline(args, name)
        if code != 0 and not (warehouse / "metrics").is_dir():
            return code
    published = PUBLISHED.get(name)
    sampled = args.sampled if args.sampled is not None else (100 if published and published["sampled"] else 0)
    figures = report(warehouse, args.run_date, sampled, args.device)
    steps = step_seconds(warehouse, figures["run_date"])
    out = {"dataset": name,
           "published": ({key: value for key, value in published.items() if key != "sampled"} if published else
                         {"hr@10": None, "ndcg@10": None, "source": f"no published figures recorded for {name!r} "
                                                                    f"(benchmarks/public.py PUBLISHED)"}),
           **figures,
           "steps": steps, "steps_seconds": round(sum(s["seconds"] or 0 for s in steps.values()), 1),
           "command": None if command is None else "recsys " + shlex.join(command), "pipeline_exit_code": code,
           "machine": machine()}
    show(name, out)
    path = args.out or REPO / "benchmarks" / "results" / f"public-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return code or 0  # a night with a failed step still reports the models it evaluated, and exits as it did


if __name__ == "__main__":
    sys.exit(main())
