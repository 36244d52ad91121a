"""Predictive intervals from Monte Carlo imputations and their scores (DEARI sec. 4.3, Fig. 3c).

The paper shows bands but reports no interval score; we score intervals on the artificially
removed entries ``e`` (the ground truth of the evaluation protocol, DESIGN.md sec. 2):

- PICP (prediction interval coverage probability): share of removed entries inside the interval.
- mean width of the interval over the removed entries.
- CRPS from the Monte Carlo samples, energy form ``E|X - y| - 1/2 E|X - X'|``
  (Gneiting & Raftery 2007, eq. 21), averaged over the removed entries.

Calibration (split conformal, Vovk et al. 2005; Angelopoulos & Bates 2021, sec. 2.3): on the
validation set's removed entries compute the scores ``s = |y - mean| / std``; the calibrated
half-width multiplier is the ``ceil((n + 1) level) / n`` empirical quantile of ``s``. Test
intervals ``mean +- q std`` then cover at least ``level`` of exchangeable test entries.

Arrays are numpy; samples are ``[K, N, T, D]`` (or any ``[K, ...]``), predictions ``[N, T, D]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from scipy.special import erf

IntervalKind = Literal["gaussian", "quantile"]

STD_FLOOR = 1e-8
"""Standard deviations are floored here before dividing (a frozen model has std 0)."""


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must lie in (0, 1), got {level}")


def _boolean_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape}, expected {shape}")
    mask = mask > 0
    if not mask.any():
        raise ValueError("the evaluation mask is empty: nothing to score")
    return mask


def gaussian_quantile(level: float) -> float:
    """``z`` with ``P(|Z| <= z) = level`` for standard normal ``Z`` (1.6449 at 0.9)."""
    _check_level(level)
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def gaussian_interval(mean: np.ndarray, std: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Central interval ``mean +- z_level * std`` of a Gaussian predictive distribution."""
    half = gaussian_quantile(level) * np.asarray(std)
    return np.asarray(mean) - half, np.asarray(mean) + half


