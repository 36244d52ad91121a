"""Figure-3c-like uncertainty plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from gapray.data.dataset import TimeSeriesDataset
from gapray.imputation.plotting import plot_imputation_band


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
