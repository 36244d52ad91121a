"""Imputation of incomplete time series: BRITS and DEARI (with deep metric learning), baselines.

Public API (PyPOTS style)::

    from gapray.imputation import DEARI, DEARIConfig
    model = DEARI(DEARIConfig(n_layers=3))
    model.fit(train, val)                      # TimeSeriesDataset objects
    model.predict(test)["imputation"]          # [N, T, D], observed values kept
    model.save("deari.pt"); DEARI.load("deari.pt")
"""

from gapray.imputation.baselines import LOCFImputer, MeanImputer
from gapray.imputation.brits.model import BRITS
from gapray.imputation.config import BRITSConfig, DEARIConfig
from gapray.imputation.deari.model import DEARI

__all__ = ["BRITS", "BRITSConfig", "DEARI", "DEARIConfig", "LOCFImputer", "MeanImputer"]
