"""Datasets, loaders, masking, normalisation, splits and deltas (DESIGN.md section 2)."""

from gapray.data.dataset import DatasetError, TimeSeriesDataset, compute_deltas
from gapray.data.masking import mcar, remove_observed_per_sample
from gapray.data.normalization import Standardizer
from gapray.data.splits import Split, holdout_indices, imputation_split, kfold_indices

__all__ = [
    "DatasetError",
    "Split",
    "Standardizer",
    "TimeSeriesDataset",
    "compute_deltas",
    "holdout_indices",
    "imputation_split",
    "kfold_indices",
    "mcar",
    "remove_observed_per_sample",
]
