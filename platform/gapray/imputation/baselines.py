"""Non-learned baselines with the same API as the models: per-feature mean and LOCF."""

from __future__ import annotations

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.metrics import masked_mae, masked_mre


class _Baseline:
    def __init__(self) -> None:
        self.feature_mean: np.ndarray | None = None

    def fit(self, train: TimeSeriesDataset, val: TimeSeriesDataset | None = None) -> list[dict[str, float]]:
        """Per-feature mean of the observed training values (0 for a never-observed feature)."""
        from gapray.imputation.base import check_dataset

        train = check_dataset(train, "train")
        values = train.X.reshape(-1, train.n_features).astype(np.float64)
        observed = ~np.isnan(values)
        counts = observed.sum(axis=0)
        sums = np.where(observed, values, 0.0).sum(axis=0)
        self.feature_mean = np.divide(sums, counts, out=np.zeros(train.n_features), where=counts > 0).astype(
            np.float32)
        return []

    def _check(self, data: TimeSeriesDataset | np.ndarray, need_ground_truth: bool = False) -> TimeSeriesDataset:
        from gapray.imputation.base import check_dataset

        if self.feature_mean is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        return check_dataset(data, "test", self.feature_mean.shape[0], need_ground_truth)

    def _impute(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, test: TimeSeriesDataset | np.ndarray) -> dict[str, np.ndarray]:
        return {"imputation": self._impute(self._check(test).X)}

    def impute(self, test: TimeSeriesDataset | np.ndarray) -> np.ndarray:
        return self.predict(test)["imputation"]

    def evaluate(self, test: TimeSeriesDataset) -> dict[str, float]:
        data = self._check(test, need_ground_truth=True)
        imputation = self._impute(data.X)
        if data.X_ori is None:
            raise DatasetError("test has no X_ori")
        mask = data.indicating_mask
        return {"mae": masked_mae(imputation, data.X_ori, mask), "mre": masked_mre(imputation, data.X_ori, mask)}


class MeanImputer(_Baseline):
    """Fill every missing value with its feature's training mean."""

    def _impute(self, X: np.ndarray) -> np.ndarray:
        assert self.feature_mean is not None
        return np.where(np.isnan(X), self.feature_mean, X).astype(np.float32)


class LOCFImputer(_Baseline):
    """Last observation carried forward; steps before a feature's first observation get its training mean."""

    def _impute(self, X: np.ndarray) -> np.ndarray:
        assert self.feature_mean is not None
        n, t, d = X.shape
        observed = ~np.isnan(X)
        steps = np.where(observed, np.arange(t)[None, :, None], -1)
        last = np.maximum.accumulate(steps, axis=1)  # index of the last observation at or before t
        carried = np.take_along_axis(np.nan_to_num(X), np.maximum(last, 0), axis=1)
        return np.where(last >= 0, carried, self.feature_mean).astype(np.float32)
