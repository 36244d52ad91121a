"""What a fitted imputer carries so that it takes data, and gives results back, in original units.

BRITS and DEARI train on z-scores: per variable, ``(x - mean) / std`` with the mean and standard
deviation of the observed training values (:class:`gapray.data.Standardizer`, DESIGN.md
section 2). :class:`Preprocessing` keeps that scaler, the variable names and, for a model fitted
on a user's table, the :class:`gapray.data.TableFormat` that reads new tables the same way.
``RecurrentImputer.save``/``load`` store it (``model.preprocessing``), and so does the registered
MLflow model.

- :func:`fit_in_original_units` splits a dataset in original units, fits the scaler on the
  training part, trains, and attaches the preprocessing.
- :func:`predict_in_original_units` scales the input, predicts, and maps the imputation and its
  intervals back (``x = z * std + mean``; a standard deviation scales by ``std``). Observed values
  come back exactly as given.
- :func:`impute_frame` is the whole path for a table: read with the model's format, predict, and
  write the grid back (:func:`gapray.data.to_frame`).

Data whose variables differ from the model's is refused, naming the missing and unexpected ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.masking import remove_observed_per_sample
from gapray.data.normalization import Standardizer
from gapray.data.splits import Split, holdout_indices

if TYPE_CHECKING:
    import pandas as pd

    from gapray.data.table import Layout, TableFormat

VALUE_SUFFIXES = ("imputation", "lower", "upper", "samples")
"""Prediction keys ending so are values: mapped back with ``z * std + mean``."""
SCALE_SUFFIXES = ("std",)
"""Prediction keys ending so are spreads: mapped back with ``s * std``."""


def differing_variables(found: tuple[str, ...], expected: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(missing, unexpected)``: the model's variables absent from ``found``, and the others."""
    return [v for v in expected if v not in set(found)], [v for v in found if v not in set(expected)]


