"""Masked imputation errors and classification scores against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from gapray.metrics import classification_scores, masked_mae, masked_mre, masked_mse


def test_masked_errors_count_only_evaluation_entries() -> None:
    target = np.array([[1.0, -2.0, np.nan], [4.0, 0.5, 3.0]])
    prediction = np.array([[2.0, -2.5, 9.0], [100.0, 0.0, 1.0]])
    mask = np.array([[1, 1, 0], [0, 1, 1]])
    # errors on the mask: |1-2|=1, |-2+2.5|=0.5, |0.5-0|=0.5, |3-1|=2 -> sum 4 over 4 entries
    assert masked_mae(prediction, target, mask) == pytest.approx(1.0)
    assert masked_mse(prediction, target, mask) == pytest.approx((1 + 0.25 + 0.25 + 4) / 4)
    assert masked_mre(prediction, target, mask) == pytest.approx(4.0 / (1 + 2 + 0.5 + 3))


def test_masked_errors_reject_empty_masks_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="empty"):
        masked_mae(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="shapes differ"):
        masked_mae(np.zeros(3), np.zeros(2), np.ones(3))


def test_binary_classification_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([0.1, 0.6, 0.4, 0.9])
    scores = classification_scores(labels, probabilities)
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered correctly
    # AP: ranking 0.9(+), 0.6(-), 0.4(+), 0.1(-): precision at recalls 1/2 and 1 = 1 and 2/3
    assert scores["ap"] == pytest.approx((1 + 2 / 3) / 2)


def test_multiclass_scores_use_argmax_accuracy() -> None:
    labels = np.array([0, 1, 2])
    probabilities = np.eye(3)[[0, 1, 1]] * 0.8 + 0.2 / 3
    scores = classification_scores(labels, probabilities)
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert 0.0 <= scores["auc"] <= 1.0
