"""DEARI: public model (``model.py``) and module + attention initialisation (``core.py``)."""

from gapray.imputation.deari.model import DEARI

__all__ = ["DEARI"]
