"""Staged curriculum: ordered stages, each with its data mix, budget and optional graduation.

A stage's `mix` maps data sources (the names of a `data=mixture`) to weights. With a `steps`
budget the stage is one epoch of exactly that many batches drawn from the mix; with an `epochs`
budget each epoch draws as many rows as the mixed sources hold, in the mix's proportions. A
stage with `threshold` ends early once exact match on its sources' validation rows reaches it.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch

from forge.curriculum.base import Curriculum, epoch_generator, rows_where


class Staged(Curriculum):
    def __init__(self, stages: list[dict[str, Any]], batch_size: int) -> None:
        super().__init__()
        if not stages:
            raise ValueError("curriculum.stages is empty: list at least one stage")
        for i, stage in enumerate(stages):
            if (stage.get("steps") is None) == (stage.get("epochs") is None):
                raise ValueError(f"curriculum.stages[{i}] ({stage.get('name')}): give exactly one budget, steps or epochs")
            if not stage.get("mix"):
                raise ValueError(f"curriculum.stages[{i}] ({stage.get('name')}): mix is empty")
        self.stages, self.batch_size = [dict(stage) for stage in stages], batch_size

    @property
    def finished(self) -> bool:
        return self.position >= len(self.stages)

    def name(self, position: int) -> str:
        return self.stages[min(position, len(self.stages) - 1)]["name"]

    def _source_ids(self, stage: dict[str, Any]) -> dict[int, float]:
        names = self.meta.get("sources")
        if not names:
            raise ValueError("curriculum=staged needs data=mixture (rows tagged by source); this data has no sources")
        unknown = sorted(set(stage["mix"]) - set(names))
        if unknown:
            raise ValueError(f"curriculum stage {stage['name']!r}: mix names {unknown}, which data has not (sources: {', '.join(names)})")
        return {names.index(name): float(weight) for name, weight in stage["mix"].items()}

    def pool(self, extras: dict[str, torch.Tensor], epoch: int, seed: int) -> tuple[torch.Tensor, int]:
        stage = self.stages[min(self.position, len(self.stages) - 1)]
        weights = self._source_ids(stage)
        by_source = {s: rows_where(extras["source"], [s]) for s in weights}
        total = self.batch_size * stage["steps"] if stage.get("steps") is not None else sum(len(r) for r in by_source.values())
        gen = epoch_generator(seed, epoch, salt=self.position)
        parts = []
        for source, rows in by_source.items():
            share = int(round(total * weights[source] / sum(weights.values())))
            if share and not len(rows):
                raise ValueError(f"curriculum stage {stage['name']!r}: source {source} has no training rows")
            draws = torch.randperm(len(rows), generator=gen).repeat(share // max(1, len(rows)) + 1)[:share]
            parts.append(rows[draws])
        return torch.cat(parts), self.batch_size

    def advance(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Optional[str]:
        stage = self.stages[self.position]
        if stage.get("threshold") is not None and self.val is not None:
            rows = rows_where(self.val.extras["source"], list(self._source_ids(stage)))
            score = self.val_exact(pl_module, rows)
            pl_module.log(f"curriculum/val_exact_{stage['name']}", score)
            if score >= stage["threshold"]:
                return f"graduated: val exact {score:.3f} >= {stage['threshold']}"
        budget = 1 if stage.get("steps") is not None else stage["epochs"]
        return f"budget of {stage.get('steps') or stage['epochs']} {'steps' if stage.get('steps') else 'epochs'} spent" if self.epochs_here >= budget else None
