"""MAR (always-observed part drives the mask) and self-masking MNAR masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gapray.data import DatasetError, TimeSeriesDataset
from gapray.data.loaders import load_digits, load_mnist
from gapray.data.tabular_masks import (
    fit_intercepts,
    image_mar,
    mar,
    mar_logistic_mask,
    mnar_self_masking,
    mnar_self_masking_mask,
)


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> TimeSeriesDataset:
    return load_mnist(data_dir / "mnist").subset(np.arange(3000))


def test_intercepts_solve_the_rate_exactly_for_constant_logits() -> None:
    rate = 0.3
    b = fit_intercepts(np.zeros((10, 2)), rate)
    np.testing.assert_allclose(b, np.log(rate / (1 - rate)), atol=1e-9)
    logits = np.random.default_rng(0).normal(size=(500, 3))
    b = fit_intercepts(logits, 0.2)
    np.testing.assert_allclose((1 / (1 + np.exp(-(logits + b)))).mean(axis=0), 0.2, atol=1e-9)


def test_mnist_mar_removes_whole_lower_rows_at_the_target_rate(mnist: TimeSeriesDataset) -> None:
    masked = image_mar(mnist, rate=0.5, seed=0)
    removed = np.isnan(masked.X).reshape(-1, 28, 28)
    assert not removed[:, :14].any()  # the top half is always observed
    assert np.array_equal(removed.all(axis=2), removed.any(axis=2))  # rows go whole
    per_row = removed[:, 14:].all(axis=2).mean(axis=0)
    np.testing.assert_allclose(per_row, 0.5, atol=0.04)
    assert abs(masked.missing_rate - 0.25) < 0.01
    assert float(masked.extra["mask_rate_overall"]) == pytest.approx(masked.missing_rate)
    np.testing.assert_array_equal(masked.X_ori, mnist.X)
    assert masked.indicating_mask.sum() == removed.sum()


def test_mar_mask_is_a_function_of_the_observed_part_only(mnist: TimeSeriesDataset) -> None:
    flat = mnist.X[:, 0, :]
    rows = np.repeat(np.arange(28), 28)
    observed = rows < 14
    mask = mar_logistic_mask(flat, 0.4, observed, rows, seed=7)
    scrambled = flat.copy()
    scrambled[:, ~observed] = np.random.default_rng(1).random((flat.shape[0], int((~observed).sum())))
    np.testing.assert_array_equal(mar_logistic_mask(scrambled, 0.4, observed, rows, seed=7), mask)
    changed = flat.copy()
    changed[:, observed] = np.random.default_rng(2).random((flat.shape[0], int(observed.sum())))
    assert not np.array_equal(mar_logistic_mask(changed, 0.4, observed, rows, seed=7), mask)


def test_mar_probability_follows_the_observed_feature() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(20000, 2))
    remove = mar_logistic_mask(values, 0.3, always_observed=np.array([True, False]), seed=3)
    assert not remove[:, 0].any()
    assert abs(remove[:, 1].mean() - 0.3) < 0.015
    high, low = remove[values[:, 0] > 1, 1].mean(), remove[values[:, 0] < -1, 1].mean()
    assert abs(high - low) > 0.25  # a unit-scale logistic on z: far from MCAR


def test_mnar_self_masking_removes_large_values_more_often() -> None:
    digits = load_digits()
    masked = mnar_self_masking(digits, 0.3, strength=2.0, seed=0)
    removed = np.isnan(masked.X)
    assert abs(removed.mean() - 0.3) < 0.01
    assert digits.X[removed].mean() > digits.X[~removed].mean() + 0.2
    reverse = np.isnan(mnar_self_masking(digits, 0.3, strength=-2.0, seed=0).X)
    assert digits.X[reverse].mean() < digits.X[~reverse].mean()


def test_mnar_never_selects_already_missing_entries() -> None:
    values = np.random.default_rng(0).normal(size=(4000, 3))
    values[:, 2][values[:, 2] > 1] = np.nan
    remove = mnar_self_masking_mask(values, 0.2, seed=1)
    assert not (remove & np.isnan(values)).any()
    assert abs(remove[:, :2].mean() - 0.2) < 0.015


def test_masks_reject_bad_arguments() -> None:
    dataset = TimeSeriesDataset(X=np.zeros((4, 1, 3)))
    with pytest.raises(DatasetError, match="rate"):
        mar(dataset, 1.5, always_observed=np.array([True, False, False]))
    with pytest.raises(DatasetError, match="always_observed has shape"):
        mar(dataset, 0.5, always_observed=np.array([True, False]))
    with pytest.raises(DatasetError, match="some, but not all"):
        mar(dataset, 0.5, always_observed=np.zeros(3, dtype=bool))
    with pytest.raises(DatasetError, match="image shape"):
        image_mar(TimeSeriesDataset(X=np.zeros((2, 1, 10))), 0.5)
