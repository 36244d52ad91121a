"""DEARI, the public class (DEARI Sec. 4): ``DEARI(DEARIConfig(n_layers=3)).fit(train, val)``."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from gapray.imputation.base import RecurrentImputer
from gapray.imputation.config import BRITSConfig, DEARIConfig
from gapray.imputation.deari.core import DEARICore


class DEARI(RecurrentImputer):
    """Deep attention recurrent imputation: stacked BRITS layers initialised by self-attention.

    Example::

        model = DEARI(DEARIConfig(n_layers=3, dml=True))
        model.fit(split.train, split.val)
        imputed = model.impute(split.test)
    """

    config_class: ClassVar[type[BRITSConfig]] = DEARIConfig
    config: DEARIConfig

    def _build_core(self, n_features: int) -> nn.Module:
        return DEARICore(n_features, self.config)
