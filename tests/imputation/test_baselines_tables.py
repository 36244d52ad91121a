"""LOCF and mean imputation against tables computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gapray.data import DatasetError, TimeSeriesDataset
from gapray.imputation import LOCFImputer, MeanImputer

nan = np.nan

# training data: 2 records x 3 steps x 4 features. Feature 0 observed 1, 3, 5, 7 -> mean 4;
# feature 1 observed 2 and -4 -> mean -1; feature 2 never observed -> mean 0; feature 3 observed
# once, 9 -> mean 9.
TRAIN = np.array([
    [[1.0, 2.0, nan, nan], [3.0, nan, nan, nan], [nan, nan, nan, 9.0]],
    [[5.0, nan, nan, nan], [7.0, -4.0, nan, nan], [nan, nan, nan, nan]],
], dtype=np.float32)
MEANS = [4.0, -1.0, 0.0, 9.0]

# test data: 1 record x 5 steps x 4 features
TEST = np.array([[
    [nan, 10.0, nan, nan],
    [2.0, nan, nan, nan],
    [nan, nan, 6.0, 1.0],
    [nan, 20.0, nan, nan],
    [8.0, nan, nan, nan],
]], dtype=np.float32)

LOCF_TABLE = np.array([[
    [4.0, 10.0, 0.0, 9.0],  # features 0, 2 and 3 not observed yet: their training means
    [2.0, 10.0, 0.0, 9.0],
    [2.0, 10.0, 6.0, 1.0],
    [2.0, 20.0, 6.0, 1.0],
    [8.0, 20.0, 6.0, 1.0],
]], dtype=np.float32)

MEAN_TABLE = np.array([[
    [4.0, 10.0, 0.0, 9.0],
    [2.0, -1.0, 0.0, 9.0],
    [4.0, -1.0, 6.0, 1.0],
    [4.0, 20.0, 0.0, 9.0],
    [8.0, -1.0, 0.0, 9.0],
]], dtype=np.float32)


def test_fit_stores_the_per_feature_mean_of_observed_training_values() -> None:
    for imputer in (MeanImputer(), LOCFImputer()):
        assert imputer.fit(TimeSeriesDataset(X=TRAIN)) == []
        assert imputer.feature_mean is not None and imputer.feature_mean.dtype == np.float32
        np.testing.assert_array_equal(imputer.feature_mean, np.array(MEANS, dtype=np.float32))


@pytest.mark.parametrize(("imputer_class", "table"), [(LOCFImputer, LOCF_TABLE), (MeanImputer, MEAN_TABLE)])
def test_imputation_equals_the_hand_table(imputer_class: type, table: np.ndarray) -> None:
    imputer = imputer_class()
    imputer.fit(TimeSeriesDataset(X=TRAIN))
    imputed = imputer.impute(TimeSeriesDataset(X=TEST))
    assert imputed.dtype == np.float32
    np.testing.assert_array_equal(imputed, table)
    np.testing.assert_array_equal(imputer.predict(TEST)["imputation"], table)  # a bare array works too
    np.testing.assert_array_equal(TEST[~np.isnan(TEST)], imputed[~np.isnan(TEST)])


def test_locf_carries_each_records_own_last_observation() -> None:
    """Two records: nothing carries over from one record (or feature) to the next."""
    imputer = LOCFImputer()
    imputer.fit(TimeSeriesDataset(X=TRAIN))
    test = np.array([[[1.0, nan], [nan, nan]], [[nan, nan], [nan, 3.0]]], dtype=np.float32)
    imputer.feature_mean = np.array([-7.0, -9.0], dtype=np.float32)  # a 2-feature model
    expected = np.array([[[1.0, -9.0], [1.0, -9.0]], [[-7.0, -9.0], [-7.0, 3.0]]], dtype=np.float32)
    np.testing.assert_array_equal(imputer.impute(test), expected)


@pytest.mark.parametrize(("imputer_class", "table"), [(LOCFImputer, LOCF_TABLE), (MeanImputer, MEAN_TABLE)])
def test_evaluate_scores_only_the_removed_entries(imputer_class: type, table: np.ndarray) -> None:
    """Ground truth on three removed entries: |x - x_hat| summed over them, over count / over sum |x|."""
    original = TEST.copy()
    original[0, 1, 1] = 1.0  # removed: LOCF 10, mean -1
    original[0, 3, 0] = 5.0  # removed: LOCF 2, mean 4
    original[0, 4, 2] = -2.0  # removed: LOCF 6, mean 0
    imputer = imputer_class()
    imputer.fit(TimeSeriesDataset(X=TRAIN))
    scores = imputer.evaluate(TimeSeriesDataset(X=TEST, X_ori=original))
    errors = [abs(original[0, 1, 1] - table[0, 1, 1]), abs(original[0, 3, 0] - table[0, 3, 0]),
              abs(original[0, 4, 2] - table[0, 4, 2])]
    assert scores["mae"] == pytest.approx(sum(errors) / 3)
    assert scores["mre"] == pytest.approx(sum(errors) / (1.0 + 5.0 + 2.0))
    expected = {LOCFImputer: (9 + 3 + 8) / 3, MeanImputer: (2 + 1 + 2) / 3}[imputer_class]
    assert scores["mae"] == pytest.approx(expected)


def test_unfitted_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(RuntimeError, match="LOCFImputer is not fitted"):
        LOCFImputer().impute(TEST)
    imputer = MeanImputer()
    imputer.fit(TimeSeriesDataset(X=TRAIN))
    with pytest.raises(DatasetError, match=r"^test \(toy\) has 2 features, the model was fitted on 4"):
        imputer.impute(TimeSeriesDataset(X=TEST[..., :2], name="toy"))
    with pytest.raises(DatasetError, match=r"^test \(toy\) has no artificially removed entries"):
        imputer.evaluate(TimeSeriesDataset(X=TEST, name="toy"))
    with pytest.raises(DatasetError, match=r"^test \(toy\) has no artificially removed entries"):
        imputer.evaluate(TimeSeriesDataset(X=TEST, X_ori=TEST.copy(), name="toy"))  # nothing was removed
    with pytest.raises(DatasetError, match=r"^train \(toy\) is empty"):
        MeanImputer().fit(TimeSeriesDataset(X=np.zeros((0, 5, 4), dtype=np.float32), name="toy"))
