"""What a prepared dataset is: per split, token `inputs` and `labels` (IGNORE where not scored).

A causal model predicts labels[t + 1] from inputs[: t + 1]; a bidirectional one predicts
labels[t] at t. Every task class (`data._target_`) has `vocab` and `build() -> {split: arrays}`.
`extras` carries per-example integer columns that training or evaluation needs beside the
tokens: a difficulty `level` for curricula, a `source` for mixtures, or the task and transform
ids the ARC evaluator uses to undo augmentations. A task may also have `meta` (a dict added to
meta.json); `meta["blank"]` names the token that hides the answer from bidirectional models when
the inputs hold it (see `forge.data.loader.SplitDataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = -100
SPLITS = ("train", "val", "test")


@dataclass
class SplitArrays:
    inputs: np.ndarray
    labels: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
