"""Checkpoint selection protocols of GIL comparisons (``docs/gil_reproduction.md``).

A training run is scored every few steps; a protocol picks the checkpoint whose test scores
are reported:

* ``validation`` (gapray's): the checkpoint with the best validation score (``metric``, AUC by
  default; the first one on ties), scored on test once. The test split never influences the
  choice.
* ``reference`` (the GIL reference code, ``gaoqitong/gradient-importance-learning`` at e086d4c:
  ``tabular_mlp_GIL_train.py`` lines 315-330, ``seq_lstm_GIL_train.py`` lines 403-415): every
  10 steps the *test* split is scored, and the run reports the highest test accuracy seen with
  the AUC and AP of that same step (the first maximum: the scripts update on a strict ``>``).
  There is no validation split. Because the maximum is taken over the test scores themselves,
  the reported number is biased upwards by the run's step-to-step noise, and two runs of the
  same method (or of two methods with identical gradients) differ by more than their
  validation-selected scores do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

PROTOCOLS = ("validation", "reference")


@dataclass(frozen=True)
class Checkpoint:
    """Scores of one training run at one step."""

    step: int
    """Predictor updates done."""
    val: dict[str, float] = field(default_factory=dict)
    """Validation ``accuracy``, ``auc``, ``ap``."""
    test: dict[str, float] = field(default_factory=dict)
    """Test ``accuracy``, ``auc``, ``ap``."""


def select_checkpoint(trajectory: Sequence[Checkpoint], protocol: str, metric: str = "auc",
                      every: int | None = None) -> Checkpoint:
    """The checkpoint ``protocol`` reports from ``trajectory`` (in step order).

    Args:
        trajectory: the run's checkpoints.
        protocol: ``validation`` (best validation ``metric``) or ``reference`` (best test
            accuracy; ``metric`` is ignored, as in the reference scripts).
        metric: validation metric of the ``validation`` protocol.
        every: consider only checkpoints whose step is a multiple of this (e.g. gapray's
            validation every 100 steps on a run scored every 10); None: all of them.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    candidates = [c for c in trajectory if every is None or c.step % every == 0]
    if not candidates:
        raise ValueError(f"no checkpoint to select from ({len(trajectory)} in the run, every={every})")
    split, key = ("test", "accuracy") if protocol == "reference" else ("val", metric)
    best = candidates[0]
    for checkpoint in candidates[1:]:
        if getattr(checkpoint, split)[key] > getattr(best, split)[key]:
            best = checkpoint
    return best
