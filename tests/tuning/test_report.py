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


def test_report_lists_trials_best_config_test_scores_and_the_ui_command() -> None:
    outcome = SweepOutcome(
        name="s", table=_table(), best_config={"n_layers": 3}, best_trial_id="a_00001",
        test_metrics={"mae": 0.3, "mre": 0.41, "coverage": 0.9}, parent_run_id="p" * 32,
        tracking_uri="sqlite:////tmp/x/mlflow.db", experiment_path="/tmp/r/s",
        resources=TrialResources(cpu=1, gpu=0, max_concurrent=2), seconds=12.0, registered=None,
    )
    text = format_report(outcome)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("trial_id"))
    assert lines[header + 1].split()[0] == "a_00001" and "f00dcafe" in lines[header + 1]
    assert "Best trial a_00001: {'n_layers': 3}" in text
    assert "MAE 0.3000, MRE 0.4100, COVERAGE 0.9000" in text
    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in text
