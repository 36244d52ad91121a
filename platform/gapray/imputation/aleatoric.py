"""Aleatoric scale of an imputed entry, learned from randomly masked entries (DEARI sec. 4.3).

BRITS/DEARI train on a masked MAE: the negative log-likelihood of a Laplace distribution with
scale 1, the data term ``-log P(X | W)`` of Eq. 26. Its scale is the aleatoric uncertainty,
which the paper says is "captured by the random masking approach". We estimate it per entry
on the entries the random masking removed from the *training* records (the ``deari``
protocol's ground truth: the model never saw them), by maximum likelihood of the Laplace
density ``|e| / b + log(2 b)`` with a log-linear scale::

    log b = intercept + a_feature + c_gap + alpha * log(aleatoric_spread + SPREAD_FLOOR)

- ``a_feature``: one offset per variable (a heart rate is imputed more tightly than a troponin);
- ``c_gap``: one offset per gap-length bucket (:data:`gapray.imputation.uncertainty.GAP_EDGES`,
  the distance to the nearest observation of the variable);
- ``aleatoric_spread``: the spread of the aleatoric Monte Carlo passes
  (:func:`gapray.imputation.predictive.masked_passes`): per record, how much the imputation
  moves when a random part of the inputs is masked.

The negative log-likelihood is convex in the coefficients (``|e| exp(-eta) + eta`` with ``eta``
linear in them); it is minimised with L-BFGS in float64, with a small ridge on the offsets so
that a variable or bucket without training entries falls back to the intercept. Measured on
PhysioNet validation (Spearman of the scale with the absolute error): feature and gap alone
0.27, with the masking spread 0.35; the masking spread alone 0.21
(``benchmarks/results/bayesian_diagnosis.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gapray.imputation.uncertainty import GAP_EDGES

SPREAD_FLOOR = 1e-4
"""Added to the masking spread before the log (a spread of 0 would give ``log 0``)."""
RIDGE = 1e-4
"""L2 penalty on the feature and gap offsets (not on the intercept and ``alpha``)."""
LAPLACE_STD = math.sqrt(2.0)
"""Standard deviation of a Laplace distribution of scale 1."""


def _design(features: np.ndarray, gaps: np.ndarray, spread: np.ndarray, n_features: int) -> torch.Tensor:
    """``[n, 1 + D + G + 1]``: intercept, feature one-hot, gap-bucket one-hot, log spread."""
    n_gaps = len(GAP_EDGES) + 1
    if features.min(initial=0) < 0 or features.max(initial=0) >= n_features:
        raise ValueError(f"feature indices must lie in [0, {n_features}), got {features.min()}..{features.max()}")
    columns = np.zeros((features.size, 2 + n_features + n_gaps))
    rows = np.arange(features.size)
    columns[:, 0] = 1.0
    columns[rows, 1 + features] = 1.0
    columns[rows, 1 + n_features + np.clip(gaps, 0, n_gaps - 1)] = 1.0
    columns[:, -1] = np.log(np.asarray(spread, dtype=np.float64) + SPREAD_FLOOR)
    return torch.from_numpy(columns)


@dataclass(frozen=True)
class LaplaceScaleModel:
    """Coefficients of ``log b`` (see the module docstring); :meth:`std` gives ``sqrt(2) b``."""

    coefficients: np.ndarray
    """``[1 + D + G + 1]``: intercept, per-feature offsets, per-gap-bucket offsets, ``alpha``."""
    n_features: int
    """``D``, the number of variables."""

    @classmethod
    def fit(cls, errors: np.ndarray, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray,
            n_features: int) -> LaplaceScaleModel:
        """Maximum likelihood (Laplace, log-linear scale) on absolute errors of held-out entries.

        All arguments are 1-D over the entries: ``|imputation - truth|``, the variable index, the
        gap bucket (:func:`gapray.imputation.uncertainty.gap_groups`) and the masking spread.
        """
        errors = np.asarray(errors, dtype=np.float64)
        if errors.ndim != 1 or errors.size == 0:
            raise ValueError(f"errors must be a non-empty 1-D array, got shape {errors.shape}")
        if not (np.shape(features) == np.shape(gaps) == np.shape(spread) == errors.shape):
            raise ValueError(f"errors {errors.shape}, features {np.shape(features)}, gaps {np.shape(gaps)} and "
                             f"spread {np.shape(spread)} must have the same shape")
        design = _design(np.asarray(features), np.asarray(gaps), np.asarray(spread), n_features)
        target = torch.from_numpy(errors)
        theta = torch.zeros(design.shape[1], dtype=torch.float64)
        theta[0] = math.log(max(float(errors.mean()), 1e-6))
        theta.requires_grad_(True)
        penalised = torch.ones_like(theta)
        penalised[0] = penalised[-1] = 0.0
        optimizer = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            eta = design @ theta
            loss = (target * torch.exp(-eta) + eta).mean() + RIDGE * (penalised * theta.pow(2)).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(theta.detach().numpy().copy(), n_features)

    def scale(self, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Laplace scale ``b`` per entry (same shape as the inputs)."""
        shape = np.shape(features)
        design = _design(np.asarray(features).ravel(), np.asarray(gaps).ravel(), np.asarray(spread).ravel(),
                         self.n_features)
        return np.exp(design.numpy() @ self.coefficients).reshape(shape)

    def std(self, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Standard deviation ``sqrt(2) b`` of the Laplace noise per entry."""
        return LAPLACE_STD * self.scale(features, gaps, spread)

    def to_state(self) -> dict[str, object]:
        return {"coefficients": torch.from_numpy(self.coefficients.astype(np.float64)), "n_features": self.n_features}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> LaplaceScaleModel:
        n_features = state["n_features"]
        assert isinstance(n_features, int)
        return cls(np.asarray(state["coefficients"], dtype=np.float64), n_features)
