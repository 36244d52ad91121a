"""A user's own table (long or wide) in, a :class:`TimeSeriesDataset` on a regular grid out, and back.

Layouts:

- **long**: one row per measurement, ``id, time, variable, value`` (e.g. ICU charts:
  ``stay_id, charttime, variable, value``). A row whose value is empty declares its id, time and
  variable without observing it. The same variable at the same id and time may repeat (PhysioNet
  charts do): those values share a bin and the aggregation rule picks one.
- **wide**: one row per id and time, one column per variable (e.g. sensor logs). Two rows with
  the same id and time are an error.

Grid: each time falls in bin ``floor((time - origin) / freq)``; ``freq`` is a duration such as
``"1h"`` for timestamps, or a number for numeric times (hours since admission, say). With
``origin=None`` the grid is aligned to 0 (numbers) or the Unix epoch (timestamps) and each
series starts at the bin of its own first row; with an ``origin`` every series starts there
(PhysioNet: 0 = ICU admission). A series is cut into consecutive windows of ``window`` bins
(``windows="split"``; the last one padded with missing bins past the series end, which
:attr:`TimeSeriesDataset.lengths` marks) or only its first window is kept (``windows="first"``,
later rows ignored: PhysioNet's first 48 hours). Several values of a variable in one bin: the
``last`` one (latest time, then latest row: the BRITS reference's rule) or their ``mean``.

Variables are numeric, or categorical (``categorical=``) and one-hot encoded as
:func:`gapray.data.loaders.load_traffic` does (features ``"weather=Rain"``; the aggregation rule
applies to the one-hot vectors). Ids, bin times, variable names, the float64 values of every bin
and the resolved :class:`TableFormat` are kept in the dataset, so
:func:`gapray.data.table_output.to_frame` writes results back in the input's layout.

Errors name the file, the column and the row (``row 1`` = the first data row; CSV files also
give the line).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from gapray.data.dataset import DatasetError, TimeSeriesDataset

Layout = Literal["long", "wide"]
Aggregate = Literal["last", "mean"]
WindowRule = Literal["split", "first"]

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class TableFormat:
    """How a table maps onto a regular grid; fitted values (variables, categories) once read."""

    id_col: str
    """Column naming the series (a stay, a sensor); samples are ordered by it."""
    time_col: str
    """Column with timestamps, or numbers when ``freq`` is a number."""
    freq: str | float
    """Bin width: a fixed duration (``"1h"``, ``"15min"``, ``"1D"``) for timestamps, a number for numeric times."""
    window: int
    """Bins per sample."""
    aggregate: Aggregate = "last"
    """Several values of a variable in one bin: ``last`` (latest time, then latest row; BRITS) or ``mean``."""
    windows: WindowRule = "split"
    """``split``: every series cut into consecutive windows; ``first``: only its first window, later rows ignored."""
    origin: str | float | None = None
    """Start of every series (a number, or a timestamp string); None: each series starts at its first row's bin."""
    variable_col: str = "variable"
    """Long layout: the column naming the variable of a row."""
    value_col: str = "value"
    """Long layout: the column holding the value of a row."""
    categorical: tuple[str, ...] = ()
    """Variables that are categories, one-hot encoded as ``"<variable>=<level>"`` features."""
    variables: tuple[str, ...] | None = None
    """Numeric variables in feature order (None: every other variable, in order of appearance)."""
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Fitted levels of each categorical variable (sorted); empty: taken from the data."""
    time_format: str = "ISO8601"
    """``pandas.to_datetime`` format of time strings (e.g. ``"%d/%m/%Y %H:%M"``)."""
    layout: Layout | None = None
    """Layout the table was read in (None before reading: detected from the columns)."""
    id_type: str | None = None
    """MLflow type of the ids once read: ``long`` or ``string``."""
    time_zone: str | None = None
    """Time zone of timestamp times once read (None: naive)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if self.variables is not None:
            object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "categories", tuple((str(k), tuple(v)) for k, v in self.categories))
        if isinstance(self.freq, str):
            try:
                object.__setattr__(self, "freq", float(self.freq))
            except ValueError:
                pass
        if not isinstance(self.window, int | np.integer) or isinstance(self.window, bool) or self.window < 1:
            raise DatasetError(f"window must be a positive number of bins, got {self.window!r}")
        object.__setattr__(self, "window", int(self.window))
        for name, value, allowed in (("aggregate", self.aggregate, ("last", "mean")),
                                     ("windows", self.windows, ("split", "first")),
                                     ("layout", self.layout, ("long", "wide", None))):
            if value not in allowed:
                raise DatasetError(f"{name} must be one of {allowed}, got {value!r}")
        if self.id_col == self.time_col:
            raise DatasetError(f"id and time columns must differ, both are {self.id_col!r}")
        self.step  # noqa: B018  (validates freq)

    @property
    def is_datetime(self) -> bool:
        """True for timestamp times (``freq`` a duration), False for numeric ones."""
        return not isinstance(self.freq, float | int)

    @property
    def step(self) -> float | int:
        """Bin width as a number: nanoseconds for timestamps, else ``freq`` itself."""
        if not self.is_datetime:
            freq = float(self.freq)
            if not math.isfinite(freq) or freq <= 0:
                raise DatasetError(f"freq must be a positive number for numeric times, got {self.freq!r}")
            return freq
        try:
            nanoseconds = int(pd.Timedelta(str(self.freq)).value)
        except ValueError as error:
            raise DatasetError(f"freq must be a fixed duration such as '1h', '15min' or '1D' (or a number for "
                               f"numeric times), got {self.freq!r}") from error
        if nanoseconds <= 0:
            raise DatasetError(f"freq must be positive, got {self.freq!r}")
        return nanoseconds

    @property
    def origin_value(self) -> float | int:
        """The origin as a number (nanoseconds since the epoch, UTC, for timestamps); 0 when None."""
        if self.origin is None:
            return 0
        if not self.is_datetime:
            return float(self.origin)
        stamp = pd.Timestamp(self.origin)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return int(stamp.as_unit("ns").value)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Numeric variables, then ``"<variable>=<level>"`` for each categorical level (once fitted)."""
        return (*(self.variables or ()), *(f"{name}={level}" for name, levels in self.categories for level in levels))

    def replace(self, **changes: Any) -> TableFormat:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (it is saved inside model checkpoints read with ``weights_only=True``)."""
        values = dataclasses.asdict(self)
        values["categorical"] = list(self.categorical)
        values["variables"] = None if self.variables is None else list(self.variables)
        values["categories"] = [[name, list(levels)] for name, levels in self.categories]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TableFormat:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# --- reading -----------------------------------------------------------------------------------
