"""The top level of a config: the keys outside the groups, and what `_target_` may name.

Each group's options are checked against the schemas their concepts register
(`forge.config.registry`). The YAML files hold the values (schema fields are MISSING), the
schemas the shape and the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from forge.config.rules import at_least, one_of

STAGES = ("all", "prepare", "train", "compress", "evaluate", "export")
CV_SCHEMES = ("kfold", "walk_forward")


@dataclass
class CVConfig:
    folds: Optional[int] = None
    fold: Optional[int] = None
    scheme: str = one_of(CV_SCHEMES, default="kfold")
    stratify: Optional[bool] = None  # None: by label when the labels allow it (k-fold)
    seed: int = 0
    gap: int = at_least(0, default=0)
    max_train: Optional[int] = at_least(1, default=None)
    time_column: Optional[str] = None
    group_column: Optional[str] = None


@dataclass
class ForgeConfig:
    """Top-level keys; the groups are checked one by one against their registered schemas."""

    stage: str = one_of(STAGES, default="all")
    seed: int = 0
    resume: Optional[str] = None
    # An earlier run (or its .ckpt) whose trained weights start this run: a new task after an old one.
    init_from: Optional[str] = None
    cache_dir: Optional[str] = None
    # Metric names (train.json / metrics.json) a sweeper optimizes; null: test exact match.
    objective: Optional[list[str]] = None
    cv: CVConfig = field(default_factory=CVConfig)
    model: Any = None
    data: Any = None
    curriculum: Any = None
    compressor: Any = None
    trainer: Any = None
    optim: Any = None
    peft: Any = None
    eval: Any = None
    export: Any = None
    logger: Any = None
    callbacks: dict[str, Any] = field(default_factory=dict)


# The only modules a config's `_target_` may name: a recipe from elsewhere cannot run arbitrary
# code by naming it. Extend this list in code, not in YAML.
ALLOWED_TARGET_PREFIXES = (
    "forge.",
    "torch.optim.",
    "lightning.pytorch.loggers.",
)
