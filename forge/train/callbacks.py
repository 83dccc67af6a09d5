"""Callbacks: the ones forge adds to every Lightning run (throughput, progress), and the
`callbacks` config group built from config."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any, Optional

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger("forge.train")


def instantiate_callbacks(node: Optional[DictConfig]) -> list[L.Callback]:
    """Every entry of the `callbacks` group that is not null, built from its `_target_` (only
    forge's allowed targets), in the order the config lists them."""
    from forge.config.instantiate import instantiate

    return [instantiate(entry) for entry in (node or {}).values() if entry is not None]


class Throughput(L.Callback):
    """Optimizer steps per second of the training loop itself (setup excluded), for train.json."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.first_step = 0
        self.steps_per_second: float | None = None

    def rate(self, step: int) -> float:
        return (step - self.first_step) / max(1e-9, time.perf_counter() - (self.start or 0.0))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None and trainer.global_step > self.first_step:
            self.steps_per_second = self.rate(trainer.global_step)


class PlainProgress(L.Callback):
    """One line every `every` steps when the output is not a terminal (CI logs, files)."""

    def __init__(self, every: int, clock: Throughput) -> None:
        self.every, self.clock = max(1, every), clock

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or (step % self.every and step != trainer.max_steps):
            return
        rate = self.clock.rate(step)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        log.info("step %d/%d %.1f it/s %s", step, trainer.max_steps, rate, shown)



class StopAt(L.Callback):
    """Stop training at the first validation where a metric reaches its target (`trainer.stop_at`:
    a loss must fall to it, anything else rise to it); `reached` records the step, for train.json.
    Lightning's EarlyStopping threshold is strict (> not >=), so an exact match of 1.0 would
    never stop it."""

    def __init__(self, targets: Optional[dict[str, float]] = None) -> None:
        self.targets = dict(targets or {})
        self.reached: dict[str, int] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.targets:
            return
        for name, target in self.targets.items():
            value = trainer.callback_metrics.get(name)
            if value is None or name in self.reached:
                continue
            if (float(value) <= target) if "loss" in name else (float(value) >= target):
                self.reached[name] = trainer.global_step
        done = trainer.strategy.reduce_boolean_decision(len(self.reached) == len(self.targets), all=True)
        if done:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"reached": self.reached}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reached = dict(state["reached"])


class StopOnRequest(L.Callback):
    """`forge runs stop` (SIGTERM) ends training at the next optimizer step: the last checkpoint
    is saved there, so `resume=RUN` continues exactly, and the run records "stopped"."""

    def __init__(self, last_ckpt: Any) -> None:
        self.last_ckpt = last_ckpt

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        from forge.run_state import Stopped, stop_requested

        if stop_requested() and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            trainer.save_checkpoint(self.last_ckpt, weights_only=False)
            raise Stopped(signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Lightning sees the SIGTERM too and may stop first, between two steps (during validation):
        the checkpoint is saved there all the same."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last_ckpt, weights_only=False)
