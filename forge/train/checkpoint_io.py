"""Checkpoints written atomically: a kill during a save leaves the previous checkpoint whole."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from forge import redact
from forge.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        """Written whole or not at all; the run's secrets masked in the saved hyperparameters (a
        config value could hold one)."""
        if "hyper_parameters" in checkpoint:
            checkpoint = {**checkpoint, "hyper_parameters": redact.tree(dict(checkpoint["hyper_parameters"]))}
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)
