"""Continual learning as callbacks: training on a new task without forgetting an earlier one.

Both read `previous`, the earlier task's run directory (by default `init_from`, the run this one
starts from): its prepared data, narrowed by `sources` to the sources of a data=mixture the
earlier task trained on.

- EWC (Kirkpatrick et al. 2017) pulls each trained weight toward its value after the earlier
  task, in proportion to how much that task's loss depends on it: the penalty is
  (strength / 2) · Σ F_i (θ_i − θ*_i)², with F the diagonal empirical Fisher (squared per-example
  gradients of the loss, averaged over `samples` earlier rows) at θ*, the weights this run starts
  from. Online (Schwarz et al. 2018): when the earlier run trained with EWC too, its Fisher is
  carried forward, F = decay · F_before + F_new, so a third task protects both before it.
- Rehearsal replays earlier rows at every optimizer step: the gradient becomes
  (1 − share) · ∇L(the batch) + share · ∇L(ceil(share · batch size) earlier rows), in expectation
  the same as replacing that share of each batch with earlier rows (Ibrahim et al. 2024 replay a
  few percent of the old data when training language models on new data).

Both act in `on_before_optimizer_step`: once per optimizer step, after the gradients of all the
accumulated batches and before they are clipped, so they hold for any optimizer and any gradient
accumulation. Their state (Fisher and anchor; the rehearsal draw's generator) is saved in every
checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch

from forge.data.loader import SplitDataset
from forge.data.prepare import load_meta
from forge.errors import ForgeError
from forge.run_dir import RunPaths
from forge.train.checkpoints import best_or_last

log = logging.getLogger("forge.train")


class EarlierTask:
    """The earlier task's rows: a split of `previous`'s prepared data, restricted to `sources`."""

    def __init__(self, owner: str, previous: Optional[str], sources: Optional[list[str]], split: str) -> None:
        if not previous:
            raise ValueError(f"{owner} needs the earlier task's run: set init_from=RUN (the run this one continues) "
                             f"or callbacks.{owner}.previous=RUN")
        self.owner, self.run, self.sources, self.split = owner, Path(previous), list(sources or []), split
        if not (self.run / "data" / "meta.json").is_file():
            raise ValueError(f"callbacks.{owner}.previous={previous}: no prepared data there; give the earlier task's run directory")

    def load(self, pl_module: L.LightningModule) -> tuple[SplitDataset, list[int]]:
        if not hasattr(pl_module, "loss") or hasattr(pl_module.model, "training_loss"):
            raise ForgeError(f"callbacks.{self.owner}: {type(pl_module.model).__name__} trains with its own recurrent loss and carry; "
                             "use it with the transformer or a causal LM")
        data_dir = RunPaths(self.run).data
        data = SplitDataset(data_dir, self.split, hide_answers=not pl_module.causal)
        rows = list(range(len(data)))
        if self.sources:
            names = load_meta(data_dir).get("sources") or []
            unknown = [s for s in self.sources if s not in names]
            if unknown:
                raise ForgeError(f"callbacks.{self.owner}.sources: {unknown[0]!r} is not a source of {self.run}'s data "
                                 f"(it has {', '.join(names) or 'none: it is not a data=mixture'})")
            wanted = torch.tensor([names.index(s) for s in self.sources])
            rows = torch.isin(data.extras["source"], wanted).nonzero().squeeze(1).tolist()
        if not rows:
            raise ForgeError(f"callbacks.{self.owner}: {self.run}'s {self.split} split has no rows of the earlier task")
        return data, rows


def trained_parameters(pl_module: L.LightningModule) -> dict[str, torch.nn.Parameter]:
    """The parameters the optimizer updates (the adapters under LoRA), by name."""
    return {name: p for name, p in pl_module.named_parameters() if p.requires_grad}


def batch_to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class EWC(L.Callback):
    """Elastic weight consolidation toward the weights the run starts from (see the module doc)."""

    def __init__(self, previous: Optional[str] = None, strength: float = 1000.0, decay: float = 1.0, samples: int = 256,
                 sources: Optional[list[str]] = None, split: str = "train", seed: int = 0) -> None:
        self.task = EarlierTask("ewc", previous, sources, split)
        self.strength, self.decay, self.samples, self.seed = float(strength), float(decay), int(samples), seed
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.tasks = 0  # earlier tasks the Fisher sums over

    @property
    def state_key(self) -> str:
        return "EWC"  # fixed, so the next task's run finds it in this run's checkpoint

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Estimate the Fisher on the earlier task, unless a resumed checkpoint restored it."""
        if self.fisher:
            return
        params = trained_parameters(pl_module)
        self.fisher = self.estimate(pl_module, params)
        before = self.carried(params)
        if before is not None:
            self.fisher = {n: self.decay * before["fisher"][n].to(f) + f for n, f in self.fisher.items()}
        self.tasks = 1 + (before["tasks"] if before is not None else 0)
        self.anchor = {n: p.detach().clone() for n, p in params.items()}
        log.info("ewc: Fisher over %d earlier task(s), %s parameters, strength %g", self.tasks,
                 f"{sum(f.numel() for f in self.fisher.values()):,}", self.strength)

    def estimate(self, pl_module: L.LightningModule, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
        """Mean squared per-example gradient of the loss over `samples` earlier rows (drawn with
        the callback's seed), in eval mode so dropout does not add noise to it."""
        data, rows = self.task.load(pl_module)
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed))[: self.samples].tolist()
        fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        was_training = pl_module.training
        pl_module.eval()
        for i in pick:
            pl_module.zero_grad(set_to_none=True)
            pl_module.loss(batch_to(data[[rows[i]]], pl_module.device)).backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach().float() ** 2
        pl_module.zero_grad(set_to_none=True)
        pl_module.train(was_training)
        return {n: f / len(pick) for n, f in fisher.items()}

    def carried(self, params: dict[str, torch.nn.Parameter]) -> Optional[dict[str, Any]]:
        """The EWC state the earlier run saved, if it trained with EWC over the same parameters."""
        ckpt = best_or_last(RunPaths(self.task.run))
        state = torch.load(ckpt, map_location="cpu", weights_only=True).get("callbacks", {}).get(self.state_key)
        if state is None:
            return None
        if set(state["fisher"]) != set(params):
            raise ForgeError(f"callbacks.ewc.previous={self.task.run}: its EWC state covers other parameters than this run trains; "
                             "continue with the same model and adapter config")
        return state

    def penalty(self, params: dict[str, torch.nn.Parameter]) -> torch.Tensor:
        """(strength / 2) · Σ F (θ − θ*)²."""
        total = sum(((self.fisher[n] * (p.detach().float() - self.anchor[n]) ** 2).sum() for n, p in params.items()),
                    torch.zeros(()))
        return 0.5 * self.strength * total

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        """Add the penalty's gradient, strength · F (θ − θ*), to each trained parameter's."""
        params = trained_parameters(pl_module)
        for n, p in params.items():
            pull = (self.strength * self.fisher[n] * (p.detach().float() - self.anchor[n])).to(p.dtype)
            p.grad = pull if p.grad is None else p.grad + pull
        pl_module.log("train/ewc_penalty", self.penalty(params))

    def state_dict(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor, "tasks": self.tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher, self.anchor, self.tasks = dict(state["fisher"]), dict(state["anchor"]), int(state["tasks"])


class Rehearsal(L.Callback):
    """Replays a share of the earlier task's rows at every optimizer step (see the module doc)."""

    def __init__(self, previous: Optional[str] = None, share: float = 0.05, sources: Optional[list[str]] = None,
                 split: str = "train", seed: int = 0) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"callbacks.rehearsal.share={share}: the share of earlier rows must be in (0, 1]")
        self.task = EarlierTask("rehearsal", previous, sources, split)
        self.share = float(share)
        self.generator = torch.Generator().manual_seed(seed)
        self.data: Optional[SplitDataset] = None
        self.rows: list[int] = []
        self.replayed = 0  # earlier rows replayed so far
        self.batch_rows = 0  # rows of the training batch being accumulated

    @property
    def state_key(self) -> str:
        return "Rehearsal"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.data, self.rows = self.task.load(pl_module)
        log.info("rehearsal: replaying %d earlier rows at a share of %g", len(self.rows), self.share)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.batch_rows = len(batch["inputs"])

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        assert self.data is not None
        n = math.ceil(self.share * self.batch_rows)
        pick = torch.randint(len(self.rows), (n,), generator=self.generator).tolist()
        params = trained_parameters(pl_module)
        for p in params.values():
            if p.grad is not None:
                p.grad.mul_(1.0 - self.share)
        with trainer.precision_plugin.forward_context():
            loss = pl_module.loss(batch_to(self.data[[self.rows[i] for i in pick]], pl_module.device))
        (self.share * loss).backward()
        self.replayed += n
        pl_module.log("train/rehearsal_loss", loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "replayed": self.replayed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.replayed = int(state["replayed"])
