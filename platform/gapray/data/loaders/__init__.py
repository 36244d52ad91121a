"""Loaders for the publishers' files (DESIGN.md section 2), each returning a TimeSeriesDataset."""

from gapray.data.loaders._common import resolve_data_dir
from gapray.data.loaders.physionet import PHYSIONET_FEATURES, load_physionet2012

__all__ = ["PHYSIONET_FEATURES", "load_physionet2012", "resolve_data_dir"]
