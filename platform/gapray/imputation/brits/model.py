"""BRITS, the public class (Cao et al. 2018; DEARI Sec. 3.1): ``BRITS(BRITSConfig(...)).fit(train, val)``."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from gapray.imputation.base import RecurrentImputer
from gapray.imputation.brits.core import BRITSCore
from gapray.imputation.config import BRITSConfig


class BRITS(RecurrentImputer):
    """Bidirectional recurrent imputation (LSTM or GRU cell), optionally with deep metric learning.

    Example::

        model = BRITS(BRITSConfig(cell="gru", epochs=50))
        model.fit(split.train, split.val)
        imputed = model.predict(split.test)["imputation"]
    """

    config_class: ClassVar[type[BRITSConfig]] = BRITSConfig

    def _build_core(self, n_features: int) -> nn.Module:
        return BRITSCore(n_features, self.config)
