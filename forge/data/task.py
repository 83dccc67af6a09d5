"""What a prepared dataset is: per split, token `inputs` and `labels` (IGNORE where not scored).

A causal model predicts labels[t + 1] from inputs[: t + 1]; a bidirectional one predicts
labels[t] at t. Every task class (`data._target_`) has `vocab` and `build() -> {split: arrays}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100
SPLITS = ("train", "val", "test")


@dataclass
class SplitArrays:
    inputs: np.ndarray
    labels: np.ndarray
