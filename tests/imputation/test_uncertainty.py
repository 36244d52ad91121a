"""Interval scores and split-conformal calibration (coverage, width, CRPS)."""

from __future__ import annotations

import numpy as np
import pytest

from gapray.imputation.uncertainty import (
    ConformalCalibration,
    ConformalScaler,
    calibrate_and_score,
    conformal_quantile,
    crps_from_samples,
    distance_to_observation,
    gap_groups,
    gaussian_crps,
    gaussian_interval,
    gaussian_quantile,
    grouped_interval_scores,
    informativeness_scores,
    interval_summary,
    mean_width,
    picp,
    quantile_interval,
    spearman_std_error,
    summarise_samples,
)


def test_crps_from_samples_matches_a_hand_computed_value() -> None:
    samples = np.array([1.0, 2.0, 4.0]).reshape(3, 1)
    target, mask = np.array([3.0]), np.array([1.0])
    # E|X - y| = (2 + 1 + 1) / 3 = 4/3; sum_{i,j} |x_i - x_j| = 2 (1 + 3 + 2) = 12
    assert crps_from_samples(samples, target, mask) == pytest.approx(4 / 3 - 0.5 * 12 / 9)
    assert crps_from_samples(samples, target, mask, fair=True) == pytest.approx(4 / 3 - 0.5 * 12 / 6)


def test_crps_from_samples_equals_brute_force_and_ignores_unmasked_entries() -> None:
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(7, 4, 5))
    target = rng.normal(size=(4, 5))
    mask = rng.random((4, 5)) < 0.5
    target_with_nan = np.where(mask, target, np.nan)
    brute = [
        np.abs(samples[:, i, j] - target[i, j]).mean()
        - 0.5 * np.abs(samples[:, None, i, j] - samples[None, :, i, j]).mean()
        for i, j in zip(*np.nonzero(mask))
    ]
    assert crps_from_samples(samples, target_with_nan, mask) == pytest.approx(np.mean(brute))


def test_sample_crps_approaches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(1)
    mean, std = np.array([0.0, 1.0]), np.array([1.0, 0.5])
    target, mask = np.array([0.7, -0.2]), np.ones(2)
    samples = mean + std * rng.standard_normal((20000, 2))
    assert crps_from_samples(samples, target, mask) == pytest.approx(gaussian_crps(mean, std, target, mask), rel=0.01)
    # CRPS of a point forecast is the absolute error
    assert gaussian_crps(np.array([1.0]), np.array([0.0]), np.array([3.0]), np.ones(1)) == pytest.approx(2.0)


def test_picp_and_width_by_hand() -> None:
    lower, upper = np.array([0.0, 0.0, 0.0, 5.0]), np.array([1.0, 2.0, 4.0, 6.0])
    target = np.array([0.5, 3.0, 4.0, np.nan])
    mask = np.array([1, 1, 1, 0])
    assert picp(lower, upper, target, mask) == pytest.approx(2 / 3)  # bounds inclusive
    assert mean_width(lower, upper, mask) == pytest.approx(7 / 3)
    with pytest.raises(ValueError, match="empty"):
        picp(lower, upper, target, np.zeros(4))


def test_gaussian_and_quantile_intervals() -> None:
    assert gaussian_quantile(0.9) == pytest.approx(1.6448536, rel=1e-6)
    lower, upper = gaussian_interval(np.array([1.0]), np.array([2.0]), 0.9)
    assert upper[0] - 1.0 == pytest.approx(2 * 1.6448536, rel=1e-6) and lower[0] == pytest.approx(1.0 - 3.2897072)
    samples = np.arange(101.0).reshape(101, 1)
    lower, upper = quantile_interval(samples, 0.9)
    assert (lower[0], upper[0]) == pytest.approx((5.0, 95.0))
    summary = summarise_samples(samples, 0.9, interval="quantile")
    assert summary["imputation"][0] == 50.0 and summary["std"][0] == pytest.approx(np.std(samples, ddof=1))


