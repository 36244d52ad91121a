"""Figure-3c-like plot of one imputed variable with its uncertainty band (DEARI Fig. 3c).

One variable of one record over time: observed values (dots), the artificially removed ground
truth (crosses), the imputation (line) and its interval (shaded band). Drawn with matplotlib's
object API on an Agg canvas (no global backend change, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gapray.data.dataset import TimeSeriesDataset


def longest_gaps(missing: np.ndarray) -> np.ndarray:
    """Length of the longest run of ``True`` along axis 0 (time) of ``missing`` ``[T, D]``, per column."""
    missing = np.asarray(missing, dtype=bool)
    run = np.zeros(missing.shape[1:], dtype=np.int64)
    best = np.zeros_like(run)
    for step in missing:
        run = np.where(step, run + 1, 0)
        best = np.maximum(best, run)
    return best


def band_feature(dataset: TimeSeriesDataset, record: int) -> int:
    """The variable of ``record`` that shows the band best: among variables with artificially
    removed ground truth (else all), the one with the longest gap of missing steps that is not the
    whole series, ties broken by the number of removed entries."""
    missing = np.isnan(dataset.X[record])
    gaps = longest_gaps(missing)
    gaps = np.where(gaps >= missing.shape[0], -1, gaps)  # a variable never observed has no band to show
    removed = dataset.indicating_mask[record].sum(axis=0)
    candidates = np.flatnonzero(removed > 0) if (removed > 0).any() else np.arange(missing.shape[1])
    return int(max(candidates, key=lambda d: (gaps[d], removed[d])))


def plot_imputation_band(
    dataset: TimeSeriesDataset,
    prediction: dict[str, np.ndarray],
    record: int,
    feature: int | str,
    path: str | Path,
    title: str | None = None,
    label: str = "interval",
) -> Path:
    """Write the plot of ``dataset`` record ``record``, variable ``feature`` (index or name) as PNG.

    ``prediction`` holds ``imputation`` and, for the band, ``lower``/``upper`` (``[N, T, D]``,
    same scale as ``dataset.X``): ``predict``'s calibrated interval by default, which widens where
    the imputation is less certain (long gaps, variables imputed less well). Ground truth comes
    from ``dataset.X_ori`` where present; :func:`band_feature` picks a variable with a long gap.
    Returns the written path.
    """
    n, t, d = dataset.X.shape
    if not 0 <= record < n:
        raise ValueError(f"record {record} out of range: {dataset.name} has {n} records")
    if isinstance(feature, str):
        if feature not in dataset.feature_names:
            raise ValueError(f"feature {feature!r} not among {dataset.name}'s features {dataset.feature_names}")
        feature_index = dataset.feature_names.index(feature)
    else:
        feature_index = int(feature)
        if not 0 <= feature_index < d:
            raise ValueError(f"feature {feature} out of range: {dataset.name} has {d} features")
    for key in ("imputation", "lower", "upper"):
        if key in prediction and np.shape(prediction[key]) != (n, t, d):
            raise ValueError(f"prediction[{key!r}] has shape {np.shape(prediction[key])}, expected {(n, t, d)}")
    if "imputation" not in prediction:
        raise ValueError("prediction has no 'imputation'")

    times = dataset.times[record] if dataset.times is not None else np.arange(t, dtype=float)
    observed = dataset.X[record, :, feature_index]
    name = dataset.feature_names[feature_index] if dataset.feature_names else f"feature {feature_index}"

    figure = Figure(figsize=(8, 3.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if "lower" in prediction and "upper" in prediction:
        axes.fill_between(
            times,
            prediction["lower"][record, :, feature_index],
            prediction["upper"][record, :, feature_index],
            color="tab:blue",
            alpha=0.3,
            linewidth=0,
            label=label,
        )
    axes.plot(times, prediction["imputation"][record, :, feature_index], color="tab:blue", label="imputation")
    seen = ~np.isnan(observed)
    axes.scatter(times[seen], observed[seen], color="black", s=14, zorder=3, label="observed")
    if dataset.X_ori is not None:
        removed = dataset.indicating_mask[record, :, feature_index] > 0
        if removed.any():
            axes.scatter(
                times[removed],
                dataset.X_ori[record, removed, feature_index],
                color="tab:red",
                marker="x",
                s=30,
                zorder=4,
                label="removed (ground truth)",
            )
    axes.set_xlabel("time")
    axes.set_ylabel(name)
    record_name = dataset.record_ids[record] if dataset.record_ids is not None else record
    axes.set_title(title or f"{dataset.name}: record {record_name}, {name}")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
