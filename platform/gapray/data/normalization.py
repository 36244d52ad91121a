"""Per-feature z-scoring fitted on the training set's observed values (both protocols)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` per feature; mean and std over the observed training values.

    A feature never observed in training gets mean 0 and std 1; a constant one gets std 1.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, dataset: TimeSeriesDataset) -> Standardizer:
        values = dataset.X.reshape(-1, dataset.n_features).astype(np.float64)
        observed = ~np.isnan(values)
        counts = observed.sum(axis=0)
        safe = np.where(observed, values, 0.0)
        mean = np.divide(safe.sum(axis=0), counts, out=np.zeros(dataset.n_features), where=counts > 0)
        var = np.divide(((safe - mean) ** 2 * observed).sum(axis=0), counts, out=np.ones(dataset.n_features),
                        where=counts > 0)
        std = np.sqrt(var)
        std[(std < 1e-8) | (counts == 0)] = 1.0
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    def _check(self, dataset: TimeSeriesDataset) -> None:
        if dataset.n_features != self.mean.shape[0]:
            raise DatasetError(
                f"{dataset.name}: {dataset.n_features} features, the standardizer was fitted on {self.mean.shape[0]}"
            )

    def transform(self, dataset: TimeSeriesDataset) -> TimeSeriesDataset:
        self._check(dataset)
        X_ori = None if dataset.X_ori is None else (dataset.X_ori - self.mean) / self.std
        return dataset.replace(X=(dataset.X - self.mean) / self.std, X_ori=X_ori)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Back to original units, for arrays whose last axis is the feature axis."""
        return values * self.std + self.mean
