"""Datasets, loaders, masking, normalisation, splits and deltas (DESIGN.md section 2)."""

from typing import TYPE_CHECKING

from gapray.data.dataset import DatasetError, TimeSeriesDataset, compute_deltas
from gapray.data.masking import mcar, remove_observed_per_sample
from gapray.data.normalization import Standardizer
from gapray.data.splits import Split, holdout_indices, imputation_split, kfold_indices

if TYPE_CHECKING:
    from gapray.data.table import TableFormat, from_frame, read_table
    from gapray.data.table_output import to_frame, write_table

# Reading and writing users' tables imports pandas (slow at start-up): loaded on first use.
_TABLE_NAMES = {
    "TableFormat": "gapray.data.table",
    "from_frame": "gapray.data.table",
    "read_table": "gapray.data.table",
    "to_frame": "gapray.data.table_output",
    "write_table": "gapray.data.table_output",
}


def __getattr__(name: str) -> object:
    if name in _TABLE_NAMES:
        import importlib

        return getattr(importlib.import_module(_TABLE_NAMES[name]), name)
    raise AttributeError(f"module 'gapray.data' has no attribute {name!r}")


__all__ = [
    "DatasetError",
    "Split",
    "Standardizer",
    "TableFormat",
    "TimeSeriesDataset",
    "compute_deltas",
    "from_frame",
    "holdout_indices",
    "imputation_split",
    "kfold_indices",
    "mcar",
    "read_table",
    "remove_observed_per_sample",
    "to_frame",
    "write_table",
]
