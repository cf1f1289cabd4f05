"""The comparison report: reports/<run_date>/report.md with PNG plots, read from the `metrics` Delta table.

Needs no Spark: the metrics table is small and read with delta-rs, at the version the last published run names
(recsys_core.published: the snapshot every reader reads; its latest version while nothing is published).
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
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


def bar_errors(metrics: pd.DataFrame, table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The error bars of `table[columns]` (comparison_table rows) from the metrics' bootstrap intervals, as
    matplotlib takes asymmetric ones per bar series: [column, (below, above), model], value - ci_low and
    ci_high - value; 0 where a row has no interval."""
    errors = np.zeros((len(columns), 2, len(table.index)))
    if "ci_low" not in metrics.columns:
        return errors
    for c, column in enumerate(columns):
        metric, k = column.split("@")
        rows = metrics[(metrics["metric"] == metric) & (metrics["k"] == int(k))].set_index("model")
        for m, model in enumerate(table.index):
            if model in rows.index and pd.notna(rows.at[model, "ci_low"]):
                value = table.at[model, column]
                errors[c, :, m] = [value - rows.at[model, "ci_low"], rows.at[model, "ci_high"] - value]
    return errors


def interval_bars(metrics: pd.DataFrame, table: pd.DataFrame, columns: list[str], title: str):
    """A bar chart of `table[columns]` per model with each bar's bootstrap interval (bar_errors); None when the
    table has none of the columns."""
    import matplotlib

    matplotlib.use("Agg")
    columns = [c for c in columns if c in table.columns]
    if not columns:
        return None
    ax = table[columns].plot.bar(figsize=(8, 4), rot=30, title=title, yerr=bar_errors(metrics, table, columns),
                                 capsize=3, error_kw={"elinewidth": 1})
    ax.figure.tight_layout()
    return ax.figure


def _plots(metrics: pd.DataFrame, table: pd.DataFrame, out: Path, curves: dict[str, list[dict]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    figure = interval_bars(metrics, table, ["hr@10", "ndcg@10"],
                           "HR@10 and NDCG@10 per model (test, full ranking; 95% bootstrap intervals)")
    if figure is not None:
        figure.savefig(out / "ndcg_hr.png", dpi=110)
        plt.close(figure)
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


INPUT_PLOTTED = ("psi_item_popularity", "psi_rating", "new_user_share", "new_item_share")


def drift_figure(rows: list[dict]):
    """The drift of one run date (recsys_spark.drift rows): the input measures against their thresholds, each
    model's list overlap and coverage change, and each model's NDCG change with its paired interval. None without
    rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    inputs = {r["metric"]: r for r in rows if r["kind"] == "input" and r["metric"] in INPUT_PLOTTED}
    names = [m for m in INPUT_PLOTTED if m in inputs]
    warned = ["tab:red" if inputs[m]["warning"] else "tab:blue" for m in names]
    axes[0].bar(range(len(names)), [inputs[m]["value"] for m in names], color=warned)
    axes[0].scatter(range(len(names)), [inputs[m]["threshold"] for m in names], marker="_", s=400, color="black",
                    label="threshold", zorder=3)
    axes[0].set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=20, fontsize=8)
    axes[0].set_title("input: this load vs the one before")
    axes[0].legend(fontsize=8)
    outputs = [r for r in rows if r["kind"] == "output"]
    models = sorted({r["model"] for r in outputs})
    overlap = {r["model"]: r["value"] for r in outputs if r["metric"] == "list_overlap"}
    cover = {r["model"]: (r["value"] / r["previous"] - 1.0) for r in outputs
             if r["metric"] == "coverage" and r["previous"]}
    x = np.arange(len(models))
    axes[1].bar(x - 0.2, [overlap.get(m, np.nan) for m in models], 0.4, label="list overlap@k")
    axes[1].bar(x + 0.2, [cover.get(m, np.nan) for m in models], 0.4, label="coverage@k change (relative)")
    axes[1].axhline(0, color="black", linewidth=0.5)
    axes[1].set_xticks(x, models, rotation=30, fontsize=8)
    axes[1].set_title("lists: tonight vs the last published")
    axes[1].legend(fontsize=8)
    ndcg = {r["model"]: r for r in outputs if r["metric"] == "ndcg_change"}
    shown = [m for m in models if m in ndcg]
    values = np.array([ndcg[m]["value"] for m in shown])
    errors = np.array([[ndcg[m]["value"] - ndcg[m]["ci_low"], ndcg[m]["ci_high"] - ndcg[m]["value"]]
                       for m in shown]).T.reshape(2, len(shown))
    if shown:
        axes[2].errorbar(np.arange(len(shown)), values, yerr=errors, fmt="none", capsize=4, ecolor="tab:gray")
        axes[2].scatter(np.arange(len(shown)), values, zorder=3,
                        color=["tab:red" if ndcg[m]["warning"] else "tab:blue" for m in shown])
    axes[2].axhline(0, color="black", linewidth=0.5)
    axes[2].set_xticks(np.arange(len(shown)), shown, rotation=30, fontsize=8)
    axes[2].set_title("NDCG@k now - before (95% paired interval)")
    fig.tight_layout()
    return fig


def drift_markdown(rows: list[dict]) -> list[str]:
    """The report's drift section: a row per measure, the warnings first."""
    from recsys_spark.drift import warnings

    def number(value):
        return "" if value is None else f"{value:.4f}"

    lines = ["## Drift", "", "Tonight against the last published run (else the previous load and run date); "
             "thresholds in conf/drift.yaml.", ""]
    lines += [f"- **{line}**" for line in warnings(rows)] + ([""] if warnings(rows) else [])
    lines += ["| kind | model | metric | value | before | 95% interval | compared with |", "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        metric = r["metric"] + (f"@{r['k']}" if r["k"] else "") + (" ⚠" if r["warning"] else "")
        lines.append(f"| {r['kind']} | {r['model'] or ''} | {metric} | {number(r['value'])} | "
                     f"{number(r['previous'])} | {ci} | {r['compared_to'] or ''} |")
    return lines + [""]


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
    from recsys_spark.drift import load_drift

    drift = load_drift(warehouse, run_date)
    figure = drift_figure(drift)
    if figure is not None:
        import matplotlib.pyplot as plt

        figure.savefig(out / "drift.png", dpi=110)
        plt.close(figure)
        lines += ["", *drift_markdown(drift), "![drift.png](drift.png)"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    table.to_csv(out / "metrics.csv")
    return report
