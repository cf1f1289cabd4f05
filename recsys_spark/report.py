"""The comparison report: reports/<run_date>/report.md with PNG plots, read from the `metrics` Delta table.

Needs no Spark: the metrics table is small and read with delta-rs, at the version the last published run names
(recsys_core.published: the snapshot every reader reads; its latest version while nothing is published).
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from recsys_core.published import latest_published, published_version
from recsys_spark.delta import read_arrow, table_exists, table_path

COMPARED = ("hr", "ndcg", "mrr", "recall", "map", "coverage")  # a comparison's ranking columns, at one K
ERROR_METRICS = ["rmse", "mae"]


def load_metrics(warehouse: str | Path, run_date: dt.date | None = None, split: str = "test") -> pd.DataFrame:
    """The metrics table's rows of `split` on `run_date` (default: each model's latest run date)."""
    path = table_path(warehouse, "metrics")
    if not table_exists(path):
        return pd.DataFrame(columns=["model", "run_id", "run_date", "split", "metric", "k", "value"])
    frame = read_arrow(path, version=published_version(warehouse, "metrics")).to_pandas()
    frame["run_date"] = pd.to_datetime(frame["run_date"]).dt.date
    if run_date is not None:
        frame = frame[frame["run_date"] == run_date]
    elif len(frame):
        latest = frame.groupby("model")["run_date"].transform("max")
        frame = frame[frame["run_date"] == latest]
    return frame[frame["split"] == split]


def comparison_table(metrics: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The comparison of models: one row each, HR/NDCG/MRR/Recall/MAP and coverage at K, then RMSE/MAE where a
    model wrote them; sorted by NDCG@K. `metrics` holds rows of the metrics table (load_metrics)."""
    rows: dict[str, dict[str, float]] = {}
    for rec in metrics.itertuples():
        key = f"{rec.metric}@{int(rec.k)}" if pd.notna(rec.k) else rec.metric
        rows.setdefault(rec.model, {})[key] = rec.value
    table = pd.DataFrame.from_dict(rows, orient="index")
    wanted = [f"{m}@{k}" for m in COMPARED] + ERROR_METRICS
    cols = [c for c in wanted if c in table.columns]
    table = table[cols] if cols else table
    if f"ndcg@{k}" in table.columns:
        table = table.sort_values(f"ndcg@{k}", ascending=False)
    table.index.name = "model"
    return table


def intervals_table(metrics: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """HR@K and NDCG@K with their bootstrap intervals, and each model's paired NDCG@K difference to the evaluator's
    reference model (the `ndcg_minus_<reference>` rows), as text; a difference whose interval holds zero is marked
    "(noise)". Sorted by NDCG@K. Empty when the metrics have no intervals."""
    if "ci_low" not in metrics.columns:
        return pd.DataFrame()
    at_k = metrics[metrics["k"] == k]
    rows: dict[str, dict[str, str]] = {}
    order: dict[str, float] = {}
    for rec in at_k.itertuples():
        if pd.isna(rec.ci_low):
            continue
        cell = f"{rec.value:.4f} [{rec.ci_low:.4f}, {rec.ci_high:.4f}]"
        if rec.metric in ("hr", "ndcg"):
            rows.setdefault(rec.model, {})[f"{rec.metric}@{k} (95% CI)"] = cell
            if rec.metric == "ndcg":
                order[rec.model] = rec.value
        elif rec.metric.startswith("ndcg_minus_"):
            noise = "" if rec.ci_low > 0 or rec.ci_high < 0 else " (noise)"
            rows.setdefault(rec.model, {})[f"ndcg@{k} - {rec.metric.removeprefix('ndcg_minus_')}"] = (
                f"{rec.value:+.4f} [{rec.ci_low:+.4f}, {rec.ci_high:+.4f}]{noise}")
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    table = table.loc[sorted(table.index, key=lambda m: -order.get(m, 0.0))]
    table.index.name = "model"
    return table


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    return "" if pd.isna(value) else f"{value:.4f}"


def to_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "_no metrics yet_\n"
    header = "| model | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    body = [f"| {model} | " + " | ".join(_cell(v) for v in row) + " |"
            for model, row in zip(table.index, table.itertuples(index=False))]
    return "\n".join([header, rule, *body]) + "\n"


