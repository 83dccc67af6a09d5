"""Hierarchical recurrent reasoning models (HRM, TRM): see `model.py`."""

from forge.models.hrrm.model import HRRM

__all__ = ["HRRM"]
