"""The LightningModule that trains any forge token model on a prepared dataset."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.optim.swa_utils import AveragedModel

from forge.config.errors import ConfigError
from forge.config.instantiate import instantiate, resolve_target
from forge.data.task import IGNORE
from forge.errors import ForgeError, NonFiniteLossError
from forge.models import build_model
from forge.models.sequence import answer_scores, predict, sequence_loss, targets
from forge.run_dir import RunPaths
from forge.train.checkpoints import best_or_last

SCHEDULE_KEYS = ("warmup_steps", "schedule", "min_lr_ratio")


class SequenceModule(L.LightningModule):
    """Loss on the scored tokens; validation by greedy answers (exact match), as in evaluation.

    Its hyperparameters (model and optimizer config, vocabulary size, sequence length) are saved
    in every checkpoint, so a checkpoint rebuilds its own model.
    """

    def __init__(self, model_cfg: dict, optim_cfg: dict, vocab_size: int, max_len: int, max_steps: int,
                 compressor_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = with_training_hook(build_model(OmegaConf.create(model_cfg), vocab_size, max_len), compressor_cfg)
        self.causal = bool(getattr(self.model, "causal", True))
        decay = float(getattr(self.model, "ema_decay", 0.0))
        self.ema = AveragedModel(self.model, multi_avg_fn=_ema_with_warmup(decay), use_buffers=True) if decay else None
        if self.ema is not None:
            self.ema.requires_grad_(False)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validation, evaluation and export use: the EMA average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
        # Recursive models train differently from how they infer (segments, halting, ponder
        # cost), so they say how; every other model is scored on its logits. A replayed batch
        # (data.sampler=prioritized) carries importance weights: its loss weights each row's,
        # and the rows' own losses go back to the sampler as their new priorities.
        per_row = None
        if hasattr(self.model, "training_loss"):
            loss, stats = self.model.training_loss(batch["inputs"], batch["labels"])
        else:
            logits = self.model(batch["inputs"])
            if "weights" in batch:
                loss, per_row = weighted_loss(*sequence_row_losses(logits, batch["labels"], self.causal), batch["weights"])
            else:
                loss = sequence_loss(logits, batch["labels"], self.causal)
            stats = {"exact_match": teacher_forced_exact_match(logits.detach(), batch["labels"], self.causal)}
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True)
        for name, value in stats.items():
            self.log(f"train/{name}", value)
        return loss if per_row is None else {"loss": loss, "row_losses": per_row}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of a batch without logging anything: what the continual-learning callbacks
        (forge.train.continual) take on an earlier task's rows."""
        return sequence_loss(self.model(batch["inputs"]), batch["labels"], self.causal)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Average right after the weights change, so a checkpoint taken at the end of this step
        # holds the matching average and a resumed run continues it exactly.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch["inputs"], batch["labels"]
        model = self.evaluated
        loss = sequence_loss(model(inputs), labels, self.causal)
        exact, right = answer_scores(predict(model, inputs, labels, self.causal), labels)
        n, scored = len(inputs), int((labels != IGNORE).sum())
        exact_match, token_accuracy = exact.float().mean(), right.float() / max(1, scored)
        self.log("val/loss", loss, batch_size=n, sync_dist=True)
        self.log("val/exact_match", exact_match, batch_size=n, prog_bar=True, sync_dist=True)
        self.log("val/token_accuracy", token_accuracy, batch_size=n, sync_dist=True)
        # What picks best.ckpt: exact match, ties (e.g. all zero early on) broken by token
        # accuracy, whose weight is too small to outvote one more exact answer in 10,000.
        self.log("val/selection", exact_match + 1e-5 * token_accuracy, batch_size=n, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(list(self.model.parameters()), self.hparams.optim_cfg, self.hparams.max_steps)

    def summary(self, best_selection: Optional[float], seconds: float) -> dict[str, Any]:
        """What train.json adds for this module: val/selection is exact match (plus a tie-break)."""
        return {"best_val_exact_match": best_selection}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng(checkpoint)
        if hasattr(self.model, "carry_state"):
            checkpoint["model_carry"] = self.model.carry_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng(checkpoint)
        if hasattr(self.model, "load_carry_state"):
            self.model.load_carry_state(checkpoint.get("model_carry"))


def load_checkpoint(path: str) -> SequenceModule:
    """A trained module rebuilt from a checkpoint alone (its hyperparameters say how)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = SequenceModule(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    return module.eval()


def init_weights(module: SequenceModule, source: str) -> Path:
    """Start `module` from the trained weights of an earlier run (the checkpoint its evaluation
    used) or of a checkpoint file. Only the weights: the optimizer, its schedule and the data
    position start afresh, so training on a new task re-warms the learning rate."""
    path = Path(source)
    ckpt = path if path.is_file() else best_or_last(RunPaths(path))
    theirs = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    mine = module.state_dict()
    for name in sorted(set(mine) | set(theirs)):
        here, there = mine.get(name), theirs.get(name)
        if here is None or there is None or here.shape != there.shape:
            raise ForgeError(f"init_from={source}: its model does not fit this run's ({name}: {_shape(there)} there, {_shape(here)} here); "
                             "use the same model config and data with the same vocabulary and length (e.g. sources of one data=mixture)")
    module.load_state_dict(theirs)
    return ckpt


def _shape(tensor: Optional[torch.Tensor]) -> str:
    return "absent" if tensor is None else str(tuple(tensor.shape))


def with_training_hook(model: torch.nn.Module, compressor_cfg: Optional[dict]) -> torch.nn.Module:
    """The model as the run's compressor trains it (its quantization-aware training hook; most
    compressors leave it as it is). The compressor config is a hyperparameter of the module, so
    a checkpoint rebuilds the same layers."""
    if compressor_cfg is None:
        return model
    return instantiate(OmegaConf.create(compressor_cfg)).training_wrapper(model)


def teacher_forced_exact_match(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Share of the batch whose every scored token is the argmax given the true prefix: how well
    the model fits its training rows, at no extra forward pass."""
    if causal:
        logits = logits[:, :-1]
    exact, _ = answer_scores(logits.argmax(-1), targets(labels, causal))
    return exact.float().mean()