class _Where:
    """Names a place in the input: ``file: row 3 (line 4), column 'HR'``."""

    def __init__(self, source: str, is_csv: bool) -> None:
        self.source = source
        self.is_csv = is_csv

    def row(self, position: int, column: str | None = None) -> str:
        text = f"{self.source}: row {position + 1}"
        if self.is_csv:
            text += f" (line {position + 2})"
        return text + (f", column {column!r}" if column is not None else "")


def _show(value: object) -> str:
    """``repr`` of a table value as Python shows it (numpy scalars as plain numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _is_empty(values: pd.Series) -> np.ndarray:
    """NaN/None, or text that is blank."""
    empty = values.isna().to_numpy(dtype=bool)
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_datetime64_any_dtype(values):
        empty = empty | (values.astype(str).str.strip() == "").to_numpy(dtype=bool)
    return empty


def _parse_numbers(values: pd.Series, where: _Where, column: str, what: str = "not a number",
                   positions: np.ndarray | None = None, variables: pd.Series | None = None) -> np.ndarray:
    """float64 values; NaN where empty; any other non-number is an error naming its row.

    ``positions`` are the rows of ``values`` in the whole table (default ``0..n-1``);
    ``variables`` (long layout) names the variable of each value in the message.
    """
    if pd.api.types.is_bool_dtype(values):
        raise DatasetError(f"{where.source}: column {column!r} holds booleans, expected numbers")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(numbers)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = (np.isnan(numbers) & ~_is_empty(values)) | np.isinf(numbers)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        row = index if positions is None else int(positions[index])
        of = "" if variables is None else f" (variable {_show(variables.iat[index])})"
        raise DatasetError(f"{where.row(row, column)}: {what}: {_show(values.iat[index])}{of}")
    return numbers


def _parse_times(values: pd.Series, fmt: TableFormat, where: _Where) -> tuple[np.ndarray, str | None]:
    """Times as float64 (numeric) or int64 nanoseconds since the epoch, UTC (timestamps), and the time zone."""
    column = fmt.time_col
    empty = _is_empty(values)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DatasetError(f"{where.row(row, column)}: empty time")
    if not fmt.is_datetime:
        if pd.api.types.is_datetime64_any_dtype(values):
            raise DatasetError(f"{where.source}: column {column!r} holds timestamps but freq {fmt.freq!r} is a "
                               "number: give freq as a duration such as '1h'")
        return _parse_numbers(values, where, column, "time does not parse as a number"), None
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise DatasetError(f"{where.source}: column {column!r} holds numbers but freq {fmt.freq!r} is a duration: "
                           "give freq as a number in the times' unit (e.g. 1 for hours since admission)")
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values
    else:
        try:
            stamps = pd.to_datetime(values, format=fmt.time_format, errors="coerce")
        except (ValueError, TypeError):  # mixed UTC offsets
            stamps = pd.to_datetime(values, format=fmt.time_format, errors="coerce", utc=True)
        bad = stamps.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{where.row(row, column)}: time does not parse as a timestamp "
                               f"(format {fmt.time_format!r}): {_show(values.iat[row])}")
    zone = None
    if getattr(stamps.dt, "tz", None) is not None:
        zone = str(stamps.dt.tz)
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.astype("datetime64[ns]").to_numpy().astype(np.int64), zone


def _detect_layout(frame: pd.DataFrame, fmt: TableFormat) -> Layout:
    return "long" if fmt.variable_col in frame.columns and fmt.value_col in frame.columns else "wide"


def _check_variables(found: Sequence[str], expected: Sequence[str], where: str, hint: str = "") -> None:
    """Refuse data whose variables differ from the model's, naming the missing and unexpected ones."""
    missing = [v for v in expected if v not in set(found)]
    unexpected = [v for v in found if v not in set(expected)]
    if missing or unexpected:
        raise DatasetError(f"{where}: the variables differ from the model's: missing {missing}, "
                           f"unexpected {unexpected}{hint}")