def test_summarised_mean_and_std_are_the_float64_ones() -> None:
    rng = np.random.default_rng(0)
    for shape in ((10, 6, 5, 3), (1, 4), (2, 7)):
        samples = rng.normal(scale=5.0, size=shape).astype(np.float32)
        samples[:, 0] = samples[0, 0]  # identical samples, as an observed entry
        wide = samples.astype(np.float64)
        summary = summarise_samples(samples)
        assert summary["imputation"].dtype == np.float32
        assert np.array_equal(summary["imputation"], wide.mean(axis=0).astype(np.float32))
        expected_std = wide.std(axis=0, ddof=1) if shape[0] > 1 else np.zeros(shape[1:])
        assert np.array_equal(summary["std"], expected_std.astype(np.float32))
        assert np.all(summary["std"][0] == 0.0) and np.array_equal(summary["imputation"][0], samples[0, 0])


def test_conformal_quantile_rank() -> None:
    scores = np.arange(1.0, 20.0)[::-1]  # 19 scores 1..19
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # ceil(10 * 0.9) = 9
    assert conformal_quantile(np.arange(1.0, 5.0), 0.9) == np.inf  # too few scores


def test_conformal_calibration_reaches_nominal_coverage_with_known_noise() -> None:
    """Heteroscedastic noise, predicted std 3x too small: raw 90 % intervals under-cover,
    conformal scaling fitted on a validation half brings test coverage to 90 %."""
    rng = np.random.default_rng(0)
    shape = (400, 10, 5)
    mean = rng.normal(size=shape)
    true_std = rng.uniform(0.2, 2.0, size=shape)
    target = mean + true_std * rng.standard_normal(shape)
    predicted_std = true_std / 3.0
    mask = rng.random(shape) < 0.5
    val, test = slice(0, 200), slice(200, 400)
    prediction = {"imputation": mean, "std": predicted_std}
    prediction["lower"], prediction["upper"] = gaussian_interval(mean, predicted_std, 0.9)
    split = lambda d, s: {k: v[s] for k, v in d.items()}  # noqa: E731
    scaler, scores = calibrate_and_score(
        split(prediction, val), target[val], mask[val], split(prediction, test), target[test], mask[test], 0.9
    )
    assert scores["picp"] < 0.5
    assert 0.88 <= scores["calibrated_picp"] <= 0.92
    assert scaler.multiplier == pytest.approx(3 * 1.645, rel=0.05)  # undoes the factor 3
    assert scores["calibrated_width"] > scores["width"]
    calibrated = scaler.calibrated_std(predicted_std)
    assert np.allclose(calibrated, true_std, rtol=0.05)


def test_conformal_scaler_survives_zero_std() -> None:
    scaler = ConformalScaler.fit(np.zeros(50), np.zeros(50), np.linspace(-1, 1, 50), np.ones(50), 0.9)
    lower, upper = scaler.interval(np.zeros(50), np.zeros(50))
    assert np.isfinite(scaler.multiplier) and np.mean((lower <= 0.5) & (0.5 <= upper)) == 1.0


def test_distance_to_observation_by_hand() -> None:
    mask = np.array([[1, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0]], dtype=float).reshape(1, 2, 6).transpose(0, 2, 1)
    distance = distance_to_observation(mask)[0].T
    assert distance.tolist() == [[0, 1, 2, 1, 0, 1], [2, 1, 0, 1, 2, 3]]
    never = distance_to_observation(np.zeros((1, 4, 1)))
    assert np.all(never == 4)
    assert gap_groups(mask)[0].T.tolist() == [[0, 1, 2, 1, 0, 1], [2, 1, 0, 1, 2, 2]]


