"""Results back into a user's table: the grid of a table-read dataset, with imputations, as a DataFrame.

:func:`to_frame` writes in the layout the table was read in (or the other one);
:func:`write_table` writes a CSV or Parquet file atomically (a temporary file beside it, then
``os.replace``), so a failed write leaves nothing half-written. See :mod:`gapray.data.table` for
how a table is read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.table import PARQUET_SUFFIXES, Layout, TableFormat, is_csv_path

OUTPUT_FIELDS = ("imputed", "std", "lower", "upper")
"""Columns :func:`to_frame` adds beside ``value`` (wide layout: ``<variable>_<field>``)."""
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz"}


def _bin_times(dataset: TimeSeriesDataset, fmt: TableFormat) -> np.ndarray | pd.DatetimeIndex:
    """Start time of every bin, ``[N * T]`` (numbers, or timestamps in the input's time zone)."""
    bins = (np.asarray(dataset.extra["bin_start"])[:, None] + np.arange(dataset.n_steps)).ravel()
    if not fmt.is_datetime:
        return float(fmt.origin_value) + bins * float(fmt.step)
    stamps = pd.to_datetime(int(fmt.origin_value) + bins * int(fmt.step), unit="ns")
    if fmt.time_zone is not None:
        stamps = stamps.tz_localize("UTC").tz_convert(fmt.time_zone)
    return stamps


def as_table_dataset(dataset: TimeSeriesDataset) -> TimeSeriesDataset:
    """``dataset`` when it was read from a table; else the same grid described as a table.

    A benchmark dataset (e.g. :func:`gapray.data.loaders.load_physionet2012`) is then written with
    columns ``id`` (its record ids when they are unique, else the sample index) and ``time`` (the
    step index ``0..T-1``: numeric times, ``freq`` 1, origin 0, one window per id), so reading the
    long table back with that format gives the same arrays.
    """
    if isinstance(dataset.extra.get("table"), TableFormat) and "table_values" in dataset.extra:
        return dataset
    ids = dataset.record_ids
    if ids is None or np.unique(ids).size != len(dataset):
        ids = np.arange(len(dataset))
    fmt = TableFormat(id_col="id", time_col="time", freq=1.0, window=dataset.n_steps, windows="first", origin=0.0,
                      variables=dataset.feature_names, layout="long",
                      id_type="long" if np.issubdtype(np.asarray(ids).dtype, np.integer) else "string")
    extra = {**dataset.extra, "table": fmt, "table_values": dataset.X.astype(np.float64),
             "bin_start": np.zeros(len(dataset), dtype=np.int64)}
    return dataset.replace(record_ids=ids, extra=extra)


def _table_parts(dataset: TimeSeriesDataset, prediction: Mapping[str, np.ndarray] | None
                 ) -> tuple[TimeSeriesDataset, TableFormat, dict[str, np.ndarray], np.ndarray]:
    """The dataset as a table, its format, per-field ``[N, T, D]`` float64 arrays (``value``,
    ``imputed``, ...) and the valid steps ``[N, T]``."""
    dataset = as_table_dataset(dataset)
    fmt = dataset.extra["table"]
    assert isinstance(fmt, TableFormat)
    values = np.asarray(dataset.extra["table_values"], dtype=np.float64)
    observed = ~np.isnan(values)
    shape = values.shape
    fields: dict[str, np.ndarray] = {}
    imputation = values if prediction is None else np.asarray(prediction["imputation"], dtype=np.float64)
    if imputation.shape != shape:
        raise DatasetError(f"{dataset.name}: prediction has shape {imputation.shape}, the table's grid {shape}")
    fields["value"] = np.where(observed, values, imputation)
    fields["imputed"] = ~observed
    for name in ("std", "lower", "upper"):
        given = None if prediction is None else prediction.get(name)
        if name == "std" and prediction is not None and prediction.get("calibrated_std") is not None:
            given = prediction["calibrated_std"]  # the std of the calibrated interval
        estimate = np.full(shape, np.nan) if given is None else np.asarray(given, dtype=np.float64)
        fields[name] = np.where(observed, 0.0 if name == "std" else values, estimate)
    lengths = dataset.lengths if dataset.lengths is not None else np.full(len(dataset), dataset.n_steps)
    valid = np.arange(dataset.n_steps)[None, :] < np.asarray(lengths)[:, None]
    return dataset, fmt, fields, valid


def _categories_out(fields: dict[str, np.ndarray], fmt: TableFormat) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each categorical variable's level (most likely one-hot) and whether it was imputed, ``[N, T]``."""
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    offset = len(fmt.variables or ())
    for name, levels in fmt.categories:
        block = fields["value"][..., offset:offset + len(levels)]
        imputed = np.asarray(fields["imputed"][..., offset:offset + len(levels)].all(axis=-1))
        best = np.argmax(np.nan_to_num(block, nan=-np.inf), axis=-1)
        level = np.asarray(levels, dtype=object)[best]
        level[np.isnan(block).all(axis=-1)] = None
        out.append((name, level, imputed))
        offset += len(levels)
    return out


def to_frame(dataset: TimeSeriesDataset, prediction: Mapping[str, np.ndarray] | None = None,
             layout: Layout | None = None) -> pd.DataFrame:
    """The grid as a table in ``layout`` (default: the layout it was read in), with imputations.

    ``prediction`` holds ``[N, T, D]`` arrays in original units: ``imputation`` and optionally
    ``std`` (``calibrated_std`` when given: the std of a calibrated interval), ``lower``, ``upper`` (e.g. from
    :func:`gapray.imputation.preprocessing.predict_in_original_units`). Observed bins keep the
    table's own float64 values bit for bit (``std`` 0, ``lower`` = ``upper`` = the value);
    ``imputed`` is True where the bin had no value. Rows cover each series from its first bin to
    its last (window padding is left out). Long layout: ``id, time, variable, value, imputed, std,
    lower, upper``; wide: ``id, time`` and per variable ``<v>, <v>_imputed, <v>_std, <v>_lower,
    <v>_upper``. A categorical variable gets its most likely level and ``imputed`` (no interval);
    in the long layout its rows then hold text, so the numeric values are written as ``repr``
    text (exact round trip).
    """
    dataset, fmt, fields, valid = _table_parts(dataset, prediction)
    layout = layout or fmt.layout or "long"
    n_numeric = len(fmt.variables or ())
    keep = valid.ravel()
    ids = np.repeat(np.asarray(dataset.record_ids, dtype=object) if dataset.record_ids is not None
                    else np.arange(len(dataset)), dataset.n_steps)[keep]
    times = _bin_times(dataset, fmt)[keep]
    categories = _categories_out(fields, fmt)
    flat = {name: array.reshape(-1, array.shape[-1])[keep] for name, array in fields.items()}
    if layout == "wide":
        columns: dict[str, Any] = {fmt.id_col: ids, fmt.time_col: times}
        for index, name in enumerate(fmt.variables or ()):
            columns[name] = flat["value"][:, index]
            for field in OUTPUT_FIELDS:
                columns[f"{name}_{field}"] = flat[field][:, index]
        for name, level, imputed in categories:
            columns[name] = level.ravel()[keep]
            columns[f"{name}_imputed"] = imputed.ravel()[keep]
        return _typed(pd.DataFrame(columns), fmt)
    n_rows = int(keep.sum())
    numeric_names = list(fmt.variables or ())
    parts = [pd.DataFrame({
        fmt.id_col: np.repeat(ids, n_numeric),
        fmt.time_col: np.repeat(np.asarray(times), n_numeric) if not fmt.is_datetime else times.repeat(n_numeric),
        fmt.variable_col: np.tile(np.asarray(numeric_names, dtype=object), n_rows),
        fmt.value_col: flat["value"][:, :n_numeric].ravel(),
        **{field: flat[field][:, :n_numeric].ravel() for field in OUTPUT_FIELDS},
        "_order": np.repeat(np.arange(n_rows), n_numeric) * (len(categories) + 1),
    })]
    for position, (name, level, imputed) in enumerate(categories, start=1):
        parts.append(pd.DataFrame({
            fmt.id_col: ids, fmt.time_col: times, fmt.variable_col: name, fmt.value_col: level.ravel()[keep],
            "imputed": imputed.ravel()[keep], "std": np.nan, "lower": np.nan, "upper": np.nan,
            "_order": np.arange(n_rows) * (len(categories) + 1) + position,
        }))
    if categories:
        parts[0][fmt.value_col] = [repr(float(v)) for v in parts[0][fmt.value_col]]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame = frame.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    return _typed(frame, fmt)


def _typed(frame: pd.DataFrame, fmt: TableFormat) -> pd.DataFrame:
    """Ids back to integers when they were; ``imputed`` columns as bool."""
    if fmt.id_type == "long":
        frame[fmt.id_col] = frame[fmt.id_col].astype(np.int64)
    for column in frame.columns:
        if column == "imputed" or str(column).endswith("_imputed"):
            frame[column] = frame[column].astype(bool)
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) through a temporary file and ``os.replace``.

    A failure leaves nothing at ``path`` (an existing file there is kept as it was).
    """
    path = Path(path)
    if not (is_csv_path(path) or path.name.lower().endswith(PARQUET_SUFFIXES)):
        raise DatasetError(f"{path}: unknown output type; use .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        if is_csv_path(path):
            frame.to_csv(temporary, index=False, compression=_COMPRESSION.get(path.suffix.lower()))
        else:
            frame.to_parquet(temporary, index=False)
        umask = os.umask(0o022)  # read the process umask back (mkstemp made the file 0600)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
