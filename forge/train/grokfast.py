"""GrokFast (Lee et al. 2024, arXiv 2405.20233): amplify the slow component of every gradient.

After backward and before the optimizer step, each parameter's gradient g becomes g + λ·h, where
h is a low-pass filter of its past gradients:

- EMA: μ ← α·μ + (1 − α)·g, starting at the first gradient; h = μ (defaults α = 0.98, λ = 2).
- MA: h = the mean of the last `window` gradients, applied once the window is full
  (defaults window = 100, λ = 5).

A Lightning callback, so it works with any optimizer and model, and its state (the EMA, or the
window of past gradients) is saved in every checkpoint: a resumed run continues exactly.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import lightning as L
import torch

from forge.train.configs import FILTERS

log = logging.getLogger("forge.train")


class GrokFast(L.Callback):
    """`start_after_train_accuracy`: leave gradients untouched until the training batch's answer
    accuracy first reaches this value (the model has fit its training set), then filter."""

    def __init__(self, filter: str, alpha: float = 0.98, lamb: float = 2.0, window: int = 100,
                 start_after_train_accuracy: Optional[float] = None) -> None:
        if filter not in FILTERS:
            raise ValueError(f"optim.grokfast.filter={filter}: use one of {', '.join(FILTERS)}")
        self.filter, self.alpha, self.lamb, self.window = filter, alpha, lamb, window
        self.start_after = start_after_train_accuracy
        self.started_at: Optional[int] = None if start_after_train_accuracy is not None else 0
        self.ema: dict[str, torch.Tensor] = {}
        self.history: dict[str, torch.Tensor] = {}  # MA: a ring buffer [window, *shape] per parameter
        self.seen = 0  # MA: gradients written into the ring buffers

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if self.started_at is None:
            accuracy = trainer.callback_metrics.get("train/exact_match")
            if accuracy is None or float(accuracy) < self.start_after:
                return
            self.started_at = trainer.global_step
            log.info("grokfast: training accuracy %.4f at step %d, filtering from now on", float(accuracy), self.started_at)
        grads = {name: p.grad for name, p in pl_module.named_parameters() if p.grad is not None}
        self._follow(grads)
        if self.filter == "ema":
            self._ema(grads)
        else:
            self._ma(grads)

    def _follow(self, grads: dict[str, torch.Tensor]) -> None:
        """State restored from a checkpoint arrives on the CPU: move it to the gradients' device."""
        for state in (self.ema, self.history):
            for name, t in state.items():
                if name in grads and t.device != grads[name].device:
                    state[name] = t.to(grads[name].device)

    @torch.no_grad()
    def _ema(self, grads: dict[str, torch.Tensor]) -> None:
        for name, g in grads.items():
            mu = self.ema.get(name)
            if mu is None:
                mu = self.ema[name] = g.detach().float().clone()
            else:
                mu.mul_(self.alpha).add_(g.float(), alpha=1 - self.alpha)
            g.add_(mu.to(g.dtype), alpha=self.lamb)

    @torch.no_grad()
    def _ma(self, grads: dict[str, torch.Tensor]) -> None:
        slot = self.seen % self.window
        self.seen += 1
        for name, g in grads.items():
            buffer = self.history.get(name)
            if buffer is None:
                buffer = self.history[name] = g.new_zeros((self.window, *g.shape), dtype=torch.float32)
            buffer[slot] = g.float()
        if self.seen < self.window:
            return
        for name, g in grads.items():
            g.add_(self.history[name].mean(0).to(g.dtype), alpha=self.lamb)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "history": self.history, "seen": self.seen, "started_at": self.started_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema, self.history, self.seen = state["ema"], state["history"], state["seen"]
        self.started_at = state["started_at"]
