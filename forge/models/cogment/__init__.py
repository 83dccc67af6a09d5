"""Cogment: transformer layers, a refinement core with adaptive computation time, and a gated
long-term memory; see `model.py` and `memory.py`."""

from forge.models.cogment.model import Cogment

__all__ = ["Cogment"]
