"""Figure-3c-like uncertainty plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from gapray.data.dataset import TimeSeriesDataset
from gapray.imputation.plotting import (
    band_example,
    band_example_score,
    band_feature,
    longest_gaps,
    plot_imputation_band,
)


def _dataset() -> tuple[TimeSeriesDataset, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x_ori = rng.normal(size=(2, 12, 3)).astype(np.float32)
    x = x_ori.copy()
    x[0, 3:6, 1] = np.nan  # removed ground truth
    x[0, 8, 1] = np.nan
    mean = np.nan_to_num(x)
    prediction = {"imputation": mean, "lower": mean - 0.5, "upper": mean + 0.5}
    return TimeSeriesDataset(X=x, X_ori=x_ori, feature_names=("a", "b", "c"), name="toy"), prediction


def test_plot_writes_a_png(tmp_path: Path) -> None:
    dataset, prediction = _dataset()
    path = plot_imputation_band(dataset, prediction, record=0, feature="b", path=tmp_path / "sub" / "band.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # something was drawn


def test_plot_refuses_bad_record_feature_and_shapes(tmp_path: Path) -> None:
    dataset, prediction = _dataset()
    with pytest.raises(ValueError, match="record 5"):
        plot_imputation_band(dataset, prediction, 5, 0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'zz'"):
        plot_imputation_band(dataset, prediction, 0, "zz", tmp_path / "x.png")
    with pytest.raises(ValueError, match="shape"):
        plot_imputation_band(dataset, {"imputation": np.zeros((1, 12, 3))}, 0, 0, tmp_path / "x.png")


def test_band_feature_picks_the_variable_with_the_longest_gap_holding_ground_truth() -> None:
    missing = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0], [0, 1, 0]], dtype=bool)  # [T=5, D=3]
    assert longest_gaps(missing).tolist() == [2, 2, 3]
    assert longest_gaps(missing, interior=True).tolist() == [0, 2, 0]  # only b's gap has observations around it
    dataset, _ = _dataset()  # record 0: feature b has a removed run of 3 steps, a and c none
    assert band_feature(dataset, 0) == 1
    x, x_ori = dataset.X.copy(), dataset.X_ori.copy()
    x[0, 1:9, 2] = x_ori[0, 1:9, 2] = np.nan  # a longer gap in c, but without ground truth in it
    assert band_feature(dataset.replace(X=x, X_ori=x_ori), 0) == 1
    x[0, :, 1] = np.nan  # b never observed: no band to show
    assert band_feature(TimeSeriesDataset(X=x, X_ori=None, name="toy"), 0) == 2  # no ground truth: longest gap
    assert band_example(dataset) == (0, 1) and band_example_score(dataset, 1, 1) == -1  # record 1: nothing removed
