"""PhysioNet/CinC Challenge 2012 (v1.0.0): ICU stays on a 48 x 1 h grid (DESIGN.md section 2).

Publisher layout (``physionet.org/files/challenge-2012/1.0.0/``): ``set-a.tar.gz`` holding
``set-a/<RecordID>.txt`` (lines ``Time,Parameter,Value``, ``Time`` = ``hh:mm`` since ICU
admission; descriptors RecordID, Age, Gender, Height, ICUType, Weight at 00:00; -1 = missing)
and ``Outcomes-a.txt`` (``RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death``);
likewise ``b`` and ``c``.

Grid (reference, ``caow13/BRITS/input_process.py``): bin = the hour of ``hh:mm`` (so 00:59
is bin 0), bins 0-47 kept, times at or after 48:00 dropped; the 35 variables BRITS uses in
BRITS's order; several values of a variable in one bin: the last one in file order (BRITS) or
their mean (option). A value of -1 is "not measured" and is dropped before aggregation, so it
never hides an earlier valid value in the same hour. Records without any time-series row stay
as all-missing samples (3 in set a, 7 in set b).

The whole set is parsed in one vectorised pass: all record files are concatenated (their
``Time,Parameter,Value`` headers kept as separators) and read by one ``pandas.read_csv`` call.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gapray.data.cache import cached_dataset
from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.loaders._common import progress_disabled

#: The 35 time-series variables BRITS uses, in BRITS's order (37 parameters minus MechVent, Weight).
PHYSIONET_FEATURES: tuple[str, ...] = (
    "DiasABP", "HR", "Na", "Lactate", "NIDiasABP", "PaO2", "WBC", "pH", "Albumin", "ALT",
    "Glucose", "SaO2", "Temp", "AST", "Bilirubin", "HCO3", "BUN", "RespRate", "Mg", "HCT",
    "SysABP", "FiO2", "K", "GCS", "Cholesterol", "NISysABP", "TroponinT", "MAP", "TroponinI",
    "PaCO2", "Platelets", "Urine", "NIMAP", "Creatinine", "ALP",
)
#: General descriptors recorded once at 00:00 (``Weight`` is also a time series).
PHYSIONET_DESCRIPTORS: tuple[str, ...] = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
#: Every parameter name the challenge defines; anything else is warned about and ignored.
PHYSIONET_PARAMETERS: frozenset[str] = frozenset(PHYSIONET_FEATURES) | frozenset(
    PHYSIONET_DESCRIPTORS) | {"MechVent"}
#: Number of hourly bins (the first 48 hours of the stay).
N_BINS = 48
HEADER = "Time,Parameter,Value"
SUBSETS = ("a", "b", "c")
_PARSER_VERSION = 1

Aggregate = Literal["last", "mean"]


@dataclass(frozen=True)
class _Record:
    """One record file's name (for messages), its RecordID (from the file name) and bytes."""

    name: str
    record_id: int
    content: bytes


