"""The comparison report's bar chart carries each model's bootstrap interval, and the report has a drift section: the
numbers handed to matplotlib are checked, not pixels. No Spark: metrics and drift rows are written with delta-rs."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

DAY = dt.date(2030, 5, 1)


def metric_rows():
    from recsys_spark.evaluate import metric_row

    rows = []
    for model, hr, ndcg in (("ar2", 0.10, 0.05), ("als", 0.20, 0.12), ("popularity", 0.06, 0.03)):
        rows += [metric_row(model, f"run-{model}", DAY, "test", "hr", 10, hr, hr - 0.02, hr + 0.03),
                 metric_row(model, f"run-{model}", DAY, "test", "ndcg", 10, ndcg, ndcg - 0.01, ndcg + 0.015)]
    rows.append(metric_row("als", "run-als", DAY, "test", "ndcg_minus_ar2", 10, 0.07, 0.05, 0.09))
    return rows


def drift_rows():
    from recsys_spark.drift import row

    return [row(DAY, "input", "interactions", 3320, 3000, "interactions v1 (the previous load)"),
            row(DAY, "input", "psi_item_popularity", 0.9, None, "interactions v1 (the previous load)", threshold=0.2,
                warning="psi_item_popularity 0.900 > 0.2"),
            row(DAY, "input", "psi_rating", 0.05, None, "interactions v1 (the previous load)", threshold=0.2),
            row(DAY, "output", "list_overlap", 0.6, None, "run_date 2030-04-30", "als", 10, threshold=0.3),
            row(DAY, "output", "coverage", 0.1, 0.08, "run_date 2030-04-30", "als", 10, threshold=0.5),
            row(DAY, "output", "ndcg_change", -0.02, 0.14, "run_date 2030-04-30", "als", 10, (-0.03, -0.011), 0.01,
                "als: NDCG@10 -0.0200 [-0.0300, -0.0110] vs run_date 2030-04-30")]


def test_the_bars_carry_the_bootstrap_intervals():
    from recsys_spark.report import bar_errors, comparison_table, interval_bars

    metrics = pd.DataFrame(metric_rows())
    table = comparison_table(metrics)
    assert list(table.index) == ["als", "ar2", "popularity"]  # by NDCG@10
    errors = bar_errors(metrics, table, ["hr@10", "ndcg@10"])
    assert errors.shape == (2, 2, 3)
    np.testing.assert_allclose(errors[0], [[0.02] * 3, [0.03] * 3])  # hr: value - low, high - value
    np.testing.assert_allclose(errors[1], [[0.01] * 3, [0.015] * 3])
    figure = interval_bars(metrics, table, ["hr@10", "ndcg@10"], "title")
    (ax,) = figure.axes
    bars = [container for container in ax.containers if hasattr(container, "patches")]
    whiskers = [container for container in ax.containers if not hasattr(container, "patches")]
    assert [[p.get_height() for p in c.patches] for c in bars] == [table["hr@10"].tolist(), table["ndcg@10"].tolist()]
    for column, container in zip(["hr@10", "ndcg@10"], whiskers):  # each bar's whisker spans its interval
        segments = container.lines[2][0].get_segments()
        lows = [min(s[:, 1]) for s in segments]
        highs = [max(s[:, 1]) for s in segments]
        expected = metrics[(metrics.metric == column.split("@")[0])].set_index("model").loc[table.index]
        np.testing.assert_allclose(lows, expected["ci_low"])
        np.testing.assert_allclose(highs, expected["ci_high"])
    # without intervals (bootstrap_resamples=0) the bars are bare: zero-length whiskers
    bare = metrics.drop(columns=["ci_low", "ci_high"])
    assert not bar_errors(bare, table, ["hr@10"]).any()


def test_the_report_has_a_drift_section_with_its_plot(tmp_path):
    from recsys_spark.drift import write_drift
    from recsys_spark.evaluate import write_metrics
    from recsys_spark.report import drift_figure, write_report

    warehouse = tmp_path / "warehouse"
    write_metrics(metric_rows(), warehouse)
    write_drift(drift_rows(), warehouse, DAY)
    report = write_report(warehouse, tmp_path / "reports", DAY)
    text = report.read_text()
    assert "## Drift" in text and "![drift.png](drift.png)" in text and "![ndcg_hr.png](ndcg_hr.png)" in text
    assert f"- **WARNING drift {DAY}: psi_item_popularity 0.900 > 0.2 (vs interactions v1 (the previous load))**" \
        in text
    assert "| output | als | ndcg_change@10 ⚠ | -0.0200 | 0.1400 | [-0.0300, -0.0110] | run_date 2030-04-30 |" in text
    assert (report.parent / "drift.png").stat().st_size > 5_000

    figure = drift_figure(drift_rows())
    inputs, lists, ndcg = figure.axes
    assert [p.get_height() for p in inputs.patches] == [0.9, 0.05]  # psi_item_popularity, psi_rating
    assert [p.get_facecolor() != inputs.patches[1].get_facecolor() for p in inputs.patches] == [True, False]
    assert [p.get_height() for p in lists.patches] == pytest.approx([0.6, 0.1 / 0.08 - 1])
    (whisker,) = ndcg.collections[:1]
    (segment,) = whisker.get_segments()
    assert sorted(segment[:, 1]) == pytest.approx([-0.03, -0.011])
