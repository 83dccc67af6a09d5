"""What every curriculum shares: per-epoch pools, level-wise validation, state in checkpoints."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Optional

import lightning as L
import torch

from forge.data.loader import SplitDataset
from forge.models.sequence import answer_scores, predict

log = logging.getLogger("forge.curriculum")


class Curriculum(L.Callback, ABC):
    """Subclasses define `pool`, `advance` and `finished`; this class keeps the position and the history."""

    def __init__(self) -> None:
        self.position = 0  # index of the current stage or level
        self.epochs_here = 0  # epochs finished in it
        self.history: list[dict[str, Any]] = []
        self.val: Optional[SplitDataset] = None
        self.meta: dict[str, Any] = {}

    @abstractmethod
    def pool(self, extras: dict[str, torch.Tensor], epoch: int, seed: int) -> tuple[torch.Tensor, int]:
        """Rows of the training split for this epoch, and the batch size to cut them into."""

    @abstractmethod
    def advance(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Optional[str]:
        """Called after each epoch: a reason to move to the next stage, or None to stay."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """Whether every stage is done."""

    def attach(self, val: SplitDataset, meta: dict[str, Any]) -> None:
        """The validation split it scores stages on, and the dataset's meta (level and source names)."""
        self.val, self.meta = val, meta

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs_here += 1
        reason = self.advance(trainer, pl_module)
        if reason is None:
            return
        self.history.append({"stage": self.position, "epochs": self.epochs_here, "step": trainer.global_step, "why": reason})
        if trainer.is_global_zero:
            log.info("curriculum: leaving %s after %d epochs at step %d (%s)", self.name(self.position), self.epochs_here, trainer.global_step, reason)
        self.position += 1
        self.epochs_here = 0
        if self.finished:
            if trainer.is_global_zero:
                log.info("curriculum: complete at step %d", trainer.global_step)
            trainer.should_stop = True
            return
        self.apply(trainer, pl_module)
        pl_module.log("curriculum/stage", float(self.position))

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Set the optimizer and trainer settings of the current stage (none by default)."""

    def name(self, position: int) -> str:
        return str(position)

    def val_exact(self, pl_module: L.LightningModule, rows: torch.Tensor, batch_size: int = 500) -> float:
        """Exact match of the evaluated model on these validation rows."""
        if self.val is None or not len(rows):
            return 0.0
        model = getattr(pl_module, "evaluated", pl_module)
        was_training = model.training
        model.eval()
        right = 0
        for start in range(0, len(rows), batch_size):
            batch = self.val[rows[start : start + batch_size].tolist()]
            exact, _ = answer_scores(predict(model, batch["inputs"], batch["labels"], pl_module.causal), batch["labels"])
            right += int(exact.sum())
        model.train(was_training)
        return right / len(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "epochs_here": self.epochs_here, "history": list(self.history), **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.epochs_here, self.history = state["position"], state["epochs_here"], list(state["history"])
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""


def rows_where(column: torch.Tensor, values: list[int]) -> torch.Tensor:
    return torch.nonzero(torch.isin(column, torch.tensor(values, dtype=column.dtype))).squeeze(1)


def epoch_generator(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)