# --- locating the files ----------------------------------------------------------------------
def physionet_files(root: str | os.PathLike[str], subset: str) -> tuple[Path, Path]:
    """The record source (``set-x.tar.gz`` or extracted ``set-x/``) and ``Outcomes-x.txt``."""
    if subset not in SUBSETS:
        raise DatasetError(f"PhysioNet 2012 subset must be one of {SUBSETS}, got {subset!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"PhysioNet 2012 folder {root} does not exist")
    archive, folder = root / f"set-{subset}.tar.gz", root / f"set-{subset}"
    source = folder if folder.is_dir() else archive
    outcomes = root / f"Outcomes-{subset}.txt"
    missing = [str(p) for p in (source, outcomes) if not p.exists()]
    if missing:
        hint = (" (PhysioNet's set c is not in the shared data; fetch it from the publisher with "
                "`gapray data fetch physionet2012 --subset c`)") if subset == "c" else ""
        raise FileNotFoundError(
            f"PhysioNet 2012 set {subset}: missing {' and '.join(missing)}; expected set-{subset}.tar.gz "
            f"or an extracted set-{subset}/ folder, and Outcomes-{subset}.txt{hint}")
    return source, outcomes


def _input_files(source: Path) -> list[Path]:
    if source.is_dir():
        return sorted(source.glob("*.txt"))
    return [source]


def _record_id(name: str) -> int:
    stem = Path(name).stem
    if not stem.isdigit():
        raise DatasetError(f"{name}: record file name must be <RecordID>.txt")
    return int(stem)


def _read_records(source: Path, progress: bool) -> list[_Record]:
    """Every ``<RecordID>.txt`` in the archive or folder, sorted by RecordID."""
    records: list[_Record] = []
    bar = tqdm(desc=f"reading {source.name}", unit=" records", disable=progress_disabled(progress))
    try:
        if source.is_dir():
            for path in sorted(source.glob("*.txt")):
                records.append(_Record(str(path), _record_id(path.name), path.read_bytes()))
                bar.update()
        else:
            try:
                with tarfile.open(source, "r:gz") as archive:
                    for member in archive:
                        if not (member.isfile() and member.name.endswith(".txt")):
                            continue
                        handle = archive.extractfile(member)
                        assert handle is not None
                        records.append(_Record(f"{source}:{member.name}", _record_id(member.name), handle.read()))
                        bar.update()
            except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
                raise DatasetError(
                    f"{source}: truncated or corrupt archive after {len(records)} records ({error}); "
                    "download it again (gapray data fetch physionet2012)") from error
    finally:
        bar.close()
    if not records:
        raise DatasetError(f"{source}: no record files (<RecordID>.txt) found")
    records.sort(key=lambda r: r.record_id)
    ids = [r.record_id for r in records]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{source}: duplicate record files for RecordID(s) "
                           f"{sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    return records


# --- parsing ---------------------------------------------------------------------------------
def _check_header(record: _Record) -> bytes:
    """The record's content with a guaranteed final newline, after checking line 1."""
    first, _, _ = record.content.partition(b"\n")
    header = first.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    if header != HEADER:
        raise DatasetError(f"{record.name}: line 1: expected header {HEADER!r}, got {header!r}")
    content = record.content
    return content if content.endswith(b"\n") else content + b"\n"


def _parse_lines(records: Sequence[_Record]) -> pd.DataFrame:
    """All records' lines in one frame: ``record`` (index), ``line`` (1-based), Time, Parameter, Value."""
    buffer = b"".join(_check_header(r) for r in records)
    try:
        frame = pd.read_csv(io.BytesIO(buffer), header=None, names=["Time", "Parameter", "Value"], dtype=str,
                            keep_default_na=False, skip_blank_lines=False, engine="c")
    except pd.errors.ParserError as error:
        raise _locate_parser_error(error, records) from error
    is_header = (frame["Time"] == "Time").to_numpy()
    if int(is_header.sum()) != len(records):
        raise _repeated_header(records)
    record = np.cumsum(is_header) - 1
    starts = np.flatnonzero(is_header)
    line = np.arange(len(frame)) - starts[record] + 1
    frame["record"] = record
    frame["line"] = line
    frame = frame[~is_header]
    blank = (frame["Time"] == "") & (frame["Parameter"] == "") & (frame["Value"] == "")
    return frame[~blank.to_numpy()]


def _repeated_header(records: Sequence[_Record]) -> DatasetError:
    """The first record with a ``Time,...`` line after line 1 (it would split the record)."""
    for r in records:
        for number, text in enumerate(r.content.decode("utf-8", errors="replace").splitlines()[1:], start=2):
            if text.startswith("Time,"):
                return DatasetError(f"{r.name}: line {number}: a second header line {text.strip()!r}")
    return DatasetError("PhysioNet 2012 records: header lines do not match the record files")


def _locate_parser_error(error: Exception, records: Sequence[_Record]) -> DatasetError:
    """Turn pandas' global line number into ``file: line N``."""
    match = re.search(r"line (\d+)", str(error))
    if match:
        target = int(match.group(1))
        seen = 0
        for r in records:
            n_lines = r.content.count(b"\n") + (0 if r.content.endswith(b"\n") else 1)
            if target <= seen + n_lines:
                return DatasetError(f"{r.name}: line {target - seen}: expected 3 fields "
                                    f"(Time,Parameter,Value) ({error})")
            seen += n_lines
    return DatasetError(f"PhysioNet 2012 records: {error}")


def _where(frame: pd.DataFrame, row: int, records: Sequence[_Record]) -> str:
    return f"{records[int(frame['record'].iat[row])].name}: line {int(frame['line'].iat[row])}"


def _hours(frame: pd.DataFrame, records: Sequence[_Record]) -> np.ndarray:
    """The hour of each ``hh:mm`` (the bin index); a malformed time names its file and line."""
    times = frame["Time"]
    valid = times.str.fullmatch(r"\d+:[0-5]\d").to_numpy()
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0])
        raise DatasetError(f"{_where(frame, row, records)}: field Time: expected hh:mm, got {times.iat[row]!r}")
    return times.str.slice(0, -3).astype("int64").to_numpy(dtype=np.int64)


