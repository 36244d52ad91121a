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


def longest_gaps(missing: np.ndarray, interior: bool = False) -> np.ndarray:
    """Length of the longest run of ``True`` along axis 0 (time) of ``missing`` ``[T, D]``, per
    column; ``interior=True`` counts only runs with an observation on both sides."""
    missing = np.asarray(missing, dtype=bool)
    run = np.zeros(missing.shape[1:], dtype=np.int64)
    best = np.zeros_like(run)
    seen = np.zeros(missing.shape[1:], dtype=bool)  # an observation before the current run
    for step in missing:
        if interior:
            best = np.where(~step & seen, np.maximum(best, run), best)
        else:
            best = np.maximum(best, np.where(step, run + 1, 0))
        run = np.where(step, run + 1, 0)
        seen |= ~step
    return best


def band_example_score(dataset: TimeSeriesDataset, record: int, feature: int) -> int:
    """How well ``record``'s variable ``feature`` shows a band widening over a gap: its longest gap
    bounded by observations on both sides (at most 12 steps counted), then its number of
    observations; -1 without artificially removed ground truth or with fewer than 3 observations."""
    missing = np.isnan(dataset.X[record, :, feature])
    if not dataset.indicating_mask[record, :, feature].any() or (~missing).sum() < 3:
        return -1
    gap = int(longest_gaps(missing[:, None], interior=True)[0])
    return 100 * min(gap, 12) + int((~missing).sum())


def band_feature(dataset: TimeSeriesDataset, record: int) -> int:
    """The variable of ``record`` that shows the band best (:func:`band_example_score`); without
    any removed ground truth, the one with the longest gap that is not the whole series."""
    scores = [band_example_score(dataset, record, d) for d in range(dataset.X.shape[2])]
    if max(scores) >= 0:
        return int(np.argmax(scores))
    missing = np.isnan(dataset.X[record])
    gaps = longest_gaps(missing)
    return int(np.argmax(np.where(gaps >= missing.shape[0], -1, gaps)))


def band_example(dataset: TimeSeriesDataset) -> tuple[int, int]:
    """``(record, feature)`` of ``dataset`` with the best :func:`band_example_score`."""
    best = max((band_example_score(dataset, r, d), -r, d) for r in range(len(dataset))
                for d in range(dataset.X.shape[2]))
    return -best[1], best[2]


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
    # below the axes, so that it never hides a point or the band
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize="small", frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path
