"""UCI Beijing Multi-Site Air-Quality (dataset 501): 12 stations, hourly, 2013-03-01 to 2017-02-28.

Publisher layout: ``PRSA2017_Data_20130301-20170228.zip`` with a folder
``PRSA_Data_20130301-20170228/`` of 12 CSVs ``PRSA_Data_<Station>_20130301-20170228.csv``
(35,064 hourly rows each; columns No, year, month, day, hour, PM2.5, PM10, SO2, NO2, CO, O3,
TEMP, PRES, DEWP, RAIN, wd, WSPM, station; ``NA`` = missing). Either the zip or the extracted
folder (or a folder holding the 12 CSVs) is read.

Two layouts (DESIGN.md section 2):

* ``per_station=False`` (default, the BRITS/DEARI air layout): the 11 numeric features of the
  12 stations (stations in alphabetical order) stacked per hour -> 132 features named
  ``"<Station>/<feature>"``; non-overlapping 24 h windows -> 1,461 samples of ``[24, 132]``,
  1.56 % missing.
* ``per_station=True``: each station's 24 h windows are separate samples -> 12 x 1,461 =
  17,532 samples of ``[24, 11]`` (sample ``s * 1461 + w`` is station ``s``, window ``w``;
  ``extra["station"]`` names it). DEARI reports "17,532 samples with 18 variables": 17,532
  matches this layout; 18 is the CSVs' column count (No, year, month, day, hour and the
  categorical wd and station are not measurements), so we keep the 11 numeric features.

The wind direction ``wd`` is not used. ``times`` are the hours within the window (0-23).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from gapray.data.cache import cached_dataset
from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.loaders._common import non_overlapping_windows

AIR_FEATURES: tuple[str, ...] = (
    "PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM")
AIR_ARCHIVE = "PRSA2017_Data_20130301-20170228.zip"
_STATION_FILE = re.compile(r"PRSA_Data_(?P<station>[A-Za-z]+)_\d{8}-\d{8}\.csv$")
_TIME_COLUMNS = ("year", "month", "day", "hour")
_PARSER_VERSION = 1


def _sources(root: Path) -> tuple[list[Path], dict[str, tuple[Path, str | None]]]:
    """Input files for hashing and ``station -> (container, member or None)``."""
    if root.is_file() and zipfile.is_zipfile(root):
        archive = root
    elif (root / AIR_ARCHIVE).is_file():
        archive = root / AIR_ARCHIVE
    else:
        archive = None
    stations: dict[str, tuple[Path, str | None]] = {}
    if archive is not None:
        try:
            with zipfile.ZipFile(archive) as handle:
                names = handle.namelist()
        except zipfile.BadZipFile as error:
            raise DatasetError(f"{archive}: truncated or corrupt zip ({error})") from error
        for member in names:
            match = _STATION_FILE.search(member)
            if match:
                stations[match["station"]] = (archive, member)
        inputs = [archive]
    else:
        if not root.is_dir():
            raise FileNotFoundError(f"Beijing air: {root} is neither {AIR_ARCHIVE} nor a folder")
        paths = sorted(root.rglob("PRSA_Data_*.csv"))
        for path in paths:
            match = _STATION_FILE.search(path.name)
            if match:
                stations[match["station"]] = (path, None)
        inputs = [stations[s][0] for s in sorted(stations)]
    if not stations:
        raise DatasetError(f"{root}: no station files PRSA_Data_<Station>_<start>-<end>.csv "
                           f"(expected {AIR_ARCHIVE} or its extracted folder)")
    return inputs, stations


def _read_station(station: str, container: Path, member: str | None) -> pd.DataFrame:
    where = f"{container}:{member}" if member else str(container)
    try:
        if member is None:
            data = container.read_bytes()
        else:
            with zipfile.ZipFile(container) as archive:
                data = archive.read(member)
        frame = pd.read_csv(io.BytesIO(data), na_values=["NA"], keep_default_na=False,
                            low_memory=False)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DatasetError(f"{where}: cannot read ({error})") from error
    except pd.errors.ParserError as error:
        raise DatasetError(f"{where}: {error}") from error
    missing = [c for c in (*_TIME_COLUMNS, *AIR_FEATURES) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{where}: line 1: missing column(s) {missing}")
    for column in AIR_FEATURES:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = values.isna() & frame[column].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{where}: line {row + 2}: field {column}: not a number: {frame[column].iat[row]!r}")
    frame.index = pd.to_datetime(frame[list(_TIME_COLUMNS)])
    return frame


def _build(stations: dict[str, tuple[Path, str | None]], per_station: bool, window: int) -> TimeSeriesDataset:
    names = sorted(stations)
    frames = [_read_station(s, *stations[s]) for s in names]
    index = frames[0].index
    for station, frame in zip(names[1:], frames[1:], strict=True):
        if not frame.index.equals(index):
            raise DatasetError(f"Beijing air: station {station}'s hours differ from {names[0]}'s "
                               f"({len(frame)} vs {len(index)} rows)")
    if index.has_duplicates or not (np.diff(index.to_numpy().astype("datetime64[s]").astype(np.int64)) == 3600).all():
        raise DatasetError(f"Beijing air: station {names[0]}'s rows are not consecutive hours")
    blocks = [frame[list(AIR_FEATURES)].to_numpy(dtype=np.float32) for frame in frames]  # each [H, 11]
    if per_station:
        windows = np.concatenate([non_overlapping_windows(b, window) for b in blocks])
        n_windows = windows.shape[0] // len(names)
        station_of = np.repeat(np.arange(len(names)), n_windows)
        feature_names = AIR_FEATURES
        extra: dict[str, object] = {"station": station_of, "stations": tuple(names)}
    else:
        windows = non_overlapping_windows(np.concatenate(blocks, axis=1), window)
        n_windows = windows.shape[0]
        feature_names = tuple(f"{s}/{f}" for s in names for f in AIR_FEATURES)
        extra = {"stations": tuple(names)}
    starts = np.asarray(index[: n_windows * window : window].strftime("%Y-%m-%d %H:%M"), dtype=str)
    extra["window_start"] = np.tile(starts, len(names)) if per_station else starts
    times = np.broadcast_to(np.arange(window, dtype=np.float32), (windows.shape[0], window)).copy()
    return TimeSeriesDataset(X=windows, times=times, feature_names=feature_names,
                             name="beijing-air" + ("-per-station" if per_station else ""), extra=extra)


def load_beijing_air(
    root: str | os.PathLike[str],
    per_station: bool = False,
    window: int = 24,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> TimeSeriesDataset:
    """Load Beijing air quality from the UCI zip or its extracted folder (see the module doc).

    Args:
        root: the zip, a folder holding it, or the extracted folder of 12 CSVs.
        per_station: one sample per station and window (``[17532, 24, 11]``) instead of the
            stacked layout (``[1461, 24, 132]``).
        window: hours per sample (non-overlapping; a last partial window is dropped).
        cache_dir: cache root for the parsed arrays (see :mod:`gapray.data.cache`).
        use_cache: read/write that cache.
    """
    inputs, stations = _sources(Path(root))
    options = {"per_station": per_station, "window": window, "version": _PARSER_VERSION}
    return cached_dataset("beijing-air", inputs, options, lambda: _build(stations, per_station, window),
                          cache_dir, use_cache)