def _values(frame: pd.DataFrame, records: Sequence[_Record]) -> np.ndarray:
    try:  # fast path: a vectorised cast; it fails on any non-numeric text
        values = frame["Value"].astype("float64").to_numpy(dtype=np.float64)
    except ValueError:
        values = pd.to_numeric(frame["Value"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{_where(frame, row, records)}: field Value of {frame['Parameter'].iat[row]!r}: "
                           f"not a number: {frame['Value'].iat[row]!r}")
    return values


def _warn_unknown(frame: pd.DataFrame, records: Sequence[_Record]) -> None:
    known = frame["Parameter"].isin(PHYSIONET_PARAMETERS).to_numpy()
    if known.all():
        return
    unknown = frame[~known]
    firsts = unknown.drop_duplicates("Parameter")
    where = "; ".join(f"{p!r} first at {records[int(r)].name}: line {int(ln)}"
                      for p, r, ln in zip(firsts["Parameter"], firsts["record"], firsts["line"], strict=True))
    warnings.warn(f"PhysioNet 2012: ignoring {len(unknown)} line(s) with unknown parameter(s): {where}",
                  stacklevel=3)


def _read_outcomes(path: Path, record_ids: np.ndarray, records: Sequence[_Record]) -> np.ndarray:
    """``In-hospital_death`` (0/1) for each record id, in order."""
    try:
        outcomes = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot parse outcomes ({error})") from error
    for column in ("RecordID", "In-hospital_death"):
        if column not in outcomes.columns:
            raise DatasetError(f"{path}: line 1: missing column {column!r} (have {list(outcomes.columns)})")
    ids = pd.to_numeric(outcomes["RecordID"], errors="coerce")
    labels = pd.to_numeric(outcomes["In-hospital_death"], errors="coerce")
    bad = ~(ids.notna() & labels.isin([0, 1]))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path}: line {row + 2}: RecordID {outcomes['RecordID'].iat[row]!r} / "
                           f"field In-hospital_death {outcomes['In-hospital_death'].iat[row]!r} must be 0 or 1")
    table = pd.Series(labels.to_numpy(dtype=np.int64), index=ids.to_numpy(dtype=np.int64))
    table = table[~table.index.duplicated(keep="first")]
    present = np.isin(record_ids, table.index.to_numpy())
    if not present.all():
        missing = record_ids[~present]
        name = next(r.name for r in records if r.record_id == missing[0])
        raise DatasetError(f"{path}: no row for RecordID {int(missing[0])} (record {name})"
                           + (f" and {missing.size - 1} more" if missing.size > 1 else ""))
    return table.loc[record_ids].to_numpy(dtype=np.int64)


