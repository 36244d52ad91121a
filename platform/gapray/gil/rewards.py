"""GIL rewards (paper Sec. 2.3 and 2.4, Appendix D.1 Eq. 43)."""

from __future__ import annotations

import torch


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements."""
    return ((a - b) ** 2).mean()


def distributional_difference(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``D(zeta+, zeta-)`` of GIL-D (paper Appendix D.1, Eq. 43) for a label-balanced batch.

    With ``F+`` the ``b/2`` feature rows of label 1 and ``F-`` those of label 0 (in batch
    order), and ``q = b/4``::

        D = MSE(F+[:q], F-[:q]) + MSE(F+[q:2q], F-[q:2q])
            - MSE(F+[:q], F+[q:2q]) - MSE(F-[:q], F-[q:2q])

    i.e. between-label distance minus within-label distance.
    """
    positives, negatives = features[labels == 1], features[labels == 0]
    half = min(len(positives), len(negatives))
    if half < 2 or half != len(features) // 2 or half % 2:
        raise ValueError(f"Eq. 43 needs a batch of b/2 samples per label with b divisible by 4, got "
                         f"{len(positives)} positive and {len(negatives)} negative rows")
    q = half // 2
    return (mse(positives[:q], negatives[:q]) + mse(positives[q:2 * q], negatives[q:2 * q])
            - mse(positives[:q], positives[q:2 * q]) - mse(negatives[:q], negatives[q:2 * q]))


def gil_reward(loss: float, difference: float | None = None, coefficient: float = 10.0) -> float:
    """``R = -E(y, y_hat)`` (GIL, Sec. 2.3) or ``-E + c * D`` (GIL-D, Sec. 2.4: the paper only asks
    ``c > 0``; the reference code uses ``c = 10`` for the MLP and ``c = 5`` for the LSTM)."""
    return -loss if difference is None else -loss + coefficient * difference