@dataclass(frozen=True)
class Preprocessing:
    """The training scaler, the variable names and (for tables) the format a model was fitted with."""

    feature_names: tuple[str, ...]
    """The model's variables (features), in the model's order."""
    standardizer: Standardizer
    """Per-variable mean and std of the observed training values (DEARI's z-scoring)."""
    table: TableFormat | None = None
    """How the training table was read; reads new tables the same way (None: fitted on arrays)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        n = len(self.feature_names)
        if self.standardizer.mean.shape != (n,) or self.standardizer.std.shape != (n,):
            raise ValueError(f"scaler has shapes {self.standardizer.mean.shape}/{self.standardizer.std.shape} "
                             f"for {n} variables")

    @classmethod
    def fit(cls, train: TimeSeriesDataset) -> Preprocessing:
        """Scaler fitted on ``train`` (original units), its variable names and table format."""
        return cls(train.feature_names, Standardizer.fit(train), _table_format(train))

    @classmethod
    def from_split(cls, split: Split) -> Preprocessing:
        """The preprocessing of a model trained on ``split`` (its training scaler, names and table format)."""
        return cls(split.train.feature_names, split.standardizer, _table_format(split.train))

    # --- checks and conversions ----------------------------------------------------------------
    def check(self, dataset: TimeSeriesDataset) -> None:
        """Refuse data with other variables (names the missing and unexpected ones) or another order."""
        if dataset.feature_names == self.feature_names:
            return
        missing, unexpected = differing_variables(dataset.feature_names, self.feature_names)
        if missing or unexpected:
            raise DatasetError(f"{dataset.name}: the variables differ from the model's: missing {missing}, "
                               f"unexpected {unexpected}")
        raise DatasetError(f"{dataset.name}: the model's variables in another order; read tables with the model's "
                           f"format (Preprocessing.read_frame) or reorder to {list(self.feature_names)}")

    def as_dataset(self, data: TimeSeriesDataset | np.ndarray, role: str = "data") -> TimeSeriesDataset:
        """``data`` as a checked dataset; a raw ``[N, T, D]`` array takes the model's variable names."""
        if isinstance(data, np.ndarray):
            if data.ndim != 3 or data.shape[-1] != len(self.feature_names):
                raise DatasetError(f"{role}: expected an [N, T, {len(self.feature_names)}] array (the model's "
                                   f"variables {list(self.feature_names)}), got shape {data.shape}")
            return TimeSeriesDataset(X=data, feature_names=self.feature_names, name=role)
        if not isinstance(data, TimeSeriesDataset):
            raise DatasetError(f"{role}: expected a TimeSeriesDataset or an [N, T, D] array, got {type(data).__name__}")
        self.check(data)
        return data

    def to_model_units(self, dataset: TimeSeriesDataset) -> TimeSeriesDataset:
        """z-scores of ``dataset`` (checked first)."""
        self.check(dataset)
        return self.standardizer.transform(dataset)

    def to_original_units(self, prediction: Mapping[str, np.ndarray], dataset: TimeSeriesDataset
                          ) -> dict[str, np.ndarray]:
        """A prediction on ``dataset``'s z-scores back in original units.

        Values (keys ending in ``imputation``, ``lower``, ``upper``, ``samples``) become
        ``z * std + mean``, spreads (``std``) ``s * std``; other keys are passed through. On
        observed entries the values are ``dataset.X`` itself (bit for bit) and spreads 0.
        """
        mean, scale = self.standardizer.mean, self.standardizer.std
        observed = ~np.isnan(dataset.X)
        out: dict[str, np.ndarray] = {}
        for key, array in prediction.items():
            if array is None:
                continue
            array = np.asarray(array)
            if key.endswith(VALUE_SUFFIXES):
                converted = array * scale + mean
                out[key] = np.where(observed, dataset.X, converted).astype(array.dtype, copy=False)
            elif key.endswith(SCALE_SUFFIXES):
                out[key] = np.where(observed, 0.0, array * scale).astype(array.dtype, copy=False)
            else:
                out[key] = array
        return out

    # --- tables ---------------------------------------------------------------------------------
    def require_table(self) -> TableFormat:
        if self.table is None:
            raise DatasetError("this model was fitted on arrays, not on a table: it has no table format "
                               "(fit it with `gapray fit --data ...` or gapray.data.read_table)")
        return self.table

    def read_frame(self, frame: pd.DataFrame, source: str = "table", is_csv: bool = False) -> TimeSeriesDataset:
        """New data read exactly as the training table was (long or wide); other variables are refused."""
        from gapray.data.table import frame_to_dataset

        return frame_to_dataset(frame, self.require_table(), source=source, require_observed=False, strict=True,
                                is_csv=is_csv)

    # --- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and floats (checkpoints are read with ``torch.load(weights_only=True)``)."""
        return {
            "feature_names": list(self.feature_names),
            "mean": [float(v) for v in self.standardizer.mean],
            "std": [float(v) for v in self.standardizer.std],
            "table": None if self.table is None else self.table.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        table = None
        if values.get("table") is not None:
            from gapray.data.table import TableFormat

            table = TableFormat.from_dict(values["table"])
        scaler = Standardizer(mean=np.asarray(values["mean"], dtype=np.float32),
                              std=np.asarray(values["std"], dtype=np.float32))
        return cls(tuple(values["feature_names"]), scaler, table)


def _table_format(dataset: TimeSeriesDataset) -> TableFormat | None:
    """The format of a dataset read from a table, else None."""
    from gapray.data.table import TableFormat

    table = dataset.extra.get("table")
    return table if isinstance(table, TableFormat) else None


def require_preprocessing(model: Any) -> Preprocessing:
    """``model.preprocessing``, or a clear error for a model trained on z-scores without it."""
    preprocessing = getattr(model, "preprocessing", None)
    if not isinstance(preprocessing, Preprocessing):
        raise DatasetError(f"{type(model).__name__} carries no preprocessing (scaler and variable names): it was "
                           "trained on z-scored arrays; fit it with fit_in_original_units or `gapray fit`")
    return preprocessing


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_in_original_units` did."""

    history: list[dict[str, float]]
    """Per-epoch metrics of ``model.fit`` (``val_mae`` in z-units)."""
    train_index: np.ndarray
    """The dataset's samples the model (and its scaler) was fitted on."""
    val_index: np.ndarray
    """The samples held out for validation (empty: trained without validation)."""
    val_mae: float
    """MAE on the validation entries held out for scoring, in original units (NaN without validation)."""


def _validation_index(dataset: TimeSeriesDataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation samples; whole series go to one side when there are several."""
    ids = dataset.record_ids
    if ids is not None:
        unique, series = np.unique(ids, return_inverse=True)
        if unique.size >= 2:
            _, val_series = holdout_indices(unique.size, val_fraction, seed)
            in_val = np.isin(series, val_series)
            return np.flatnonzero(~in_val), np.flatnonzero(in_val)
    return holdout_indices(len(dataset), val_fraction, seed)


def fit_in_original_units(model: Any, dataset: TimeSeriesDataset, val_fraction: float = 0.1,
                          mask_rate: float = 0.1, seed: int = 0, **fit_kwargs: Any) -> FitResult:
    """Fit ``model`` on ``dataset`` in original units and attach its :class:`Preprocessing`.

    ``val_fraction`` of the series (of the samples, for a single series) are held out; ``mask_rate``
    of each validation sample's observed values are removed as the early-stopping ground truth
    (DEARI protocol). The scaler is fitted on the training part only. ``val_fraction=0``, or a
    single sample, trains without validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction > 0 and len(dataset) >= 2:
        train_index, val_index = _validation_index(dataset, val_fraction, seed)
    else:
        train_index, val_index = np.arange(len(dataset)), np.arange(0)
    train_raw = dataset.subset(train_index)
    preprocessing = Preprocessing.fit(train_raw)
    train = preprocessing.standardizer.transform(train_raw)
    val_raw = val = None
    if val_index.size:
        val_raw = remove_observed_per_sample(dataset.subset(val_index), mask_rate, seed)
        val = preprocessing.standardizer.transform(val_raw)
        if not val.indicating_mask.any():
            val_raw = val = None
    history = model.fit(train, val, **fit_kwargs)
    model.preprocessing = preprocessing
    val_mae = math.nan
    if val_raw is not None:
        assert val_raw.X_ori is not None
        imputation = predict_in_original_units(model, val_raw)["imputation"]
        held = val_raw.indicating_mask > 0
        val_mae = float(np.abs(imputation[held].astype(np.float64) - val_raw.X_ori[held]).mean())
    return FitResult(history=history, train_index=train_index, val_index=val_index if val is not None else
                     np.arange(0), val_mae=val_mae)


def predict_in_original_units(model: Any, data: TimeSeriesDataset | np.ndarray,
                              **predict_kwargs: Any) -> dict[str, np.ndarray]:
    """``model.predict`` on data in original units; results in original units (observed values exact)."""
    preprocessing = require_preprocessing(model)
    dataset = preprocessing.as_dataset(data)
    prediction = model.predict(preprocessing.standardizer.transform(dataset), **predict_kwargs)
    return preprocessing.to_original_units(prediction, dataset)


def impute_frame(model: Any, frame: pd.DataFrame, source: str = "table", is_csv: bool = False,
                 layout: Layout | None = None, **predict_kwargs: Any) -> pd.DataFrame:
    """A table in, the filled table out (its own layout unless ``layout``), with ``value``, ``imputed``,
    ``std``, ``lower`` and ``upper`` (see :func:`gapray.data.to_frame`)."""
    from gapray.data.table_output import to_frame

    dataset = require_preprocessing(model).read_frame(frame, source=source, is_csv=is_csv)
    return to_frame(dataset, predict_in_original_units(model, dataset, **predict_kwargs), layout=layout)
