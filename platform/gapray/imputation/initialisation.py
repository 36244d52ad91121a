"""Parameter initialisation of the DEARI reference port (docs/deari_reference_audit.md, #6).

Our models keep every module's PyTorch default. The reference code (the DEARI PyPOTS port's
``BackboneRITS_attention.reset_parameters`` and CSAI's ``models.py``) instead re-draws, after
construction, every parameter with two or more dimensions from ``U(-1/sqrt(size(1)),
1/sqrt(size(1)))``. That changes, at hidden 108 and 35 features: the attention ``in_proj``
(xavier bound 0.118 -> 0.096), the two encoder layers of one transition (identical copies ->
drawn independently), the CLS token ``[1, 1, H]`` (N(0, 1) -> U(-1, 1)), the temporal-decay
weights ``[H, D]`` (1/sqrt(H) -> 1/sqrt(D) = 0.169). Biases keep their module defaults.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gapray.imputation.bayesian import GaussianWeight


def reference_initialisation(module: nn.Module) -> None:
    """Re-draw every parameter of ``module`` with >= 2 dimensions from ``U(+-1/sqrt(size(1)))``.

    The posterior ``rho`` of Bayesian weights is left alone: it sets the initial posterior std
    (``BRITSConfig.rho_init``), not a weight (the reference port's loop predates its Bayesian
    layers). Draws come from torch's global generator: seed it first for a reproducible model.
    """
    skip = {id(m.rho) for m in module.modules() if isinstance(m, GaussianWeight)}
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() < 2 or id(parameter) in skip:
                continue
            bound = 1.0 / math.sqrt(parameter.shape[1])
            parameter.uniform_(-bound, bound)
