"""Schemas of the `curriculum` options, light enough for `forge validate` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from forge.config.registry import register
from forge.config.rules import at_least, each, fraction, positive


@dataclass
class Level:
    name: str = MISSING
    lr: float = positive()
    batch_size: int = at_least(1)
    max_epochs: int = at_least(1)
    patience: int = at_least(1)
    gradient_clip: Optional[float] = at_least(0)
    threshold: float = at_least(0)  # exact match to graduate; above 1: never graduates early


@register("curriculum", "forge.curriculum.difficulty.Difficulty")
@dataclass
class DifficultyConfig:
    replay: float = fraction()
    remedial: int = at_least(0)
    levels: list[Level] = MISSING


@dataclass
class Stage:
    name: str = MISSING
    mix: dict[str, float] = each(at_least(0))
    steps: Optional[int] = at_least(1, default=None)
    epochs: Optional[int] = at_least(1, default=None)
    threshold: Optional[float] = at_least(0, default=None)


@register("curriculum", "forge.curriculum.staged.Staged")
@dataclass
class StagedConfig:
    batch_size: int = at_least(1)
    stages: list[Stage] = MISSING