def parse_physionet_records(
    records: Sequence[_Record],
    aggregate: Aggregate = "last",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records -> ``X [N, 48, 35]`` (NaN = missing), static descriptors ``[N, 5]``, record ids."""
    if aggregate not in ("last", "mean"):
        raise DatasetError(f"aggregate must be 'last' or 'mean', got {aggregate!r}")
    frame = _parse_lines(records)
    hours = _hours(frame, records)
    values = _values(frame, records)
    _warn_unknown(frame, records)
    n_records, n_features = len(records), len(PHYSIONET_FEATURES)
    record = frame["record"].to_numpy(dtype=np.int64)
    parameter = pd.Index(PHYSIONET_FEATURES).get_indexer(frame["Parameter"]).astype(np.int64)

    keep = (parameter >= 0) & (hours < N_BINS) & (values != -1.0)
    flat = (record[keep] * N_BINS + hours[keep]) * n_features + parameter[keep]
    kept_values = values[keep]
    size = n_records * N_BINS * n_features
    X = np.full(size, np.nan, dtype=np.float64)
    if aggregate == "last":
        reversed_first = np.unique(flat[::-1], return_index=True)[1]
        chosen = flat.size - 1 - reversed_first
        X[flat[chosen]] = kept_values[chosen]
    else:
        sums = np.bincount(flat, weights=kept_values, minlength=size)
        counts = np.bincount(flat, minlength=size)
        observed = counts > 0
        X[observed] = sums[observed] / counts[observed]

    static_names = PHYSIONET_DESCRIPTORS[1:]
    static = np.full((n_records, len(static_names)), np.nan, dtype=np.float32)
    is_static = frame["Parameter"].isin(static_names).to_numpy() & (hours == 0) & (values != -1.0)
    static_code = pd.Index(static_names).get_indexer(frame["Parameter"][is_static])
    first = pd.DataFrame({"r": record[is_static], "c": static_code, "v": values[is_static]}).drop_duplicates(
        ["r", "c"], keep="first")
    static[first["r"].to_numpy(), first["c"].to_numpy()] = first["v"].to_numpy()
    record_ids = np.asarray([r.record_id for r in records], dtype=np.int64)
    return X.reshape(n_records, N_BINS, n_features).astype(np.float32), static, record_ids


def load_physionet2012(
    root: str | os.PathLike[str],
    subset: str = "a",
    aggregate: Aggregate = "last",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    use_cache: bool = True,
) -> TimeSeriesDataset:
    """Load PhysioNet 2012 set ``subset`` from ``root`` (archive or extracted folder).

    Args:
        root: folder holding ``set-<subset>.tar.gz`` (or ``set-<subset>/``) and ``Outcomes-<subset>.txt``.
        subset: ``"a"``, ``"b"`` or ``"c"`` (set c only if its files are present).
        aggregate: ``"last"`` value in an hour (BRITS reference) or their ``"mean"``.
        cache_dir: cache root (default ``$GAPRAY_CACHE_DIR`` or ``~/.cache/gapray``); the parsed
            arrays are cached under a key from the files' SHA-256 and these options.
        progress: show a progress bar while reading the records (cold loads only).
        use_cache: read/write the parsed-array cache.

    Returns:
        ``X [N, 48, 35]`` float32 (set a: 4,000 x 48 x 35, 80.5 % missing), ``y`` =
        In-hospital_death (set a: 554 positives), ``times`` = bin index in hours,
        ``record_ids``, ``feature_names`` = :data:`PHYSIONET_FEATURES`, and ``extra["static"]``
        ``[N, 5]`` with Age, Gender, Height, ICUType, Weight at 00:00 (NaN when -1).
    """
    source, outcomes = physionet_files(root, subset)
    inputs = [*_input_files(source), outcomes]
    if source.is_dir() and len(inputs) == 1:
        raise DatasetError(f"{source}: no record files (<RecordID>.txt) found")

    def build() -> TimeSeriesDataset:
        records = _read_records(source, progress)
        X, static, record_ids = parse_physionet_records(records, aggregate)
        y = _read_outcomes(outcomes, record_ids, records)
        times = np.broadcast_to(np.arange(N_BINS, dtype=np.float32), (len(records), N_BINS)).copy()
        return TimeSeriesDataset(
            X=X, y=y, times=times, feature_names=PHYSIONET_FEATURES, record_ids=record_ids,
            name=f"physionet2012-{subset}",
            extra={"static": static, "static_names": PHYSIONET_DESCRIPTORS[1:]},
        )

    options = {"subset": subset, "aggregate": aggregate, "version": _PARSER_VERSION}
    return cached_dataset(f"physionet2012-{subset}", inputs, options, build, cache_dir, use_cache)
