"""Two-step baselines of GIL's experiments (paper Sec. 4.1): impute, then train the same predictor.

* ``mean``: every missing value becomes its feature's training mean
  (:class:`gapray.imputation.MeanImputer`).
* ``deari`` / ``brits``: the recurrent imputation models of :mod:`gapray.imputation`, fitted on
  the training split with early stopping on validation entries removed per the DEARI protocol.

The imputed task has no missing entries left, so the predictor then trains with the ``ones``
policy (plain back-propagation).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.masking import remove_observed_per_sample
from gapray.gil.datasets import GILTask
from gapray.gil.training import GILTrainer, TrainingConfig, TrainResult

IMPUTERS = ("mean", "deari", "brits")


class Imputer(Protocol):
    def fit(self, train: TimeSeriesDataset, val: TimeSeriesDataset | None = None) -> Any: ...

    def impute(self, test: TimeSeriesDataset) -> np.ndarray: ...


def build_imputer(name: str, **config: Any) -> Imputer:
    """``mean``, or ``deari``/``brits`` built with ``config`` overrides of their config dataclass."""
    if name == "mean":
        from gapray.imputation import MeanImputer

        return MeanImputer()
    if name in ("deari", "brits"):
        from gapray.imputation import BRITS, DEARI

        model = DEARI if name == "deari" else BRITS
        return model(**config)  # type: ignore[no-any-return]
    raise ValueError(f"unknown imputer {name!r}: expected one of {', '.join(IMPUTERS)}")


def impute_task(task: GILTask, imputer: Imputer, validation_rate: float = 0.1, seed: int = 0) -> GILTask:
    """Fit ``imputer`` on ``task.train`` and replace every split's missing values by its imputation.

    Validation for early stopping needs held-out observed entries: when ``task.val`` has none,
    ``validation_rate`` of each sample's observed values are removed (DEARI protocol).
    """
    val = task.val
    if val.X_ori is None or not val.indicating_mask.any():
        val = remove_observed_per_sample(val, validation_rate, seed)
    imputer.fit(task.train.replace(X_ori=None), val)

    def filled(ds: TimeSeriesDataset) -> TimeSeriesDataset:
        X = np.asarray(imputer.impute(ds.replace(X_ori=None)), dtype=np.float32)
        return ds.replace(X=np.where(np.isnan(ds.X), X, ds.X))

    return dataclasses.replace(task, train=filled(task.train), val=filled(task.val), test=filled(task.test))


def train_imputed(task: GILTask, imputer: str, config: TrainingConfig | None = None,
                  imputer_config: dict[str, Any] | None = None) -> TrainResult:
    """Impute with ``imputer`` (see :data:`IMPUTERS`), then train the predictor with ``ones``."""
    config = config or TrainingConfig()
    imputed = impute_task(task, build_imputer(imputer, **(imputer_config or {})), seed=config.seed)
    return GILTrainer(config).fit(imputed, "ones")
