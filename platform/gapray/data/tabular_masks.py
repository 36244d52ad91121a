"""MAR and MNAR masks for tabular and image data (GIL Sec. 4.4, MNIST "MAR").

GIL (Sec. 4.4) tests MNIST under MAR, "which assumes part of the image is always observable
and the positions of missing pixels are determined by a distribution conditioned on features
extracted from the observable portion following Mattei & Frellsen (2019)", so that "entire
rows of pixels could be missing". The paper gives no further detail; we use the standard
logistic construction of that line of work (Mattei & Frellsen 2019; Muzellec et al. 2020,
``MAR_mask``/``MNAR_self_mask_logistic``):

* :func:`mar_logistic_mask`: a set of features is always observed; each remaining *group*
  of features (a pixel row for images, a single feature for tables) is removed as a whole
  with probability ``sigmoid(z_obs . w_g + b_g)``, where ``z_obs`` are the sample's
  always-observed features (z-scored over the samples), ``w_g ~ N(0, 1)`` scaled so the logit
  has unit standard deviation, and the intercept ``b_g`` is solved by bisection so that the
  group's mean removal probability equals ``rate``. The mask is a function of the observed
  part only (and the seed): missing at random by construction.
* :func:`mnar_self_masking_mask`: each entry is removed with probability
  ``sigmoid(strength * z_ij + b_j)`` of its *own* standardised value (self-masking MNAR),
  intercepts per feature solved for ``rate``.

``rate`` is the expected fraction removed of the entries that *can* be removed (for MAR: of
the non-always-observed ones), as in Muzellec et al.; the dataset-level functions report the
overall fraction in ``extra["mask_rate_overall"]``. Already-missing entries stay missing and
are replaced by the feature mean (0 after z-scoring) where they feed the logistic model.
"""

from __future__ import annotations

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.masking import as_generator


def _check(rate: float) -> None:
    if not 0.0 < rate < 1.0:
        raise DatasetError(f"mask rate must be in (0, 1), got {rate}")


def _zscore(values: np.ndarray) -> np.ndarray:
    """Column-wise z-scores over the observed values; missing (NaN) entries become 0."""
    mean = np.nanmean(values, axis=0) if values.size else np.zeros(values.shape[1])
    std = np.nanstd(values, axis=0)
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return np.nan_to_num((values - mean) / std)