@dataclass
class _Observations:
    """Parsed rows: every row's series and time, and one entry per (row, feature) with a value."""

    codes: np.ndarray        # [rows] series index into ids
    ids: np.ndarray          # [n_series] the ids, sorted
    times: np.ndarray        # [rows] parsed times
    row: np.ndarray          # [entries] row position of each entry
    feature: np.ndarray      # [entries] feature index
    value: np.ndarray        # [entries] float64


def _series(frame: pd.DataFrame, fmt: TableFormat, where: _Where) -> tuple[np.ndarray, np.ndarray, str]:
    ids = frame[fmt.id_col]
    empty = _is_empty(ids)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DatasetError(f"{where.row(row, fmt.id_col)}: empty id")
    if pd.api.types.is_float_dtype(ids) and np.array_equal(ids, np.round(ids)):
        ids = ids.astype(np.int64)
    if not pd.api.types.is_integer_dtype(ids):
        ids = ids.astype(str)
    codes, uniques = pd.factorize(ids, sort=True)
    id_type = "long" if pd.api.types.is_integer_dtype(ids) else "string"
    return codes.astype(np.int64), np.asarray(uniques), id_type


def _categories(values: pd.Series, name: str, known: tuple[str, ...] | None, where: _Where,
                column: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Levels (fitted or given) and each row's level index (-1 where empty)."""
    empty = _is_empty(values)
    text = values.astype(str).str.strip()
    levels = known if known is not None else tuple(sorted(set(text[~empty])))
    if not levels:
        raise DatasetError(f"{where.source}: column {column!r}: categorical variable {name!r} is never observed")
    codes = pd.Index(levels).get_indexer(text)
    unknown = (codes < 0) & ~empty
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DatasetError(f"{where.row(row, column)}: category {_show(values.iat[row])} of {name!r} is not one of the "
                           f"model's levels {list(levels)}")
    return levels, np.where(empty, -1, codes)


def _one_hot_entries(rows: np.ndarray, level: np.ndarray, n_levels: int,
                     offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per level for every row with a category: 1 for its level, 0 for the others."""
    seen = level >= 0
    rows, level = rows[seen], level[seen]
    entry_rows = np.repeat(rows, n_levels)
    features = np.tile(np.arange(n_levels), rows.size)
    values = (features == np.repeat(level, n_levels)).astype(np.float64)
    return entry_rows, features + offset, values


def _long_observations(frame: pd.DataFrame, fmt: TableFormat, where: _Where,
                       strict: bool) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], TableFormat]:
    variable = frame[fmt.variable_col]
    empty = _is_empty(variable)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DatasetError(f"{where.row(row, fmt.variable_col)}: empty variable name")
    names = variable.astype(str).str.strip()
    present = list(dict.fromkeys(names))
    if fmt.variables is None:
        numeric = [v for v in present if v not in fmt.categorical]
    else:
        numeric = list(fmt.variables)
        if strict:
            hint = ("; a long table may declare a variable it does not observe with a row whose value is empty"
                    if any(v not in present for v in (*numeric, *fmt.categorical)) else "")
            _check_variables(present, [*numeric, *fmt.categorical], f"{where.source}: column {fmt.variable_col!r}",
                             hint)
    row_positions = np.arange(len(frame))
    code = pd.Index(numeric).get_indexer(names)
    chosen = code >= 0
    raw = frame[fmt.value_col]
    numbers = np.full(len(frame), np.nan)
    if chosen.any():
        numbers[chosen] = _parse_numbers(raw[chosen], where, fmt.value_col, positions=row_positions[chosen],
                                         variables=names[chosen])
    observed = chosen & ~np.isnan(numbers)
    entries = [(row_positions[observed], code[observed], numbers[observed])]
    offset = len(numeric)
    known = dict(fmt.categories)
    fitted: list[tuple[str, tuple[str, ...]]] = []
    for name in fmt.categorical:
        mine = (names == name).to_numpy()
        levels, level = _categories(raw[mine], name, known.get(name), where, fmt.value_col)
        entries.append(_one_hot_entries(row_positions[mine], level, len(levels), offset))
        offset += len(levels)
        fitted.append((name, levels))
    return entries, fmt.replace(variables=tuple(numeric), categories=tuple(fitted))


def _wide_observations(frame: pd.DataFrame, fmt: TableFormat, where: _Where, strict: bool,
                       codes: np.ndarray, times: np.ndarray,
                       ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], TableFormat]:
    keys = pd.DataFrame({"id": codes, "time": times})
    repeated = keys.duplicated(keep=False).to_numpy()
    if repeated.any():
        first = int(np.flatnonzero(repeated)[0])
        same = np.flatnonzero(repeated & (codes == codes[first]) & (times == times[first]))
        series, time = _show(frame[fmt.id_col].iat[first]), _show(frame[fmt.time_col].iat[first])
        raise DatasetError(f"{where.row(int(same[1]))}: duplicate id and time: {series} at {time} is also on row "
                           f"{int(same[0]) + 1} (columns "
                           f"{fmt.id_col!r}, {fmt.time_col!r}); a wide table has one row per id and time")
    columns = [str(c) for c in frame.columns if c not in (fmt.id_col, fmt.time_col)]
    if fmt.variables is None:
        numeric = [c for c in columns if c not in fmt.categorical]
    else:
        numeric = list(fmt.variables)
        if strict:
            _check_variables(columns, [*numeric, *fmt.categorical], f"{where.source}: columns")
    missing = [c for c in (*numeric, *fmt.categorical) if c not in set(columns)]
    if missing:
        raise DatasetError(f"{where.source}: missing column(s) {missing}")
    row_positions = np.arange(len(frame))
    entries = []
    for index, name in enumerate(numeric):
        values = _parse_numbers(frame[name], where, name)
        seen = ~np.isnan(values)
        entries.append((row_positions[seen], np.full(int(seen.sum()), index), values[seen]))
    offset = len(numeric)
    known = dict(fmt.categories)
    fitted: list[tuple[str, tuple[str, ...]]] = []
    for name in fmt.categorical:
        levels, level = _categories(frame[name], name, known.get(name), where, name)
        entries.append(_one_hot_entries(row_positions, level, len(levels), offset))
        offset += len(levels)
        fitted.append((name, levels))
    return entries, fmt.replace(variables=tuple(numeric), categories=tuple(fitted))


def frame_to_dataset(frame: pd.DataFrame, fmt: TableFormat, source: str = "table",
                     require_observed: bool = True, strict: bool = False, is_csv: bool = False) -> TimeSeriesDataset:
    """Read ``frame`` with ``fmt`` (see the module doc); ``strict``: its variables must be exactly ``fmt``'s.

    ``require_observed`` refuses a variable (or categorical variable) with no value at all: a model
    cannot learn, nor scale, it. Reading new data for a fitted model uses ``strict=True`` and
    ``require_observed=False``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DatasetError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    where = _Where(source, is_csv)
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    layout = _detect_layout(frame, fmt)
    needed = [fmt.id_col, fmt.time_col]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DatasetError(f"{source}: missing column(s) {absent} (columns: {list(frame.columns)})")
    if frame.empty:
        raise DatasetError(f"{source}: no data rows")
    codes, ids, id_type = _series(frame, fmt, where)
    times, zone = _parse_times(frame[fmt.time_col], fmt, where)
    if layout == "long":
        entries, fitted = _long_observations(frame, fmt, where, strict)
    else:
        entries, fitted = _wide_observations(frame, fmt, where, strict, codes, times)
    fitted = fitted.replace(layout=layout, id_type=id_type, time_zone=zone)
    rows = np.concatenate([e[0] for e in entries]).astype(np.int64)
    observations = _Observations(codes=codes, ids=ids, times=times, row=rows,
                                 feature=np.concatenate([e[1] for e in entries]).astype(np.int64),
                                 value=np.concatenate([e[2] for e in entries]).astype(np.float64))
    return _grid(observations, fitted, frame, where, require_observed)


def _bins(times: np.ndarray, fmt: TableFormat) -> np.ndarray:
    """Absolute bin of each time, counted from the origin (0 / the epoch when None)."""
    if fmt.is_datetime:
        return np.floor_divide(times - int(fmt.origin_value), int(fmt.step))
    return np.floor((times - float(fmt.origin_value)) / float(fmt.step)).astype(np.int64)


def _grid(obs: _Observations, fmt: TableFormat, frame: pd.DataFrame, where: _Where,
          require_observed: bool) -> TimeSeriesDataset:
    names = fmt.feature_names
    n_features, window = len(names), fmt.window
    if n_features == 0:
        raise DatasetError(f"{where.source}: no variables (columns: {list(frame.columns)})")
    bins = _bins(obs.times, fmt)
    n_series = obs.ids.size
    if fmt.origin is None:
        start = np.full(n_series, np.iinfo(np.int64).max)
        np.minimum.at(start, obs.codes, bins)
    else:
        before = bins < 0
        if before.any():
            row = int(np.flatnonzero(before)[0])
            raise DatasetError(f"{where.row(row, fmt.time_col)}: time {_show(frame[fmt.time_col].iat[row])} is before "
                               f"the origin {fmt.origin!r}")
        start = np.zeros(n_series, dtype=np.int64)
    end = np.full(n_series, np.iinfo(np.int64).min)
    np.maximum.at(end, obs.codes, bins)
    length = end - start + 1
    if window > length.max():
        longest = int(np.argmax(length))
        raise DatasetError(f"{where.source}: window of {window} bins (freq {fmt.freq!r}) is longer than every "
                           f"series: the longest, id {_show(obs.ids[longest])} (column {fmt.id_col!r}), spans "
                           f"{int(length[longest])} bin(s)")
    relative = bins - start[obs.codes]  # [rows]
    if fmt.windows == "first":
        n_windows = np.ones(n_series, dtype=np.int64)
        length = np.minimum(length, window)
    else:
        n_windows = -(-length // window)
    first_sample = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    n_samples = int(n_windows.sum())

    entry_rel = relative[obs.row]
    keep = entry_rel < window * n_windows[obs.codes[obs.row]]
    row, feature, value, entry_rel = obs.row[keep], obs.feature[keep], obs.value[keep], entry_rel[keep]
    sample = first_sample[obs.codes[row]] + entry_rel // window
    flat = (sample * window + entry_rel % window) * n_features + feature
    size = n_samples * window * n_features
    flat_grid = np.full(size, np.nan, dtype=np.float64)
    if fmt.aggregate == "last":
        order = np.lexsort((row, obs.times[row]))  # by time, then row
        ordered = flat[order]
        last = ordered.size - 1 - np.unique(ordered[::-1], return_index=True)[1]
        flat_grid[ordered[last]] = value[order][last]
    else:
        sums = np.bincount(flat, weights=value, minlength=size)
        counts = np.bincount(flat, minlength=size)
        flat_grid[counts > 0] = sums[counts > 0] / counts[counts > 0]
    grid = flat_grid.reshape(n_samples, window, n_features)
    if require_observed:
        counts = np.bincount(feature, minlength=n_features)
        if not counts.all():
            name = names[int(np.flatnonzero(counts == 0)[0])]
            column = (f"column {fmt.variable_col!r}, variable {name!r}" if fmt.layout == "long"
                      else f"column {name!r}")
            raise DatasetError(f"{where.source}: {column} is never observed (no value in any row"
                               f"{' within the first window' if fmt.windows == 'first' else ''})")
    series_of_sample = np.repeat(np.arange(n_series), n_windows)
    window_index = np.arange(n_samples) - first_sample[series_of_sample]
    lengths = np.clip(length[series_of_sample] - window_index * window, 1, window)
    times = np.broadcast_to(np.arange(window, dtype=np.float32), (n_samples, window)).copy()
    extra: dict[str, object] = {
        "table": fmt,
        "table_values": grid,
        "bin_start": start[series_of_sample] + window_index * window,
        "source": where.source,
    }
    return TimeSeriesDataset(X=grid.astype(np.float32), times=times, lengths=lengths, feature_names=names,
                             record_ids=obs.ids[series_of_sample], name=Path(where.source).name or "table",
                             extra=extra)


def from_frame(
    frame: pd.DataFrame,
    id_col: str,
    time_col: str,
    freq: str | float,
    window: int,
    aggregate: Aggregate = "last",
    windows: WindowRule = "split",
    origin: str | float | None = None,
    variable_col: str = "variable",
    value_col: str = "value",
    categorical: Sequence[str] = (),
    variables: Sequence[str] | None = None,
    time_format: str = "ISO8601",
    source: str = "table",
) -> TimeSeriesDataset:
    """A :class:`TimeSeriesDataset` from a long or wide table (see the module doc for every rule).

    ``variables`` selects and orders the numeric variables (default: all, in order of
    appearance); the result's ``extra["table"]`` is the resolved :class:`TableFormat` that reads
    new data the same way and writes results back (:func:`to_frame`).
    """
    fmt = TableFormat(id_col=id_col, time_col=time_col, freq=freq, window=window, aggregate=aggregate,
                      windows=windows, origin=origin, variable_col=variable_col, value_col=value_col,
                      categorical=tuple(categorical), variables=None if variables is None else tuple(variables),
                      time_format=time_format)
    return frame_to_dataset(frame, fmt, source=source)


def is_csv_path(path: Path) -> bool:
    """True for ``.csv`` files, compressed ones included."""
    return path.name.lower().endswith(CSV_SUFFIXES)


def load_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV (``.csv``, compressed too) or Parquet (``.parquet``, ``.pq``) file as a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if is_csv_path(path):
            return pd.read_csv(path, low_memory=False)
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    raise DatasetError(f"{path}: unknown file type; use .csv (optionally compressed) or .parquet")


def read_table(path: str | os.PathLike[str], table_format: TableFormat | None = None, strict: bool = False,
               require_observed: bool = True, **options: Any) -> TimeSeriesDataset:
    """:func:`from_frame` on a CSV or Parquet file (errors name the file, column and row).

    With ``table_format`` (e.g. a fitted model's), the file is read exactly that way and
    ``options`` must be empty.
    """
    path = Path(path)
    if table_format is not None and options:
        raise TypeError(f"read_table: give either table_format or options, not both ({sorted(options)})")
    fmt = table_format if table_format is not None else TableFormat(**options)
    return frame_to_dataset(load_frame(path), fmt, source=str(path), require_observed=require_observed,
                            strict=strict, is_csv=is_csv_path(path))
