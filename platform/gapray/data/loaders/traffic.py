"""UCI Metro Interstate Traffic Volume (dataset 492): hourly I-94 westbound volume with weather.

Publisher file: ``Metro_Interstate_Traffic_Volume.csv.gz`` (or the plain ``.csv``), columns
holiday, temp, rain_1h, snow_1h, clouds_all, weather_main, weather_description, date_time,
traffic_volume. It is read with ``keep_default_na=False``: the holiday value ``None`` is text
(DESIGN.md section 6).

Steps (DESIGN.md section 2):

1. Repeated hours (the file has one row per weather condition in an hour) are merged: the
   numeric features come from the hour's first row; the weather one-hots are the union
   (maximum) over all its rows, so an hour with rain and mist has both set.
2. The hours are reindexed to the full hourly range from the first to the last stamp; hours
   absent from the file (gaps of up to 307 days in the full file) are missing (NaN), one-hot
   columns included.
3. Features: the 5 numeric columns (temp, rain_1h, snow_1h, clouds_all, traffic_volume) and a
   one-hot column for every value of weather_main, weather_description and holiday *present in
   the file* (holiday ``None`` included), named ``"weather_main=Clouds"`` etc. Values are raw
   (the full file has a few ``temp = 0`` K and one ``rain_1h = 9831`` outlier; we keep them).
4. Non-overlapping windows of ``window`` hours from the first stamp; a last partial window is
   dropped. ``drop_empty_windows=True`` also drops windows with no observed hour.

How close to DEARI's "1,860 samples with 58 variables": the 2,000-row sample in
``traffic/`` (2012-10-02 09:00 to 2012-12-14 14:00, 307 repeated rows, 1,693 distinct of 1,758
hours) gives 73 windows x 24 h x 39 features (5 numeric + 9 weather_main + 21
weather_description + 4 holiday values present). The full file (``traffic/full/``, 48,204 rows,
2012-10-02 09:00 to 2018-09-30 23:00; measured, ``tests/data/test_loaders_other.py``) gives
2,189 windows x 24 h x 66 features; ``drop_empty_windows=True`` drops the 330 windows with no
row (312 of them in the gap of 2014-08 to 2015-06) and leaves **1,859**, the paper's 1,860 to one
window. 66 = 5 + 11 weather_main + 38 weather_description + 12 holiday values (None and 11
holidays); the paper's 58 cannot be reproduced from its text (it does not say which
categories it kept). ``benchmarks/imputation.py --dataset traffic`` drops empty windows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from gapray.data.cache import cached_dataset
from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.loaders._common import non_overlapping_windows

TRAFFIC_NUMERIC: tuple[str, ...] = ("temp", "rain_1h", "snow_1h", "clouds_all", "traffic_volume")
TRAFFIC_CATEGORICAL: tuple[str, ...] = ("weather_main", "weather_description", "holiday")
TRAFFIC_FILE = "Metro_Interstate_Traffic_Volume.csv.gz"
_PARSER_VERSION = 1


def traffic_file(root: str | os.PathLike[str]) -> Path:
    """The CSV (``.csv`` or ``.csv.gz``) at ``root``, or the one inside folder ``root``."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"traffic: {root} does not exist")
    for name in (TRAFFIC_FILE, TRAFFIC_FILE.removesuffix(".gz")):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("Metro_Interstate_Traffic_Volume*.csv*"))
    if not found:
        raise DatasetError(f"{root}: no Metro_Interstate_Traffic_Volume*.csv[.gz] file")
    return found[0]


def _read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot parse ({error})") from error
    missing = [c for c in (*TRAFFIC_NUMERIC, *TRAFFIC_CATEGORICAL, "date_time") if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: line 1: missing column(s) {missing}")
    if frame.empty:
        raise DatasetError(f"{path}: no data rows")
    stamps = pd.to_datetime(frame["date_time"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DatasetError(f"{path}: line {row + 2}: field date_time: expected YYYY-MM-DD hh:mm:ss, "
                           f"got {frame['date_time'].iat[row]!r}")
    for column in TRAFFIC_NUMERIC:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DatasetError(f"{path}: line {row + 2}: field {column}: not a number: {frame[column].iat[row]!r}")
        frame[column] = values.astype(np.float64)
    frame["date_time"] = stamps.dt.floor("h")
    return frame


def _build(path: Path, window: int, drop_empty_windows: bool) -> TimeSeriesDataset:
    frame = _read(path)
    hour = frame["date_time"]
    numeric = frame[list(TRAFFIC_NUMERIC)].groupby(hour, sort=True).first()
    onehot_columns: list[str] = []
    onehots = []
    for column in TRAFFIC_CATEGORICAL:
        categories = sorted(frame[column].unique())
        onehot_columns += [f"{column}={c}" for c in categories]
        codes = pd.Index(categories).get_indexer(frame[column])
        onehots.append(np.eye(len(categories), dtype=np.float64)[codes])
    onehot = pd.DataFrame(np.concatenate(onehots, axis=1), columns=onehot_columns).groupby(
        hour.to_numpy(), sort=True).max()
    hourly = pd.concat([numeric, onehot.set_axis(numeric.index)], axis=1)
    full_range = pd.date_range(hourly.index.min(), hourly.index.max(), freq="h")
    hourly = hourly.reindex(full_range)
    windows = non_overlapping_windows(hourly.to_numpy(dtype=np.float32), window)
    starts = full_range[: windows.shape[0] * window : window]
    if drop_empty_windows:
        keep = ~np.isnan(windows).all(axis=(1, 2))
        windows, starts = windows[keep], starts[keep]
    times = np.broadcast_to(np.arange(window, dtype=np.float32), (windows.shape[0], window)).copy()
    extra: dict[str, object] = {
        "window_start": np.asarray(starts.strftime("%Y-%m-%d %H:%M"), dtype=str),
        "n_rows": np.asarray(len(frame)),
        "n_distinct_hours": np.asarray(len(numeric)),
    }
    return TimeSeriesDataset(X=windows, times=times, feature_names=(*TRAFFIC_NUMERIC, *onehot_columns),
                             name="traffic", extra=extra)


def load_traffic(
    root: str | os.PathLike[str],
    window: int = 24,
    drop_empty_windows: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> TimeSeriesDataset:
    """Load Metro Interstate Traffic Volume as ``[windows, window, features]`` (see the module doc).

    Args:
        root: the ``.csv``/``.csv.gz`` file or a folder holding it.
        window: hours per sample (non-overlapping).
        drop_empty_windows: drop windows in which no hour has a row (the long gaps).
        cache_dir: cache root for the parsed arrays.
        use_cache: read/write that cache.
    """
    path = traffic_file(root)
    options = {"window": window, "drop_empty_windows": drop_empty_windows, "version": _PARSER_VERSION}
    return cached_dataset("traffic", [path], options, lambda: _build(path, window, drop_empty_windows),
                          cache_dir, use_cache)
