"""Seeded holdout and k-fold splits, and the two named evaluation protocols (DESIGN.md sec. 2).

- ``deari`` (reference CSAI/DEARI code): 5 folds over a seeded permutation; fold ``k``'s
  held-out fifth is halved into validation (10 %) and test (10 %), the rest (80 %) trains.
  z-score with the training set's observed values, then remove ``rate`` of every sample's
  observed values in train, validation and test (:func:`remove_observed_per_sample`).
- ``pypots`` (TSI-Bench): stratified 80/20 train/test, then 80/20 train/validation;
  standardise on train; MCAR at ``rate`` on validation and test only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.masking import as_generator, mcar, remove_observed_per_sample
from gapray.data.normalization import Standardizer

Protocol = Literal["deari", "pypots"]


@dataclass(frozen=True)
class Split:
    """Train/validation/test datasets of one fold and the standardiser fitted on train."""

    train: TimeSeriesDataset
    val: TimeSeriesDataset
    test: TimeSeriesDataset
    standardizer: Standardizer
    protocol: str
    fold: int


def _stratify_labels(dataset: TimeSeriesDataset, stratify: bool) -> np.ndarray | None:
    if not stratify or dataset.y is None or not np.issubdtype(dataset.y.dtype, np.integer):
        return None
    return dataset.y


def holdout_indices(
    n_samples: int, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (optionally stratified) train/test index split."""
    from sklearn.model_selection import train_test_split  # deferred: keeps `gapray` start-up fast

    if n_samples < 2:
        raise DatasetError(f"cannot split a dataset of {n_samples} samples")
    index = np.arange(n_samples)
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def kfold_indices(
    n_samples: int, n_folds: int, seed: int, labels: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (optionally stratified) k-fold ``(train, held_out)`` index pairs."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if n_samples < n_folds:
        raise DatasetError(f"cannot make {n_folds} folds from {n_samples} samples")
    index = np.arange(n_samples)
    if labels is not None:
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(index, labels)
    else:
        folds = KFold(n_folds, shuffle=True, random_state=seed).split(index)
    return [(np.sort(a), np.sort(b)) for a, b in folds]


def imputation_split(
    dataset: TimeSeriesDataset,
    protocol: Protocol = "deari",
    rate: float = 0.1,
    seed: int = 0,
    fold: int = 0,
    n_folds: int = 5,
    stratify: bool = True,
) -> Split:
    """Standardised train/val/test of one fold under a named protocol, ground truth removed."""
    labels = _stratify_labels(dataset, stratify)
    rng = as_generator(seed)
    if protocol == "deari":
        if not 0 <= fold < n_folds:
            raise DatasetError(f"fold must be in [0, {n_folds}), got {fold}")
        train_idx, held_idx = kfold_indices(len(dataset), n_folds, seed, labels)[fold]
        held_labels = None if labels is None else labels[held_idx]
        val_pos, test_pos = holdout_indices(len(held_idx), 0.5, seed, held_labels)
        parts = [dataset.subset(train_idx), dataset.subset(held_idx[val_pos]), dataset.subset(held_idx[test_pos])]
        standardizer = Standardizer.fit(parts[0])
        train, val, test = (remove_observed_per_sample(standardizer.transform(p), rate, rng) for p in parts)
    elif protocol == "pypots":
        rest_idx, test_idx = holdout_indices(len(dataset), 0.2, seed, labels)
        rest_labels = None if labels is None else labels[rest_idx]
        train_pos, val_pos = holdout_indices(len(rest_idx), 0.2, seed, rest_labels)
        train = dataset.subset(rest_idx[train_pos])
        standardizer = Standardizer.fit(train)
        train = standardizer.transform(train)
        val = mcar(standardizer.transform(dataset.subset(rest_idx[val_pos])), rate, rng)
        test = mcar(standardizer.transform(dataset.subset(test_idx)), rate, rng)
    else:
        raise DatasetError(f"protocol must be 'deari' or 'pypots', got {protocol!r}")
    return Split(train=train, val=val, test=test, standardizer=standardizer, protocol=protocol, fold=fold)