def quantile_interval(samples: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Central empirical interval of Monte Carlo ``samples`` ``[K, ...]`` (quantiles
    ``(1 - level) / 2`` and ``(1 + level) / 2`` over the sample axis)."""
    _check_level(level)
    lower, upper = np.quantile(np.asarray(samples), [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return lower, upper


def _mean_and_std(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (``ddof=1``; 0 for one sample) over axis 0, in float64.

    The same sums as ``wide = samples.astype(float64); wide.mean(0), wide.std(0, ddof=1)``,
    accumulated one sample at a time so that no float64 copy of all ``K`` samples is made (this
    summary was a tenth of a 10-sample Monte Carlo prediction). Identical samples (observed
    entries) give std exactly 0.
    """
    k = samples.shape[0]
    total = samples[0].astype(np.float64)
    for sample in samples[1:]:
        total += sample
    mean = total / k
    squares = np.zeros_like(mean)
    if k > 1:
        for sample in samples:
            deviation = sample - mean
            squares += deviation * deviation
        squares /= k - 1
    return mean, np.sqrt(squares, out=squares)


def summarise_samples(
    samples: np.ndarray, level: float = 0.9, interval: IntervalKind = "gaussian"
) -> dict[str, np.ndarray]:
    """Monte Carlo imputations ``[K, ...]`` -> ``imputation`` (mean), ``std`` and the interval
    ``lower``/``upper`` at ``level`` (Gaussian ``mean +- z std`` or empirical quantiles)."""
    samples = np.asarray(samples)
    if samples.ndim < 2 or samples.shape[0] < 1:
        raise ValueError(f"samples must be [K, ...] with K >= 1, got shape {samples.shape}")
    dtype = samples.dtype if np.issubdtype(samples.dtype, np.floating) else np.float64
    mean, std = _mean_and_std(samples)
    mean, std = mean.astype(dtype), std.astype(dtype)
    if interval == "gaussian":
        lower, upper = gaussian_interval(mean, std, level)
    elif interval == "quantile":
        lower, upper = quantile_interval(samples, level)
    else:
        raise ValueError(f"interval must be 'gaussian' or 'quantile', got {interval!r}")
    return {"imputation": mean, "std": std, "lower": lower, "upper": upper}


def picp(lower: np.ndarray, upper: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Prediction interval coverage probability: share of masked entries with
    ``lower <= target <= upper``."""
    target = np.asarray(target)
    m = _boolean_mask(mask, target.shape)
    y = target[m]
    return float(np.mean((np.asarray(lower)[m] <= y) & (y <= np.asarray(upper)[m])))


def mean_width(lower: np.ndarray, upper: np.ndarray, mask: np.ndarray) -> float:
    """Mean ``upper - lower`` over the masked entries."""
    upper = np.asarray(upper)
    m = _boolean_mask(mask, upper.shape)
    return float(np.mean(upper[m] - np.asarray(lower)[m]))


def crps_from_samples(samples: np.ndarray, target: np.ndarray, mask: np.ndarray, fair: bool = False) -> float:
    """Mean CRPS over the masked entries from Monte Carlo ``samples`` ``[K, ...]``.

    Energy form ``CRPS = E|X - y| - 1/2 E|X - X'|``. ``E|X - X'|`` over all ``K^2`` ordered
    pairs is computed from the sorted samples, ``sum_{i,j} |x_i - x_j| = 2 sum_i (2i - K - 1)
    x_(i)``, in ``O(K log K)`` per entry. ``fair=False`` divides by ``K^2`` (the CRPS of the
    empirical distribution of the samples); ``fair=True`` by ``K (K - 1)`` (unbiased for the
    CRPS of the sampling distribution; Ferro 2014).
    """
    samples = np.asarray(samples, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if samples.shape[1:] != target.shape:
        raise ValueError(f"samples {samples.shape} do not match target {target.shape} (expected [K, *target.shape])")
    k = samples.shape[0]
    if fair and k < 2:
        raise ValueError("the fair CRPS needs at least 2 samples")
    m = _boolean_mask(mask, target.shape)
    x = samples[:, m]  # [K, n]
    y = target[m]
    spread_to_target = np.abs(x - y).mean(axis=0)
    ranks = 2.0 * np.arange(1, k + 1) - k - 1
    pair_sum = 2.0 * (ranks[:, None] * np.sort(x, axis=0)).sum(axis=0)
    pairs = k * (k - 1) if fair else k * k
    return float(np.mean(spread_to_target - 0.5 * pair_sum / pairs))


def gaussian_crps(mean: np.ndarray, std: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean closed-form CRPS of ``N(mean, std^2)`` over the masked entries (Gneiting et al. 2005):
    ``std [w (2 Phi(w) - 1) + 2 phi(w) - 1/sqrt(pi)]``, ``w = (y - mean) / std``."""
    target = np.asarray(target, dtype=np.float64)
    m = _boolean_mask(mask, target.shape)
    sigma = np.maximum(np.asarray(std, dtype=np.float64)[m], STD_FLOOR)
    w = (target[m] - np.asarray(mean, dtype=np.float64)[m]) / sigma
    cdf = 0.5 * (1.0 + erf(w / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * w**2) / math.sqrt(2.0 * math.pi)
    return float(np.mean(sigma * (w * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))))


def conformal_quantile(scores: np.ndarray, level: float = 0.9) -> float:
    """Split-conformal threshold: the ``ceil((n + 1) level)``-th smallest of ``n`` scores
    (``inf`` when ``n`` is too small for ``level``)."""
    _check_level(level)
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = scores.size
    if n == 0:
        raise ValueError("no calibration scores")
    rank = math.ceil((n + 1) * level)
    return math.inf if rank > n else float(scores[rank - 1])


def distance_to_observation(mask: np.ndarray) -> np.ndarray:
    """Steps from each entry to the nearest observed entry of the same record and feature, in
    either direction (0 where observed; ``T`` for a feature never observed in the record).

    ``mask`` ``[N, T, D]`` is the observation mask the model sees (1 = observed)."""
    observed = np.asarray(mask) > 0
    n_steps = observed.shape[1]
    forward = np.full(observed.shape, n_steps, dtype=np.int64)
    backward = np.full(observed.shape, n_steps, dtype=np.int64)
    last = np.full((observed.shape[0], observed.shape[2]), n_steps, dtype=np.int64)
    for t in range(n_steps):
        last = np.where(observed[:, t], 0, np.minimum(last + 1, n_steps))
        forward[:, t] = last
    last[:] = n_steps
    for t in range(n_steps - 1, -1, -1):
        last = np.where(observed[:, t], 0, np.minimum(last + 1, n_steps))
        backward[:, t] = last
    return np.minimum(forward, backward)


GAP_EDGES = (1, 2, 4, 8, 16)
"""Default gap-length bins: distance 1, 2-3, 4-7, 8-15, >= 16 steps to the nearest observation."""


def gap_groups(mask: np.ndarray, edges: tuple[int, ...] = GAP_EDGES) -> np.ndarray:
    """Bin index of :func:`distance_to_observation` (``np.digitize`` with ``edges``; 0 = observed)."""
    return np.digitize(distance_to_observation(mask), edges)


@dataclass(frozen=True)
class ConformalScaler:
    """Split-conformal calibration of Monte Carlo standard deviations.

    ``multiplier`` replaces the Gaussian ``z_level``: calibrated intervals are
    ``mean +- multiplier * std``; :meth:`calibrated_std` rescales ``std`` so that a Gaussian
    interval at ``level`` equals the calibrated one.
    """

    multiplier: float
    """Conformal quantile of the validation scores ``|y - mean| / std``."""
    level: float
    """Nominal coverage the scaler was fitted for."""
    n_calibration: int
    """Number of validation entries the quantile was taken over."""
    group_multipliers: tuple[tuple[int, float], ...] = ()
    """Mondrian (group-conditional) multipliers ``(group, q_group)``, e.g. per gap-length bin;
    groups with too few calibration entries fall back to :attr:`multiplier`."""

    @classmethod
    def fit(
        cls,
        mean: np.ndarray,
        std: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray,
        level: float = 0.9,
        groups: np.ndarray | None = None,
    ) -> ConformalScaler:
        """Fit on the validation set's removed entries (``mask``).

        With ``groups`` (an int array like ``target``, e.g. :func:`gap_groups`), one quantile
        per group as well (Mondrian conformal prediction, Vovk et al. 2005, ch. 4.5): coverage
        then holds within each group, so intervals follow the error size of, say, long gaps.
        """
        target = np.asarray(target, dtype=np.float64)
        m = _boolean_mask(mask, target.shape)
        sigma = np.maximum(np.asarray(std, dtype=np.float64)[m], STD_FLOOR)
        scores = np.abs(target[m] - np.asarray(mean, dtype=np.float64)[m]) / sigma
        per_group: list[tuple[int, float]] = []
        if groups is not None:
            labels = np.asarray(groups)[m]
            for group in np.unique(labels):
                q = conformal_quantile(scores[labels == group], level)
                if np.isfinite(q):
                    per_group.append((int(group), q))
        return cls(conformal_quantile(scores, level), level, int(m.sum()), tuple(per_group))

    def multipliers(self, groups: np.ndarray | None = None) -> np.ndarray | float:
        """The multiplier per entry (group-conditional when fitted with groups and given them)."""
        if not self.group_multipliers or groups is None:
            return self.multiplier
        groups = np.asarray(groups)
        out = np.full(groups.shape, self.multiplier, dtype=np.float64)
        for group, q in self.group_multipliers:
            out[groups == group] = q
        return out

    def interval(
        self, mean: np.ndarray, std: np.ndarray, groups: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        half = self.multipliers(groups) * np.maximum(np.asarray(std), STD_FLOOR)
        return np.asarray(mean) - half, np.asarray(mean) + half

    def calibrated_std(self, std: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        scale = np.asarray(self.multipliers(groups)) / gaussian_quantile(self.level)
        return np.maximum(np.asarray(std), STD_FLOOR) * scale


def interval_scores(
    prediction: dict[str, np.ndarray],
    target: np.ndarray,
    mask: np.ndarray,
    samples: np.ndarray | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """``picp``, ``width`` (and ``crps`` when ``samples`` are given) of a prediction dict with
    ``lower``/``upper`` on the masked entries; keys carry ``prefix``."""
    scores = {
        f"{prefix}picp": picp(prediction["lower"], prediction["upper"], target, mask),
        f"{prefix}width": mean_width(prediction["lower"], prediction["upper"], mask),
    }
    if samples is not None:
        scores[f"{prefix}crps"] = crps_from_samples(samples, target, mask)
    return scores


def calibrate_and_score(
    val_prediction: dict[str, np.ndarray],
    val_target: np.ndarray,
    val_mask: np.ndarray,
    test_prediction: dict[str, np.ndarray],
    test_target: np.ndarray,
    test_mask: np.ndarray,
    level: float = 0.9,
    test_samples: np.ndarray | None = None,
    val_groups: np.ndarray | None = None,
    test_groups: np.ndarray | None = None,
) -> tuple[ConformalScaler, dict[str, float]]:
    """Raw scores of ``test_prediction`` and, after fitting a :class:`ConformalScaler` on the
    validation prediction, calibrated scores (``calibrated_picp``, ``calibrated_width``,
    ``calibrated_crps`` = Gaussian CRPS with the calibrated std). With ``val_groups`` and
    ``test_groups`` also the group-conditional ``mondrian_*`` scores."""
    scaler = ConformalScaler.fit(
        val_prediction["imputation"], val_prediction["std"], val_target, val_mask, level, val_groups
    )
    mean, std = test_prediction["imputation"], test_prediction["std"]
    scores = interval_scores(test_prediction, test_target, test_mask, test_samples)
    variants = [("calibrated_", None)] + ([("mondrian_", test_groups)] if test_groups is not None else [])
    for prefix, groups in variants:
        lower, upper = scaler.interval(mean, std, groups)
        scores.update(interval_scores({"lower": lower, "upper": upper}, test_target, test_mask, prefix=prefix))
        scores[f"{prefix}crps"] = gaussian_crps(mean, scaler.calibrated_std(std, groups), test_target, test_mask)
    scores["conformal_multiplier"] = scaler.multiplier
    return scaler, scores
