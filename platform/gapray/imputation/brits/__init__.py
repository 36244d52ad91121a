"""BRITS: public model (``model.py``) and module + loss (``core.py``)."""

from gapray.imputation.brits.model import BRITS

__all__ = ["BRITS"]
