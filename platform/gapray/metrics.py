"""Evaluation metrics: masked imputation errors (DESIGN.md sec. 2) and classification scores.

``e`` is the evaluation mask (1 on the artificially removed entries):
MAE = sum(|x - x_hat| e) / sum(e), MRE = sum(|x - x_hat| e) / sum(|x| e),
MSE = sum((x - x_hat)^2 e) / sum(e). NaN in ``x`` outside ``e`` is ignored.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score


def _masked_parts(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if not prediction.shape == target.shape == mask.shape:
        raise ValueError(f"shapes differ: prediction {prediction.shape}, target {target.shape}, mask {mask.shape}")
    if mask.sum() == 0:
        raise ValueError("the evaluation mask is empty: nothing to score")
    return np.where(mask > 0, target, 0.0), np.where(mask > 0, prediction, 0.0)


def masked_mae(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    target, prediction = _masked_parts(prediction, target, mask)
    return float(np.abs(target - prediction).sum() / np.asarray(mask, dtype=np.float64).sum())


def masked_mse(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    target, prediction = _masked_parts(prediction, target, mask)
    return float(((target - prediction) ** 2).sum() / np.asarray(mask, dtype=np.float64).sum())


def masked_mre(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    target, prediction = _masked_parts(prediction, target, mask)
    return float(np.abs(target - prediction).sum() / np.abs(target).sum())


def classification_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, ROC AUC and average precision (binary: ``probabilities`` ``[N]`` or ``[N, 2]``;
    multi-class: ``[N, C]``, AUC one-vs-rest macro, AP macro over one-hot labels)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 2 and probabilities.shape[1] == 2:
        probabilities = probabilities[:, 1]
    if probabilities.ndim == 1:
        return {
            "accuracy": float(accuracy_score(labels, probabilities >= 0.5)),
            "auc": float(roc_auc_score(labels, probabilities)),
            "ap": float(average_precision_score(labels, probabilities)),
        }
    n_classes = probabilities.shape[1]
    one_hot = np.eye(n_classes)[labels]
    return {
        "accuracy": float(accuracy_score(labels, probabilities.argmax(axis=1))),
        "auc": float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=np.arange(n_classes))),
        "ap": float(average_precision_score(one_hot, probabilities, average="macro")),
    }
