"""Scoring of the best model, the parent run's plot and the closing report (hand-made inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapray.data import TimeSeriesDataset
from gapray.sweep import SweepOutcome, TrialResources, evaluate_imputation, format_report
from gapray.sweep.runner import plot_mae_by_depth_and_margin


def _dataset() -> TimeSeriesDataset:
    X_ori = np.array([[[1.0, 2.0], [3.0, -4.0]]], dtype=np.float32)  # [1, 2, 2]
    X = X_ori.copy()
    X[0, 0, 1] = np.nan  # removed: truth 2
    X[0, 1, 1] = np.nan  # removed: truth -4
    return TimeSeriesDataset(X=X, X_ori=X_ori)


def test_scores_use_only_the_removed_entries_and_coverage_counts_hits() -> None:
    dataset = _dataset()
    imputation = np.array([[[9.0, 2.5], [9.0, -3.0]]])  # observed entries wrong on purpose: ignored
    prediction = {"imputation": imputation, "lower": imputation - 0.6, "upper": imputation + 0.6}
    scores = evaluate_imputation(prediction, dataset)
    assert scores["mae"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["mre"] == pytest.approx((0.5 + 1.0) / (2 + 4))
    assert scores["coverage"] == pytest.approx(0.5)  # 2 in [1.9, 3.1]; -4 not in [-3.6, -2.4]
    assert "coverage" not in evaluate_imputation({"imputation": imputation}, dataset)


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": ["a_00001", "a_00000"], "n_layers": [3, 1], "hidden_size": [64, 32], "dml_margin": [0.1, 0.3],
        "unfreeze_every": [100, "off"], "n_samples": [10, 5], "lr": [5e-4, 1e-3], "epochs": [4, 2],
        "best_epoch": [4, 2], "val_mae": [0.31, 0.42], "val_mre": [0.4, 0.5],
        "node_id": ["f00dcafe12345678", "beefbeef87654321"], "status": ["TERMINATED", "TERMINATED"],
    })


def test_mae_plot_is_written_as_png(tmp_path: Path) -> None:
    path = plot_mae_by_depth_and_margin(_table(), tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_depth_axis_has_integer_ticks_and_the_locf_line_is_drawn() -> None:
    from gapray.sweep.runner import mae_figure

    figure = mae_figure(_table(), {"LOCF (validation)": 0.35})
    depth, margin = figure.axes
    ticks = [t for t in depth.get_xticks() if depth.get_xlim()[0] <= t <= depth.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert [line.get_ydata()[0] for line in depth.get_lines()] == [0.35]
    assert "LOCF (validation)" in [t.get_text() for t in margin.get_legend().get_texts()]


def _outcome(test_metrics: dict[str, float], registered: object = None) -> SweepOutcome:
    return SweepOutcome(
        name="s", table=_table(), best_config={"n_layers": 3, "hidden_size": 64, "dml_margin": 0.1,
                                               "unfreeze_every": 100, "lr": 5e-4},
        best_trial_id="a_00001", test_metrics=test_metrics, parent_run_id="p" * 32,
        tracking_uri="sqlite:////tmp/x/mlflow.db", experiment_path="/tmp/r/s",
        resources=TrialResources(cpu=1, gpu=0, max_concurrent=2), seconds=12.0, registered=registered,  # type: ignore[arg-type]
        baselines={"LOCF": {"mae": 0.4, "mre": 0.55}, "mean": {"mae": 0.7, "mre": 0.99}}, experiment="deari-sweep",
        n_test=15, n_held_out=1234,
    )


def test_report_lists_trials_compares_the_best_trial_with_the_baselines_and_says_what_to_open() -> None:
    from gapray.tracking.registry import RegisteredModel

    outcome = _outcome({"mae": 0.3, "mre": 0.41, "coverage": 0.02, "calibrated_coverage": 0.903,
                        "calibrated_width": 1.25, "interval_level": 0.9},
                       RegisteredModel("deari", "4", "champion", "models:/deari@champion"))
    text = format_report(outcome)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("trial_id"))
    assert lines[header + 1].split()[0] == "a_00001" and "f00dcafe" in lines[header + 1]
    assert "Test set (1,234 held-out entries of 15 test records, never seen in training):" in text
    rows = {line.split("  ")[1].strip(): line.split()[-2:] for line in lines
            if line.startswith("  ") and line.split()[-1][:2] in ("0.", "1.") and "held-out" not in line}
    assert rows == {"best trial (d3-h64-m0.10-u100-lr5.0e-4)": ["0.3000", "0.4100"], "LOCF": ["0.4000", "0.5500"],
                    "mean": ["0.7000", "0.9900"]}
    assert "The best trial's MAE is 25 % below LOCF's." in text  # (0.3 - 0.4) / 0.4
    assert "coverage 0.903, mean width 1.250" in text and "0.02" not in text  # never the raw coverage
    assert "In the MLflow UI, experiment 'deari-sweep':" in text
    assert "Models tab: models:/deari@champion (version 4)" in text
    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in text


def test_report_of_a_deterministic_best_trial_worse_than_locf_says_so() -> None:
    text = format_report(_outcome({"mae": 0.5, "mre": 0.7}))
    assert "The best trial's MAE is 25 % above LOCF's." in text
    assert "intervals" not in text and "Models tab" not in text
    assert "Test set: no checkpoint" in format_report(_outcome({}))
