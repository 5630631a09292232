"""The tensorrtx ``.wts`` weight format (numpy only): ``load``, ``save`` and ``WtsError``."""
from .format import LIMIT_VARIABLE, STYLES, WtsError, load, max_weight_bytes, save

__all__ = ["LIMIT_VARIABLE", "STYLES", "WtsError", "load", "max_weight_bytes", "save"]
