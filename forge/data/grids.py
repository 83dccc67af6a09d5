"""The 8 symmetries of a square grid (the dihedral group D4), shared by mazes and ARC.

Transform k in 0..7 is `k % 4` quarter turns counter-clockwise, after a transpose when k >= 4.
Every transform has an inverse, so a prediction made on a transformed grid can be mapped back.
"""

from __future__ import annotations

import numpy as np

from forge.data.configs import DIHEDRAL


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Grid (H, W, ...) under transform k."""
    if not 0 <= k < DIHEDRAL:
        raise ValueError(f"dihedral transform {k} is not in 0..7")
    out = np.swapaxes(grid, 0, 1) if k >= 4 else grid
    return np.ascontiguousarray(np.rot90(out, k % 4, axes=(0, 1)))


def inverse_dihedral(k: int) -> int:
    """The transform that undoes k: rotations undo by turning back, reflections are involutions."""
    return (4 - k) % 4 if k < 4 else k
