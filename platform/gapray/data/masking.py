"""Artificial missingness: the evaluation protocols' ground-truth removal and tabular masks.

Every function takes an explicit ``numpy.random.Generator`` (or a seed) so results are
reproducible; none modifies its input.
"""

from __future__ import annotations

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, or the generator itself."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise DatasetError(f"mask rate must be in [0, 1), got {rate}")


def remove_observed_per_sample(
    dataset: TimeSeriesDataset,
    rate: float,
    seed: int | np.random.Generator | None = None,
    with_replacement: bool = True,
) -> TimeSeriesDataset:
    """BRITS/DEARI protocol: remove ``rate`` of each sample's observed values as ground truth.

    For each sample, ``floor(rate * n_observed)`` positions are drawn among its observed
    entries; ``with_replacement=True`` reproduces the reference's ``np.random.choice`` (so a
    little under ``rate`` distinct values go). The returned dataset has the removed entries set
    to NaN in ``X`` and the untouched values in ``X_ori``; the removed entries are its
    :attr:`~TimeSeriesDataset.indicating_mask`.
    """
    _check_rate(rate)
    rng = as_generator(seed)
    original = dataset.X if dataset.X_ori is None else dataset.X_ori
    X = dataset.X.copy()
    flat = X.reshape(len(dataset), -1)
    for n in range(len(dataset)):
        observed = np.flatnonzero(~np.isnan(flat[n]))
        n_remove = int(np.floor(rate * observed.size))
        if n_remove == 0:
            continue
        chosen = rng.choice(observed, n_remove, replace=with_replacement)
        flat[n, chosen] = np.nan
    return dataset.replace(X=X, X_ori=original.copy())


def mcar(
    dataset: TimeSeriesDataset,
    rate: float,
    seed: int | np.random.Generator | None = None,
) -> TimeSeriesDataset:
    """Missing completely at random: each observed entry is removed with probability ``rate``.

    As PyPOTS/pygrinder's ``mcar`` (TSI-Bench protocol); removed entries become the ground truth.
    """
    _check_rate(rate)
    rng = as_generator(seed)
    original = dataset.X if dataset.X_ori is None else dataset.X_ori
    X = dataset.X.copy()
    X[rng.random(X.shape) < rate] = np.nan
    return dataset.replace(X=X, X_ori=original.copy())
