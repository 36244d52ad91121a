"""Helpers shared by the loaders: where the data lives, progress bars, windowing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gapray.data.cache import cache_root
from gapray.data.dataset import DatasetError

DATA_ENV = "GAPRAY_DATA_DIR"

#: Dataset name -> its folder in the shared layout (``../shared/data/<folder>``) and the download cache.
DATA_FOLDERS: dict[str, str] = {
    "physionet2012": "physionet2012",
    "beijing-air": "air",
    "traffic": "traffic",
    "mnist": "mnist",
}


def progress_disabled(progress: bool) -> bool:
    """True when no bar should be drawn: ``progress=False`` or ``TQDM_DISABLE`` set to a true value."""
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}


def download_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The download cache folder for dataset ``name``: ``<cache root>/data/<folder>``."""
    return cache_root(cache_dir) / "data" / _folder(name)


def _folder(name: str) -> str:
    if name not in DATA_FOLDERS:
        raise DatasetError(f"no data folder for dataset {name!r}; known: {sorted(DATA_FOLDERS)}")
    return DATA_FOLDERS[name]


def resolve_data_dir(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder holding dataset ``name``'s publisher files.

    Looked up in order: ``data_dir`` (the data root holding ``<folder>/``, else taken as
    the dataset's own folder or file), ``$GAPRAY_DATA_DIR`` (a data root), ``../shared/data`` relative
    to the current directory when it exists, then the download cache
    ``<cache root>/data/<folder>`` (fetched from the publisher first when ``download`` is true).
    """
    folder = _folder(name)
    if data_dir is not None:
        given = Path(data_dir)
        if (given / folder).is_dir():
            return given / folder
        if given.exists():
            return given  # the dataset's own folder (or file): the loader names what is missing
        raise FileNotFoundError(f"{name}: data folder {given} does not exist")
    candidates: list[Path] = []
    configured = os.environ.get(DATA_ENV)
    if configured:
        candidates.append(Path(configured) / folder)
    shared = Path.cwd().parent / "shared" / "data"
    if shared.is_dir():
        candidates.append(shared / folder)
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    cached = download_dir(name, cache_dir)
    if download and not (cached.is_dir() and any(cached.iterdir())):
        from gapray.data.download import fetch

        fetch(name, dest=cached)
    return cached


def non_overlapping_windows(values: np.ndarray, window: int) -> np.ndarray:
    """``[H, D]`` hourly rows -> ``[H // window, window, D]``; a last partial window is dropped."""
    if window < 1:
        raise DatasetError(f"window must be a positive number of hours, got {window}")
    n_windows = values.shape[0] // window
    if n_windows == 0:
        raise DatasetError(f"{values.shape[0]} hourly rows are fewer than one window of {window}")
    return values[: n_windows * window].reshape(n_windows, window, values.shape[1])