def test_mondrian_calibration_covers_each_group() -> None:
    """Errors twice as large in group 1 as the std says: one global multiplier over-covers group
    0 and under-covers group 1; the group-conditional one covers both at the nominal level."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 2, size=40000)
    std = np.ones(groups.size)
    target = rng.standard_normal(groups.size) * np.where(groups == 1, 2.0, 1.0)
    mean, mask = np.zeros_like(target), np.ones_like(target)
    val, test = slice(0, 20000), slice(20000, None)
    scaler = ConformalScaler.fit(mean[val], std[val], target[val], mask[val], 0.9, groups[val])
    for use_groups, expect_equal in ((None, False), (groups[test], True)):
        lower, upper = scaler.interval(mean[test], std[test], use_groups)
        covered = (lower <= target[test]) & (target[test] <= upper)
        per_group = [covered[groups[test] == g].mean() for g in (0, 1)]
        if expect_equal:
            assert all(0.88 <= c <= 0.92 for c in per_group)
        else:
            assert per_group[0] > 0.95 and per_group[1] < 0.85
    assert dict(scaler.group_multipliers)[1] == pytest.approx(2 * 1.645, rel=0.05)


def test_level_free_calibration_equals_the_fixed_level_scaler_and_survives_a_round_trip() -> None:
    rng = np.random.default_rng(1)
    mean, std = np.zeros(3000), rng.uniform(0.5, 2.0, 3000)
    target, mask, groups = rng.normal(size=3000) * std, np.ones(3000), rng.integers(1, 3, 3000)
    calibration = ConformalCalibration.fit(mean, std, target, mask, groups)
    for level in (0.5, 0.9):
        assert calibration.scaler(level) == ConformalScaler.fit(mean, std, target, mask, level, groups)
        assert calibration.scaler(level).multiplier == pytest.approx(gaussian_quantile(level), rel=0.06)
    again = ConformalCalibration.from_state(calibration.to_state())
    assert np.array_equal(again.scores, calibration.scores) and again.scaler(0.8) == calibration.scaler(0.8)
    few = ConformalCalibration.fit(mean[:5], std[:5], target[:5], mask[:5], np.array([1, 1, 1, 1, 2]))
    assert few.scaler(0.9).group_multipliers == ()  # 4 and 1 scores are too few for 90 %: global fallback


def test_spearman_and_grouped_scores_by_hand() -> None:
    target, mean, mask = np.array([0.0, 1.0, 3.0, 6.0]), np.zeros(4), np.array([1, 1, 1, 0])
    assert spearman_std_error(np.array([1.0, 2.0, 3.0, 0.0]), mean, target, mask) == pytest.approx(1.0)
    assert spearman_std_error(np.array([3.0, 2.0, 1.0, 9.0]), mean, target, mask) == pytest.approx(-1.0)
    assert spearman_std_error(np.ones(4), mean, target, mask) == 0.0
    lower, upper = np.array([-1.0, 0.5, 0.0, 0.0]), np.array([1.0, 1.5, 2.0, 9.0])
    scores = grouped_interval_scores(lower, upper, target, mask, np.array([1, 1, 2, 2]))
    assert scores == {1: {"coverage": 1.0, "width": 1.5, "share": 2 / 3, "n": 2.0},
                      2: {"coverage": 0.0, "width": 2.0, "share": 1 / 3, "n": 1.0}}
    summary = interval_summary({"imputation": mean, "std": np.array([1.0, 0.1, 1.0, 1.0]), "lower": lower,
                                "upper": upper}, target, mask)
    assert summary == {"coverage": pytest.approx(2 / 3), "width": pytest.approx(5 / 3),
                       "raw_coverage_90": pytest.approx(1 / 3)}  # 0 in +-1.64, 1 not in +-0.16, 3 not in +-1.64


def test_an_informative_std_beats_the_constant_band_and_a_constant_std_gives_it() -> None:
    """Noise whose scale the std knows: Spearman > 0.3, calibrated coverage ~90 % in both variants,
    and a lower CRPS than the constant-width conformal band (std = 1 everywhere), which ranks nothing."""
    rng = np.random.default_rng(2)
    shape = (600, 8, 4)
    scale = np.exp(rng.normal(0.0, 0.8, shape))
    target = rng.normal(size=shape) * scale
    mean, observed = np.zeros(shape), (rng.random(shape) < 0.5).astype(float)
    mask = 1.0 - observed
    half = slice(0, 300), slice(300, 600)
    informative = informativeness_scores(*(a[half[0]] for a in (mean, scale, target, mask, observed)),
                                         *(a[half[1]] for a in (mean, scale, target, mask, observed)))
    constant = informativeness_scores(*(a[half[0]] for a in (mean, np.ones(shape), target, mask, observed)),
                                      *(a[half[1]] for a in (mean, np.ones(shape), target, mask, observed)))
    assert informative["spearman"] > 0.3 and constant["spearman"] == 0.0
    for scores in (informative, constant):
        assert 0.88 <= scores["calibrated"]["picp"] <= 0.92 and 0.88 <= scores["gap_calibrated"]["picp"] <= 0.92
    assert informative["calibrated"]["crps"] < 0.9 * constant["calibrated"]["crps"]
    assert informative["raw_picp"] == pytest.approx(0.9, abs=0.02)  # the std is the true scale
