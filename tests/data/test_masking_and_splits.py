"""Ground-truth removal, MCAR, z-scoring and the two evaluation protocols."""

from __future__ import annotations

import numpy as np
import pytest

from gapray.data import (
    DatasetError,
    Standardizer,
    TimeSeriesDataset,
    imputation_split,
    mcar,
    remove_observed_per_sample,
)


def random_dataset(n: int = 50, t: int = 8, d: int = 3, missing: float = 0.3, seed: int = 0) -> TimeSeriesDataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(5.0, 2.0, size=(n, t, d)).astype(np.float32)
    X[rng.random(X.shape) < missing] = np.nan
    return TimeSeriesDataset(X=X, y=(rng.random(n) < 0.3).astype(np.int64))


def test_remove_observed_per_sample_removes_only_observed_values_per_sample() -> None:
    dataset = random_dataset()
    masked = remove_observed_per_sample(dataset, rate=0.1, seed=1)
    removed = masked.indicating_mask.reshape(len(dataset), -1).sum(axis=1)
    observed = dataset.mask.reshape(len(dataset), -1).sum(axis=1)
    # with replacement: at most floor(0.1 * observed) distinct entries, and at least one when possible
    assert np.all(removed <= np.floor(0.1 * observed))
    assert np.all(removed[np.floor(0.1 * observed) >= 1] >= 1)
    # values that stay are untouched; the ground truth equals the original
    np.testing.assert_array_equal(masked.X_ori, dataset.X)
    kept = ~np.isnan(masked.X)
    np.testing.assert_array_equal(masked.X[kept], dataset.X[kept])
    assert not np.any(masked.indicating_mask * np.isnan(dataset.X))


def test_remove_observed_is_seeded() -> None:
    dataset = random_dataset()
    a = remove_observed_per_sample(dataset, 0.2, seed=3).indicating_mask
    b = remove_observed_per_sample(dataset, 0.2, seed=3).indicating_mask
    c = remove_observed_per_sample(dataset, 0.2, seed=4).indicating_mask
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mcar_rate_is_reached_on_observed_values() -> None:
    dataset = random_dataset(n=400, missing=0.0)
    masked = mcar(dataset, rate=0.2, seed=0)
    assert masked.indicating_mask.mean() == pytest.approx(0.2, abs=0.01)


def test_mask_rate_must_be_a_fraction() -> None:
    with pytest.raises(DatasetError, match="mask rate"):
        mcar(random_dataset(), rate=1.5)


def test_standardizer_uses_observed_training_values_only() -> None:
    X = np.array([[[1.0, np.nan], [3.0, 10.0]], [[np.nan, 10.0], [5.0, 10.0]]], dtype=np.float32)
    scaler = Standardizer.fit(TimeSeriesDataset(X=X))
    np.testing.assert_allclose(scaler.mean, [3.0, 10.0])
    np.testing.assert_allclose(scaler.std, [np.sqrt(8 / 3), 1.0])  # constant feature -> std 1
    z = scaler.transform(TimeSeriesDataset(X=X)).X
    np.testing.assert_allclose(scaler.inverse(z), X)


def test_standardizer_rejects_feature_count_mismatch() -> None:
    scaler = Standardizer.fit(random_dataset(d=3))
    with pytest.raises(DatasetError, match="2 features, the standardizer was fitted on 3"):
        scaler.transform(random_dataset(d=2))


def test_deari_protocol_folds_are_80_10_10_and_disjoint() -> None:
    dataset = random_dataset(n=200)
    dataset = dataset.replace(record_ids=np.arange(200))
    seen_test: set[int] = set()
    for fold in range(5):
        split = imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=fold)
        ids = [set(part.record_ids.tolist()) for part in (split.train, split.val, split.test)]
        assert [len(s) for s in ids] == [160, 20, 20]
        assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
        assert not (ids[2] & seen_test)
        seen_test |= ids[2]
        # ground truth removed in all three parts
        assert all(part.indicating_mask.sum() > 0 for part in (split.train, split.val, split.test))
        # train is z-scored with its own observed values
        assert np.nanmean(split.train.X_ori) == pytest.approx(0.0, abs=1e-4)


def test_pypots_protocol_masks_only_validation_and_test() -> None:
    split = imputation_split(random_dataset(n=200), protocol="pypots", rate=0.1, seed=0)
    assert [len(split.train), len(split.val), len(split.test)] == [128, 32, 40]
    assert split.train.indicating_mask.sum() == 0
    assert split.val.indicating_mask.mean() == pytest.approx(0.07, abs=0.03)
    assert split.test.indicating_mask.sum() > 0


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(DatasetError, match="protocol"):
        imputation_split(random_dataset(), protocol="other")  # type: ignore[arg-type]