def _plots(metrics: pd.DataFrame, table: pd.DataFrame, out: Path, curves: dict[str, list[dict]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    bars = [c for c in ("hr@10", "ndcg@10") if c in table.columns]
    if bars:
        ax = table[bars].plot.bar(figsize=(8, 4), rot=30, title="HR@10 and NDCG@10 per model (test, full ranking)")
        ax.figure.tight_layout()
        ax.figure.savefig(out / "ndcg_hr.png", dpi=110)
        plt.close(ax.figure)
        made.append("ndcg_hr.png")
    ranked = metrics[metrics["metric"].isin(["ndcg", "hr"]) & metrics["k"].notna()]
    if not ranked.empty:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric in zip(axes, ["hr", "ndcg"]):
            for model, grp in ranked[ranked["metric"] == metric].groupby("model"):
                grp = grp.sort_values("k")
                ax.plot(grp["k"], grp["value"], marker="o", label=model)
            ax.set_xlabel("K")
            ax.set_title(f"{metric.upper()}@K")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "metric_at_k.png", dpi=110)
        plt.close(fig)
        made.append("metric_at_k.png")
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for model, history in curves.items():
            steps = [h["step"] for h in history if "val_ndcg@10" in h and "step" in h]
            values = [h["val_ndcg@10"] for h in history if "val_ndcg@10" in h and "step" in h]
            if steps:
                ax.plot(steps, values, marker="o", label=model)
        ax.set_xlabel("optimizer step")
        ax.set_title("validation NDCG@10 during training")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=110)
        plt.close(fig)
        made.append("training_curves.png")
    return made


def training_curves(warehouse: str | Path) -> dict[str, list[dict]]:
    """The validation history the torch trainer writes beside its checkpoints (models/<model>/history.json)."""
    curves = {}
    for path in sorted(Path(warehouse, "models").glob("*/history.json")):
        try:
            curves[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return curves


def published_lines(warehouse: str | Path, run_date: dt.date) -> list[str]:
    """The regression gate's decision per model, when the last published run is this run date's."""
    run = latest_published(warehouse)
    if run is None or run.run_date != run_date:
        return []
    rows = [f"| {m.model} | {'yes' if m.published else 'no'} | {m.run_date or ''} | {m.reason} |" for m in run.models]
    return [f"Published as run `{run.run_id}`: the regression gate's decision per model (served: the run date of "
            "the list served for it).", "", "| model | published | served | reason |", "|---|---|---|---|",
            *rows, ""]


def write_report(warehouse: str | Path, reports_dir: str | Path, run_date: dt.date) -> Path:
    metrics = load_metrics(warehouse, run_date)
    table = comparison_table(metrics)
    out = Path(reports_dir) / run_date.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    images = _plots(metrics, table, out, training_curves(warehouse))
    lines = [
        f"# Recommender comparison — run date {run_date.isoformat()}",
        "",
        "Leave-last-out test split, full ranking over the whole catalogue, items seen in train and validation "
        "excluded. One evaluator for every model.",
        "",
        to_markdown(table),
    ]
    intervals = intervals_table(metrics)
    if not intervals.empty:
        lines += ["95% intervals: a seeded bootstrap over the test users; a difference to the reference model is "
                  "paired (the same resampled users) and marked (noise) when its interval holds zero.", "",
                  to_markdown(intervals)]
    lines += published_lines(warehouse, run_date)
    lines += [f"![{name}]({name})" for name in images]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    table.to_csv(out / "metrics.csv")
    return report