def sequence_row_losses(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and scored-token count of each row of a batch."""
    per_token = sequence_loss(logits, labels, causal, reduction="none").view(len(labels), -1)
    return per_token.sum(1), (targets(labels, causal) != IGNORE).sum(1)


def weighted_loss(sums: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss of a replayed batch, each row's mean token loss detached: its new priority).
    The loss is sum_i w_i * (row i's summed token loss) / (scored tokens of the batch): with every
    weight 1, the plain token mean every other batch is trained on."""
    loss = (weights.to(sums.dtype) * sums).sum() / counts.sum().clamp(min=1)
    return loss, (sums / counts.clamp(min=1)).detach()


def build_optimizer(params: list[torch.nn.Parameter], optim_cfg: dict, max_steps: int) -> dict[str, Any]:
    """The `optim` config's optimizer (no weight decay on vectors) and its step-wise schedule."""
    cfg = dict(optim_cfg)
    schedule = {k: cfg.pop(k) for k in SCHEDULE_KEYS}
    cfg.pop("grokfast", None)  # a gradient filter, applied by the GrokFast callback
    optimizer_cls = resolve_target(cfg.pop("_target_"))
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    weight_decay = cfg.pop("weight_decay", 0.0)
    try:
        optimizer = optimizer_cls([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], **cfg)
    except ValueError as e:  # e.g. "Invalid learning rate: -1.0"
        raise ConfigError(f"optim: {e}") from None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(max_steps, **schedule))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def save_rng(checkpoint: dict[str, Any]) -> None:
    """Python, numpy and torch RNG states as plain tensors and tuples, so the checkpoint loads
    with torch.load(weights_only=True) and a resumed run draws the same numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, gauss_next = random.getstate()
    checkpoint["rng_states"] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": (version, torch.tensor(state, dtype=torch.int64), gauss_next),
    }


def restore_rng(checkpoint: dict[str, Any]) -> None:
    states = checkpoint.get("rng_states")
    if states:
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, state, gauss_next = states["python"]
        random.setstate((version, tuple(state.tolist()), gauss_next))


def _ema_with_warmup(decay: float):
    """EMA whose decay ramps up as (1 + n) / (10 + n) toward `decay`: a fixed 0.999 would keep
    the average near the random initialization for the first few thousand steps."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def _lr_lambda(max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        if schedule == "constant":
            return 1.0
        if schedule == "linear":
            return 1.0 - (1.0 - min_lr_ratio) * progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
