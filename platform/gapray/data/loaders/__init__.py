"""Loaders for the publishers' files (DESIGN.md section 2), each returning a TimeSeriesDataset.

``load_dataset(name, root, **kw)`` dispatches by name; ``root`` may be ``None`` for the
datasets read from files, in which case :func:`resolve_data_dir` finds them
(``$GAPRAY_DATA_DIR``, ``../shared/data``, then the download cache).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.loaders._common import DATA_FOLDERS, download_dir, resolve_data_dir
from gapray.data.loaders.air import AIR_FEATURES, load_beijing_air
from gapray.data.loaders.images import load_digits, load_mnist
from gapray.data.loaders.physionet import PHYSIONET_FEATURES, load_physionet2012
from gapray.data.loaders.synthetic import make_synthetic
from gapray.data.loaders.traffic import load_traffic

#: Loaders that read files from a root folder.
FILE_LOADERS: dict[str, Callable[..., TimeSeriesDataset]] = {
    "physionet2012": load_physionet2012,
    "beijing-air": load_beijing_air,
    "traffic": load_traffic,
    "mnist": load_mnist,
}
#: Loaders that need no files.
BUILTIN_LOADERS: dict[str, Callable[..., TimeSeriesDataset]] = {
    "digits": load_digits,
    "synthetic": make_synthetic,
}
DATASET_NAMES: tuple[str, ...] = (*FILE_LOADERS, *BUILTIN_LOADERS)


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    **kwargs: object,
) -> TimeSeriesDataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) with the loader's keyword arguments.

    For file datasets ``root`` is the dataset's folder (or the data root holding it); when it
    is ``None`` the folder is resolved with :func:`resolve_data_dir` (fetched from the
    publisher first when ``download`` is true and it is not on disk).
    """
    if name in BUILTIN_LOADERS:
        return BUILTIN_LOADERS[name](**kwargs)
    if name not in FILE_LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    folder = resolve_data_dir(name, root, download=download)
    return FILE_LOADERS[name](folder, **kwargs)


__all__ = [
    "AIR_FEATURES",
    "DATASET_NAMES",
    "DATA_FOLDERS",
    "PHYSIONET_FEATURES",
    "download_dir",
    "load_beijing_air",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_physionet2012",
    "load_traffic",
    "make_synthetic",
    "resolve_data_dir",
]
