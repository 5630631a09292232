"""The tensorrtx ``.wts`` weight format (numpy only): ``load``, ``save`` and ``WtsError``."""
from .format import STYLES, WtsError, load, save

__all__ = ["STYLES", "WtsError", "load", "save"]
