"""Bad tables get an error that names the file, the column and the row (CSV: the line too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapray.data import DatasetError, read_table
from gapray.data.table import TableFormat, frame_to_dataset

LONG = {"id_col": "stay", "time_col": "t", "freq": "1h", "window": 2}


def _long() -> pd.DataFrame:
    return pd.DataFrame({"stay": [1, 1, 1, 2, 2], "t": ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 01:10",
                                                        "2024-01-01 00:00", "2024-01-01 03:00"],
                         "variable": ["HR", "HR", "Temp", "HR", "Temp"], "value": ["80", "81", "36.5", "75", "37"]})


def _wide() -> pd.DataFrame:
    return pd.DataFrame({"stay": [1, 1, 2, 2], "t": [0.0, 1.0, 0.0, 1.0], "HR": [80.0, 81.0, 75.0, np.nan],
                         "Temp": [36.5, np.nan, 37.0, 37.1]})


def _csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "charts.csv"
    frame.to_csv(path, index=False)
    return path


def test_good_tables_read(tmp_path: Path) -> None:
    assert read_table(_csv(tmp_path, _long()), **LONG).X.shape == (3, 2, 2)  # stay 2 spans 4 hours: 2 windows
    assert read_table(_csv(tmp_path, _wide()), id_col="stay", time_col="t", freq=1, window=2).X.shape == (2, 2, 2)


def test_duplicate_id_and_time_in_a_wide_table(tmp_path: Path) -> None:
    table = _wide()
    table.loc[3, "t"] = 0.0  # stay 2 has two rows at time 0
    with pytest.raises(DatasetError, match=r"charts\.csv: row 4 \(line 5\): duplicate id and time: 2 at .*row 3.*"
                                           r"'stay', 't'"):
        read_table(_csv(tmp_path, table), id_col="stay", time_col="t", freq=1, window=2)


def test_time_that_does_not_parse(tmp_path: Path) -> None:
    table = _long()
    table.loc[2, "t"] = "2024-01-01 25:99"
    with pytest.raises(DatasetError, match=r"charts\.csv: row 3 \(line 4\), column 't': time does not parse as a "
                                           r"timestamp .*'2024-01-01 25:99'"):
        read_table(_csv(tmp_path, table), **LONG)
    numeric = _wide().astype({"t": object})
    numeric.loc[1, "t"] = "one"
    with pytest.raises(DatasetError, match=r"row 2 \(line 3\), column 't': time does not parse as a number: 'one'"):
        read_table(_csv(tmp_path, numeric), id_col="stay", time_col="t", freq=1, window=2)
    with pytest.raises(DatasetError, match="holds numbers but freq '1h' is a duration"):
        read_table(_csv(tmp_path, _wide()), id_col="stay", time_col="t", freq="1h", window=2)


def test_empty_time(tmp_path: Path) -> None:
    table = _long()
    table.loc[1, "t"] = None
    with pytest.raises(DatasetError, match=r"row 2 \(line 3\), column 't': empty time"):
        read_table(_csv(tmp_path, table), **LONG)


def test_non_numeric_value_in_a_numeric_variable(tmp_path: Path) -> None:
    long = _long()
    long.loc[4, "value"] = "37,2"
    with pytest.raises(DatasetError, match=r"charts\.csv: row 5 \(line 6\), column 'value': not a number: '37,2' "
                                           r"\(variable 'Temp'\)"):
        read_table(_csv(tmp_path, long), **LONG)
    wide = _wide().astype({"Temp": object})
    wide.loc[2, "Temp"] = "high"
    with pytest.raises(DatasetError, match=r"row 3 \(line 4\), column 'Temp': not a number: 'high'"):
        read_table(_csv(tmp_path, wide), id_col="stay", time_col="t", freq=1, window=2)
    path = tmp_path / "charts.parquet"
    wide.astype({"Temp": str}).to_parquet(path)
    with pytest.raises(DatasetError, match=r"charts\.parquet: row 3, column 'Temp': not a number: 'high'"):
        read_table(path, id_col="stay", time_col="t", freq=1, window=2)


def test_variable_never_observed(tmp_path: Path) -> None:
    wide = _wide()
    wide["SpO2"] = np.nan
    with pytest.raises(DatasetError, match=r"charts\.csv: column 'SpO2' is never observed"):
        read_table(_csv(tmp_path, wide), id_col="stay", time_col="t", freq=1, window=2)
    long = _long()
    long.loc[4, "value"] = ""  # Temp's only other row: the variable is declared, never observed ...
    long.loc[2, "value"] = None
    with pytest.raises(DatasetError, match=r"column 'variable', variable 'Temp' is never observed"):
        read_table(_csv(tmp_path, long), **LONG)
    late = _wide()
    late.loc[[0, 2], "Temp"] = np.nan  # ... or observed only after the first window
    with pytest.raises(DatasetError, match="column 'Temp' is never observed .*within the first window"):
        read_table(_csv(tmp_path, late), id_col="stay", time_col="t", freq=1, window=1, windows="first")


def test_empty_id(tmp_path: Path) -> None:
    long = _long().astype({"stay": object})
    long.loc[3, "stay"] = " "
    with pytest.raises(DatasetError, match=r"charts\.csv: row 4 \(line 5\), column 'stay': empty id"):
        read_table(_csv(tmp_path, long), **LONG)
    wide = _wide()
    wide.loc[1, "stay"] = np.nan
    with pytest.raises(DatasetError, match=r"row 2 \(line 3\), column 'stay': empty id"):
        read_table(_csv(tmp_path, wide), id_col="stay", time_col="t", freq=1, window=2)


def test_window_longer_than_any_series(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"charts\.csv: window of 5 bins \(freq '1h'\) is longer than every "
                                           r"series: the longest, id 2 \(column 'stay'\), spans 4 bin\(s\)"):
        read_table(_csv(tmp_path, _long()), **{**LONG, "window": 5})


def test_missing_columns_unknown_files_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"charts\.csv: missing column\(s\) \['when'\]"):
        read_table(_csv(tmp_path, _long()), **{**LONG, "time_col": "when"})
    with pytest.raises(DatasetError, match="freq must be a fixed duration"):
        read_table(_csv(tmp_path, _long()), **{**LONG, "freq": "1 month"})
    with pytest.raises(DatasetError, match="window must be a positive number of bins"):
        read_table(_csv(tmp_path, _long()), **{**LONG, "window": 0})
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_table(tmp_path / "nope.csv", **LONG)
    (tmp_path / "charts.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"charts\.json: unknown file type"):
        read_table(tmp_path / "charts.json", **LONG)


def test_time_before_the_origin(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"row 1 \(line 2\), column 't': time .* is before the origin "
                                           r"'2024-01-01 00:30'"):
        read_table(_csv(tmp_path, _long()), **LONG, origin="2024-01-01 00:30")


def test_other_variables_than_the_models_are_refused_by_name(tmp_path: Path) -> None:
    """Read with a fitted format (strict): missing and unexpected variables are named, long and wide."""
    fitted = read_table(_csv(tmp_path, _wide()), id_col="stay", time_col="t", freq=1, window=2).extra["table"]
    assert isinstance(fitted, TableFormat) and fitted.variables == ("HR", "Temp")
    other = _wide().rename(columns={"Temp": "SpO2"})
    with pytest.raises(DatasetError, match=r"new\.csv: columns: the variables differ from the model's: "
                                           r"missing \['Temp'\], unexpected \['SpO2'\]"):
        frame_to_dataset(other, fitted, source="new.csv", strict=True, require_observed=False)
    long = _long().replace({"variable": {"Temp": "Lactate"}})
    with pytest.raises(DatasetError, match=r"column 'variable': the variables differ from the model's: "
                                           r"missing \['Temp'\], unexpected \['Lactate'\].*declare a variable"):
        frame_to_dataset(long, fitted.replace(freq="1h"), source="new.csv", strict=True, require_observed=False)
    declared = pd.concat([_long().iloc[:2], pd.DataFrame({"stay": [1], "t": ["2024-01-01 00:00"],
                                                          "variable": ["Temp"], "value": [None]})])
    read = frame_to_dataset(declared, fitted.replace(freq="1h"), strict=True, require_observed=False)
    assert np.isnan(read.X[..., 1]).all()  # declared, never observed: fine for imputation


def test_unknown_category(tmp_path: Path) -> None:
    table = pd.DataFrame({"id": [1, 1], "t": [0, 1], "weather": ["Rain", "Clear"]})
    fitted = frame_to_dataset(table, TableFormat("id", "t", 1, 2, categorical=("weather",))).extra["table"]
    assert isinstance(fitted, TableFormat)
    with pytest.raises(DatasetError, match=r"new: row 2, column 'weather': category 'Snow' of 'weather' is not one "
                                           r"of the model's levels \['Clear', 'Rain'\]"):
        frame_to_dataset(table.assign(weather=["Rain", "Snow"]), fitted, source="new", strict=True,
                         require_observed=False)
