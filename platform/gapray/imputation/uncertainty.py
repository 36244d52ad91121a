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


def _calibration_scores(mean: np.ndarray, std: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Nonconformity scores ``|y - mean| / std`` on the masked entries (std floored at :data:`STD_FLOOR`)."""
    target = np.asarray(target, dtype=np.float64)
    m = _boolean_mask(mask, target.shape)
    sigma = np.maximum(np.asarray(std, dtype=np.float64)[m], STD_FLOOR)
    return np.abs(target[m] - np.asarray(mean, dtype=np.float64)[m]) / sigma


@dataclass(frozen=True)
class ConformalCalibration:
    """Split-conformal calibration for every level at once: the sorted validation scores.

    ``scores`` are ``|y - mean| / std`` on the validation set's removed entries, sorted; with
    ``groups`` (e.g. :func:`gap_groups`) also each group's sorted scores (Mondrian conformal
    prediction, Vovk et al. 2005, ch. 4.5). :meth:`scaler` turns them into the multipliers of
    one level. Saved with a model (:meth:`to_state`, :meth:`from_state`), so ``predict`` can
    return calibrated intervals at any ``level``.
    """

    scores: np.ndarray
    """Sorted scores of all calibration entries (float64, 1-D)."""
    group_scores: tuple[tuple[int, np.ndarray], ...] = ()
    """``(group, sorted scores)`` per group; empty for a global calibration."""

    @classmethod
    def fit(
        cls, mean: np.ndarray, std: np.ndarray, target: np.ndarray, mask: np.ndarray,
        groups: np.ndarray | None = None,
    ) -> ConformalCalibration:
        """Scores of the masked entries (validation set's removed entries), globally and per group."""
        scores = _calibration_scores(mean, std, target, mask)
        per_group: list[tuple[int, np.ndarray]] = []
        if groups is not None:
            labels = np.asarray(groups)[_boolean_mask(mask, np.shape(target))]
            per_group = [(int(g), np.sort(scores[labels == g])) for g in np.unique(labels)]
        return cls(np.sort(scores), tuple(per_group))

    @property
    def n_calibration(self) -> int:
        return int(self.scores.size)

    def scaler(self, level: float = 0.9) -> ConformalScaler:
        """The multipliers at ``level``; a group with too few scores for ``level`` (infinite
        quantile) falls back to the global multiplier."""
        per_group = tuple((g, q) for g, s in self.group_scores if np.isfinite(q := conformal_quantile(s, level)))
        return ConformalScaler(conformal_quantile(self.scores, level), level, self.n_calibration, per_group)

    def to_state(self) -> dict[str, object]:
        """Plain tensors-and-lists form for ``torch.save(weights_only=True)`` checkpoints."""
        import torch

        return {"scores": torch.from_numpy(self.scores.astype(np.float64)),
                "groups": [int(g) for g, _ in self.group_scores],
                "group_scores": [torch.from_numpy(s.astype(np.float64)) for _, s in self.group_scores]}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> ConformalCalibration:
        groups, group_scores = state["groups"], state["group_scores"]
        assert isinstance(groups, list) and isinstance(group_scores, list)
        return cls(np.asarray(state["scores"], dtype=np.float64),
                   tuple((int(g), np.asarray(s, dtype=np.float64)) for g, s in zip(groups, group_scores, strict=True)))


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
        return ConformalCalibration.fit(mean, std, target, mask, groups).scaler(level)

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


# --------------------------------------------------------------------------- informativeness


def spearman_std_error(std: np.ndarray, mean: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Spearman rank correlation between the predicted std and the absolute error on the masked
    entries (``scipy.stats.spearmanr``): does the std rank the errors? 0 for a constant std."""
    from scipy.stats import spearmanr

    target = np.asarray(target, dtype=np.float64)
    m = _boolean_mask(mask, target.shape)
    sigma = np.asarray(std, dtype=np.float64)[m]
    if np.ptp(sigma) == 0.0:
        return 0.0
    return float(spearmanr(sigma, np.abs(target[m] - np.asarray(mean, dtype=np.float64)[m])).statistic)


def grouped_interval_scores(lower: np.ndarray, upper: np.ndarray, target: np.ndarray, mask: np.ndarray,
                            groups: np.ndarray) -> dict[int, dict[str, float]]:
    """Conditional coverage: per group (e.g. gap bucket, variable) of the masked entries, the
    ``coverage``, mean ``width``, ``share`` of the masked entries and their count ``n``."""
    target = np.asarray(target)
    m = _boolean_mask(mask, target.shape)
    y, lo, hi = target[m], np.asarray(lower)[m], np.asarray(upper)[m]
    labels = np.broadcast_to(np.asarray(groups), target.shape)[m]
    inside = (lo <= y) & (y <= hi)
    out = {}
    for group in np.unique(labels):
        k = labels == group
        out[int(group)] = {"coverage": float(inside[k].mean()), "width": float((hi[k] - lo[k]).mean()),
                           "share": float(k.mean()), "n": float(k.sum())}
    return out


def calibrated_scores(val_mean: np.ndarray, val_std: np.ndarray, val_target: np.ndarray, val_mask: np.ndarray,
                      val_observed: np.ndarray, mean: np.ndarray, std: np.ndarray, target: np.ndarray,
                      mask: np.ndarray, observed: np.ndarray, level: float = 0.9, by_gap: bool = False,
                      min_group_share: float = 0.01) -> dict[str, object]:
    """Split-conformal calibration of ``std`` on the validation entries, scored on the test entries.

    ``observed`` / ``val_observed`` are the observation masks the model saw (for the gap buckets).
    ``by_gap``: one multiplier per gap-length bucket (Mondrian). Returns ``picp``, ``width``,
    ``crps`` (closed form, Gaussian with the calibrated std), ``multiplier``, ``by_gap`` and
    ``by_feature`` (:func:`grouped_interval_scores`), ``worst_gap_coverage`` (the bucket farthest
    from ``level`` among buckets with at least ``min_group_share`` of the entries) and the range
    of the per-variable coverage.
    """
    val_groups, groups = gap_groups(val_observed), gap_groups(observed)
    calibration = ConformalCalibration.fit(val_mean, val_std, val_target, val_mask, val_groups if by_gap else None)
    scaler = calibration.scaler(level)
    use = groups if by_gap else None
    lower, upper = scaler.interval(mean, std, use)
    features = np.broadcast_to(np.arange(np.shape(target)[-1]), np.shape(target))
    by_gap_scores = grouped_interval_scores(lower, upper, target, mask, groups)
    by_feature = grouped_interval_scores(lower, upper, target, mask, features)
    large = [s["coverage"] for s in by_gap_scores.values() if s["share"] >= min_group_share]
    feature_coverage = [s["coverage"] for s in by_feature.values()]
    return {
        "picp": picp(lower, upper, target, mask), "width": mean_width(lower, upper, mask),
        "crps": gaussian_crps(mean, scaler.calibrated_std(std, use), target, mask),
        "multiplier": scaler.multiplier, "by_gap": by_gap_scores, "by_feature": by_feature,
        "worst_gap_coverage": max(large, key=lambda c: abs(c - level)) if large else math.nan,
        "feature_coverage_min": min(feature_coverage), "feature_coverage_max": max(feature_coverage),
    }


def informativeness_scores(val_mean: np.ndarray, val_std: np.ndarray, val_target: np.ndarray, val_mask: np.ndarray,
                           val_observed: np.ndarray, mean: np.ndarray, std: np.ndarray, target: np.ndarray,
                           mask: np.ndarray, observed: np.ndarray, level: float = 0.9) -> dict[str, object]:
    """Everything that says whether a predictive std carries information, on the test entries:
    ``spearman`` (:func:`spearman_std_error`), raw Gaussian ``raw_picp`` / ``raw_width``, and the
    split-conformal calibrated scores with one global multiplier (``calibrated``) and one per gap
    bucket (``gap_calibrated``), each with coverage and width by gap bucket and by variable and
    the closed-form CRPS (:func:`calibrated_scores`). A constant std (``np.ones``) gives the
    constant-width conformal band."""
    lower, upper = gaussian_interval(mean, std, level)
    arguments = (val_mean, val_std, val_target, val_mask, val_observed, mean, std, target, mask, observed, level)
    return {
        "spearman": spearman_std_error(std, mean, target, mask),
        "raw_picp": picp(lower, upper, target, mask), "raw_width": mean_width(lower, upper, mask),
        "calibrated": calibrated_scores(*arguments, by_gap=False),
        "gap_calibrated": calibrated_scores(*arguments, by_gap=True),
    }


def interval_summary(prediction: dict[str, np.ndarray], target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """What a sweep or a demo reports for a Bayesian prediction on the masked (removed) entries:
    ``coverage`` and mean ``width`` of its ``lower``/``upper`` (``predict`` returns the calibrated
    interval by default) and, when it has a ``std``, ``raw_coverage_90``, the coverage of the raw
    Gaussian 90 % interval ``imputation +- 1.645 std``."""
    target = np.nan_to_num(np.asarray(target, dtype=np.float64))
    out = {"coverage": picp(prediction["lower"], prediction["upper"], target, mask),
           "width": mean_width(prediction["lower"], prediction["upper"], mask)}
    if "std" in prediction:
        lower, upper = gaussian_interval(prediction["imputation"], prediction["std"], 0.9)
        out["raw_coverage_90"] = picp(lower, upper, target, mask)
    return out