def fit_intercepts(logits: np.ndarray, rate: float, iterations: int = 60) -> np.ndarray:
    """Per-column intercepts ``b`` with ``mean_n sigmoid(logits[n, j] + b_j) = rate`` (bisection).

    The mean is increasing in ``b``, so bisection on ``[-50, 50]`` converges for every column.
    """
    low = np.full(logits.shape[1], -50.0)
    high = np.full(logits.shape[1], 50.0)
    for _ in range(iterations):
        middle = (low + high) / 2.0
        too_high = _sigmoid(logits + middle).mean(axis=0) > rate
        high = np.where(too_high, middle, high)
        low = np.where(too_high, low, middle)
    return (low + high) / 2.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def mar_logistic_mask(
    values: np.ndarray,
    rate: float,
    always_observed: np.ndarray,
    groups: np.ndarray | None = None,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Boolean removal mask ``[N, D]`` for MAR missingness driven by the always-observed features.

    Args:
        values: ``[N, D]`` data (NaN = already missing).
        rate: expected fraction of each group's entries to remove, in (0, 1).
        always_observed: boolean ``[D]``; these features are never removed and drive the model.
        groups: integer ``[D]`` group id per feature; features of one group are removed
            together (pixel rows). Ignored for always-observed features. Default: one
            group per feature.
        seed: seed or generator.
    """
    _check(rate)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DatasetError(f"values must be [N, D], got shape {values.shape}")
    n_samples, n_features = values.shape
    always_observed = np.asarray(always_observed, dtype=bool)
    if always_observed.shape != (n_features,):
        raise DatasetError(f"always_observed has shape {always_observed.shape}, expected ({n_features},)")
    if not always_observed.any() or always_observed.all():
        raise DatasetError("always_observed must mark some, but not all, features")
    groups = np.arange(n_features) if groups is None else np.asarray(groups)
    if groups.shape != (n_features,):
        raise DatasetError(f"groups has shape {groups.shape}, expected ({n_features},)")
    rng = as_generator(seed)
    group_ids, group_of = np.unique(groups[~always_observed], return_inverse=True)
    observed = _zscore(values[:, always_observed])
    weights = rng.normal(size=(observed.shape[1], group_ids.size))
    logits = observed @ weights
    scale = logits.std(axis=0)
    logits = logits / np.where(scale > 0, scale, 1.0)
    probabilities = _sigmoid(logits + fit_intercepts(logits, rate))
    remove_group = rng.random((n_samples, group_ids.size)) < probabilities
    remove = np.zeros((n_samples, n_features), dtype=bool)
    remove[:, ~always_observed] = remove_group[:, group_of]
    return remove


def mnar_self_masking_mask(
    values: np.ndarray,
    rate: float,
    strength: float = 2.0,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Boolean removal mask ``[N, D]``: ``P(remove x_ij) = sigmoid(strength * z_ij + b_j)``.

    ``z_ij`` is the value z-scored per feature; ``strength > 0`` removes large values more
    often (``< 0``: small ones). Already-missing entries are never selected again.
    """
    _check(rate)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DatasetError(f"values must be [N, D], got shape {values.shape}")
    rng = as_generator(seed)
    logits = strength * _zscore(values)
    probabilities = _sigmoid(logits + fit_intercepts(logits, rate))
    return (rng.random(values.shape) < probabilities) & ~np.isnan(values)


def _apply(dataset: TimeSeriesDataset, remove: np.ndarray, label: str) -> TimeSeriesDataset:
    original = dataset.X if dataset.X_ori is None else dataset.X_ori
    X = dataset.X.copy()
    X.reshape(len(dataset), -1)[remove] = np.nan
    extra = dict(dataset.extra)
    extra["mask_mechanism"] = label
    extra["mask_rate_overall"] = np.asarray(remove.mean())
    return dataset.replace(X=X, X_ori=original.copy(), extra=extra)


def mar(
    dataset: TimeSeriesDataset,
    rate: float,
    always_observed: np.ndarray,
    groups: np.ndarray | None = None,
    seed: int | np.random.Generator | None = None,
) -> TimeSeriesDataset:
    """MAR logistic masking of a dataset's flattened features ``[N, T*D]`` (:func:`mar_logistic_mask`)."""
    flat = dataset.X.reshape(len(dataset), -1)
    return _apply(dataset, mar_logistic_mask(flat, rate, always_observed, groups, seed), "mar")


def mnar_self_masking(
    dataset: TimeSeriesDataset,
    rate: float,
    strength: float = 2.0,
    seed: int | np.random.Generator | None = None,
) -> TimeSeriesDataset:
    """Self-masking MNAR on a dataset's flattened features (:func:`mnar_self_masking_mask`)."""
    flat = dataset.X.reshape(len(dataset), -1)
    return _apply(dataset, mnar_self_masking_mask(flat, rate, strength, seed), "mnar")


def image_mar(
    dataset: TimeSeriesDataset,
    rate: float = 0.5,
    observed_rows: int | None = None,
    seed: int | np.random.Generator | None = None,
) -> TimeSeriesDataset:
    """GIL's MNIST MAR: the top ``observed_rows`` pixel rows are always observed; each other row is
    removed whole with a logistic probability of the observed pixels, ``rate`` of them on average.

    The image shape comes from ``extra["image_shape"]`` (set by ``load_mnist``/``load_digits``)
    or a square of ``D`` pixels; ``observed_rows`` defaults to the top half.
    """
    shape = dataset.extra.get("image_shape")
    n_pixels = dataset.n_steps * dataset.n_features
    if shape is None:
        side = int(round(np.sqrt(n_pixels)))
        shape = (side, side)
    height, width = (int(s) for s in np.asarray(shape))
    if height * width != n_pixels:
        raise DatasetError(f"{dataset.name}: image shape {height}x{width} does not match {n_pixels} features")
    observed_rows = height // 2 if observed_rows is None else observed_rows
    if not 0 < observed_rows < height:
        raise DatasetError(f"observed_rows must be in [1, {height - 1}], got {observed_rows}")
    rows = np.repeat(np.arange(height), width)
    return mar(dataset, rate, always_observed=rows < observed_rows, groups=rows, seed=seed)
