"""Which checkpoint of a run is "the trained model": every loader (evaluate, compress, export and
whatever comes later) asks here, so they all agree."""

from __future__ import annotations

from pathlib import Path

from forge.errors import ForgeError
from forge.run_dir import RunPaths


def best_or_last(paths: RunPaths) -> Path:
    """The best checkpoint (by the module's `val/selection`), or the last if there is no best."""
    ckpt = paths.best_ckpt if paths.best_ckpt.exists() else paths.last_ckpt
    if not ckpt.exists():
        raise ForgeError(f"no checkpoint in {paths.checkpoints}: run stage=train first (or stage=all)")
    return ckpt
