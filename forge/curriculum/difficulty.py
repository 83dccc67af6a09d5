"""Difficulty curriculum: trivial -> easy -> medium -> hard -> expert.

Each level trains on the rows rated at that level (the task's `level` column), mixed with a
`replay` share of rows from the levels already passed so they are not forgotten, at its own
learning rate, batch size and gradient clipping. After every epoch the level's validation rows
are scored: at `threshold` exact match the level graduates. When `max_epochs` pass (or
`patience` epochs without improvement) first come `remedial` extra passes at half the learning
rate; after those the run moves on, recording that the level did not graduate.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch

from forge.curriculum.base import Curriculum, epoch_generator, log, rows_where


class Difficulty(Curriculum):
    def __init__(self, levels: list[dict[str, Any]], replay: float, remedial: int) -> None:
        super().__init__()
        if not levels:
            raise ValueError("curriculum.levels is empty: list at least one level")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"curriculum.replay={replay}: must be in [0, 1)")
        self.levels, self.replay, self.remedial = [dict(level) for level in levels], replay, remedial
        self.best = -1.0
        self.stale = 0
        self.remedial_done = 0

    @property
    def finished(self) -> bool:
        return self.position >= len(self.levels)

    def name(self, position: int) -> str:
        return self.levels[min(position, len(self.levels) - 1)]["name"]

    def level_id(self, position: int) -> int:
        name = self.name(position)
        names = self.meta.get("levels") or [level["name"] for level in self.levels]
        if name not in names:
            raise ValueError(f"curriculum.levels: level {name!r} is not one the data has ({', '.join(names)})")
        return names.index(name)

    def pool(self, extras: dict[str, torch.Tensor], epoch: int, seed: int) -> tuple[torch.Tensor, int]:
        if "level" not in extras:
            raise ValueError("curriculum=difficulty needs data rated by level (e.g. data=sudoku); this data has none")
        level = self.levels[min(self.position, len(self.levels) - 1)]
        here = rows_where(extras["level"], [self.level_id(self.position)])
        earlier = rows_where(extras["level"], [self.level_id(p) for p in range(min(self.position, len(self.levels)))])
        if len(here) == 0:
            raise ValueError(f"curriculum.levels: the training data has no {level['name']!r} rows; add the level to data.levels")
        n_replay = min(len(earlier), int(round(self.replay * len(here) / (1.0 - self.replay))))
        if n_replay:
            gen = epoch_generator(seed, epoch, salt=self.position)
            here = torch.cat([here, earlier[torch.randperm(len(earlier), generator=gen)[:n_replay]]])
        return here, int(level["batch_size"])

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        level = self.levels[self.position]
        lr = float(level["lr"]) * (0.5 if self.remedial_done else 1.0)
        for scheduler in trainer.lr_scheduler_configs:
            scheduler.scheduler.base_lrs = [lr for _ in scheduler.scheduler.base_lrs]
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["initial_lr"] = lr
        trainer.gradient_clip_val = level["gradient_clip"]

    def advance(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Optional[str]:
        level = self.levels[self.position]
        rows = rows_where(self.val.extras["level"], [self.level_id(self.position)]) if self.val is not None else torch.empty(0)
        score = self.val_exact(pl_module, rows)
        pl_module.log(f"curriculum/val_exact_{level['name']}", score)
        if score >= level["threshold"]:
            return self._next(f"graduated: val exact {score:.3f} >= {level['threshold']}")
        self.stale = 0 if score > self.best else self.stale + 1
        self.best = max(self.best, score)
        if self.epochs_here < level["max_epochs"] and self.stale < level["patience"]:
            return None
        if self.remedial_done < self.remedial:
            self.remedial_done += 1
            if trainer.is_global_zero:
                log.info("curriculum: %s not graduated (val exact %.3f); remedial pass %d at half lr", level["name"], score, self.remedial_done)
            self.epochs_here, self.stale = 0, 0
            self.apply(trainer, pl_module)
            return None
        return self._next(f"not graduated: val exact {score:.3f} < {level['threshold']} after {self.remedial_done} remedial passes")

    def _next(self, reason: str) -> str:
        self.best, self.stale, self.remedial_done = -1.0, 0, 0
        return reason

    def extra_state(self) -> dict[str, Any]:
        return {"best": self.best, "stale": self.stale, "remedial_done": self.remedial_done}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best, self.stale, self.remedial_done = state["best"], state["stale"], state["remedial_done"]
