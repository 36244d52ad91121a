"""Aleatoric scale of an imputed entry, learned from randomly masked entries (DEARI sec. 4.3).

BRITS/DEARI train on a masked MAE: the negative log-likelihood of a Laplace distribution with
scale 1, the data term ``-log P(X | W)`` of Eq. 26. Its scale is the aleatoric uncertainty,
which the paper says is "captured by the random masking approach". We estimate it per entry
on the entries the random masking removed from the *training* records (the ``deari``
protocol's ground truth: the model never saw them), by maximum likelihood of the Laplace
density ``|e| / b + log(2 b)`` with a log-linear scale::

    log b = intercept + a_feature + c_gap + alpha * log(aleatoric_spread + SPREAD_FLOOR)
            [+ beta * x + (gamma + g_feature) * |x|]

- ``a_feature``: one offset per variable (a heart rate is imputed more tightly than a troponin);
- ``c_gap``: one offset per gap-length bucket (:data:`gapray.imputation.uncertainty.GAP_EDGES`,
  the distance to the nearest observation of the variable);
- ``aleatoric_spread``: the spread of the aleatoric Monte Carlo passes
  (:func:`gapray.imputation.predictive.masked_passes`): per record, how much the imputation
  moves when a random part of the inputs is masked;
- optionally (``level``) the imputed value ``x`` itself (a z-score): noise that grows with the
  level, e.g. pollutant concentrations or lab values far from normal, with one slope of ``|x|``
  per variable on top of a common one.

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


N_GAPS = len(GAP_EDGES) + 1


def _design(features: np.ndarray, gaps: np.ndarray, spread: np.ndarray, n_features: int,
            level: np.ndarray | None = None) -> torch.Tensor:
    """``[n, 1 + D + G + 1 (+ 2 + D)]``: intercept, feature one-hot, gap-bucket one-hot, log spread
    (and with ``level``: ``x``, ``|x|``, feature one-hot times ``|x|``)."""
    if features.min(initial=0) < 0 or features.max(initial=0) >= n_features:
        raise ValueError(f"feature indices must lie in [0, {n_features}), got {features.min()}..{features.max()}")
    base = 2 + n_features + N_GAPS
    columns = np.zeros((features.size, base + (0 if level is None else 2 + n_features)))
    rows = np.arange(features.size)
    columns[:, 0] = 1.0
    columns[rows, 1 + features] = 1.0
    columns[rows, 1 + n_features + np.clip(gaps, 0, N_GAPS - 1)] = 1.0
    columns[:, base - 1] = np.log(np.asarray(spread, dtype=np.float64) + SPREAD_FLOOR)
    if level is not None:
        x = np.asarray(level, dtype=np.float64)
        columns[:, base] = x
        columns[:, base + 1] = np.abs(x)
        columns[rows, base + 2 + features] = np.abs(x)
    return torch.from_numpy(columns)


@dataclass(frozen=True)
class LaplaceScaleModel:
    """Coefficients of ``log b`` (see the module docstring); :meth:`std` gives ``sqrt(2) b``."""

    coefficients: np.ndarray
    """``[1 + D + G + 1]``: intercept, per-feature offsets, per-gap-bucket offsets, ``alpha``; with
    the level also ``beta``, ``gamma`` and the per-feature ``|x|`` slopes."""
    n_features: int
    """``D``, the number of variables."""
    uses_level: bool = False
    """Whether the scale depends on the imputed value (``level`` in :meth:`fit`)."""

    @classmethod
    def fit(cls, errors: np.ndarray, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray,
            n_features: int, level: np.ndarray | None = None) -> LaplaceScaleModel:
        """Maximum likelihood (Laplace, log-linear scale) on absolute errors of held-out entries.

        All arguments are 1-D over the entries: ``|imputation - truth|``, the variable index, the
        gap bucket (:func:`gapray.imputation.uncertainty.gap_groups`), the masking spread and,
        optionally, the imputed value.
        """
        errors = np.asarray(errors, dtype=np.float64)
        if errors.ndim != 1 or errors.size == 0:
            raise ValueError(f"errors must be a non-empty 1-D array, got shape {errors.shape}")
        if not (np.shape(features) == np.shape(gaps) == np.shape(spread) == errors.shape):
            raise ValueError(f"errors {errors.shape}, features {np.shape(features)}, gaps {np.shape(gaps)} and "
                             f"spread {np.shape(spread)} must have the same shape")
        if level is not None and np.shape(level) != errors.shape:
            raise ValueError(f"level {np.shape(level)} must have the shape of errors {errors.shape}")
        design = _design(np.asarray(features), np.asarray(gaps), np.asarray(spread), n_features, level)
        target = torch.from_numpy(errors)
        theta = torch.zeros(design.shape[1], dtype=torch.float64)
        theta[0] = math.log(max(float(errors.mean()), 1e-6))
        theta.requires_grad_(True)
        penalised = torch.ones_like(theta)
        penalised[0] = penalised[1 + n_features + N_GAPS] = 0.0  # intercept and alpha
        if level is not None:
            penalised[2 + n_features + N_GAPS:4 + n_features + N_GAPS] = 0.0  # beta, gamma
        optimizer = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            eta = design @ theta
            loss = (target * torch.exp(-eta) + eta).mean() + RIDGE * (penalised * theta.pow(2)).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(theta.detach().numpy().copy(), n_features, level is not None)

    @property
    def alpha(self) -> float:
        """Exponent of the masking spread."""
        return float(self.coefficients[1 + self.n_features + N_GAPS])

    def scale(self, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray,
              level: np.ndarray | None = None) -> np.ndarray:
        """Laplace scale ``b`` per entry (same shape as the inputs); ``level`` (the imputed values)
        is required exactly when the model was fitted with it."""
        if (level is not None) != self.uses_level:
            raise ValueError(f"this scale model was fitted {'with' if self.uses_level else 'without'} the level: "
                             f"pass level={'the imputed values' if self.uses_level else 'None'}")
        shape = np.shape(features)
        design = _design(np.asarray(features).ravel(), np.asarray(gaps).ravel(), np.asarray(spread).ravel(),
                         self.n_features, None if level is None else np.asarray(level).ravel())
        return np.exp(design.numpy() @ self.coefficients).reshape(shape)

    def std(self, features: np.ndarray, gaps: np.ndarray, spread: np.ndarray,
            level: np.ndarray | None = None) -> np.ndarray:
        """Standard deviation ``sqrt(2) b`` of the Laplace noise per entry."""
        return LAPLACE_STD * self.scale(features, gaps, spread, level)

    def to_state(self) -> dict[str, object]:
        return {"coefficients": torch.from_numpy(self.coefficients.astype(np.float64)), "n_features": self.n_features,
                "uses_level": self.uses_level}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> LaplaceScaleModel:
        n_features = state["n_features"]
        assert isinstance(n_features, int)
        return cls(np.asarray(state["coefficients"], dtype=np.float64), n_features, bool(state.get("uses_level")))
