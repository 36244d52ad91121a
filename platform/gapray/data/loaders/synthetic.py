"""A small synthetic multivariate series generator for quick tests (no files needed)."""

from __future__ import annotations

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset


def make_synthetic(
    n_samples: int = 256,
    n_steps: int = 24,
    n_features: int = 6,
    missing_rate: float = 0.2,
    seed: int = 0,
    n_latent: int = 3,
    noise: float = 0.1,
) -> TimeSeriesDataset:
    """Sine mixtures with correlated features, MCAR missingness and a label rule.

    Each sample has ``n_latent`` sinusoids ``sin(2 pi f_k t / n_steps + phi_k)`` with its own
    frequencies ``f_k ~ U(0.5, 3)`` and phases; every feature is a fixed linear mix of them
    (one mixing matrix for the dataset, so features are correlated) plus Gaussian ``noise``.
    Label ``y = 1`` when the sample's first latent frequency exceeds the median of ``U(0.5, 3)``
    (1.75), so a model can learn it from the series. Each entry is then missing with
    probability ``missing_rate``; the complete values are kept in ``extra["X_complete"]``.
    """
    if not 0.0 <= missing_rate < 1.0:
        raise DatasetError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if min(n_samples, n_steps, n_features, n_latent) < 1:
        raise DatasetError("n_samples, n_steps, n_features and n_latent must be positive")
    rng = np.random.default_rng(seed)
    frequency = rng.uniform(0.5, 3.0, size=(n_samples, n_latent))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n_samples, n_latent))
    t = np.arange(n_steps, dtype=np.float64)
    latent = np.sin(2.0 * np.pi * frequency[:, None, :] * t[None, :, None] / n_steps + phase[:, None, :])
    mixing = rng.normal(size=(n_latent, n_features))
    complete = latent @ mixing + noise * rng.normal(size=(n_samples, n_steps, n_features))
    X = complete.copy()
    X[rng.random(X.shape) < missing_rate] = np.nan
    y = (frequency[:, 0] > 1.75).astype(np.int64)
    times = np.broadcast_to(t.astype(np.float32), (n_samples, n_steps)).copy()
    return TimeSeriesDataset(X=X.astype(np.float32), y=y, times=times, name="synthetic",
                             extra={"X_complete": complete.astype(np.float32)})
