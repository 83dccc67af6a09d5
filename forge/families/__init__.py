"""The model-family seam: the stages call a family; nothing else asks which kind of model a run
trains. A family knows how its models are tokenized, built, trained, loaded, evaluated and
exported. What each accepts is declared as data in forge.config.families (validation reads it
without importing torch); the implementation is imported when a stage runs.

A new family is a `FamilySpec` in forge.config.families plus one module here with a `Family`
subclass; neither the stages nor the other families change.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from omegaconf import DictConfig, OmegaConf

from forge.config.families import FAMILIES, FamilySpec, family_name
from forge.errors import ForgeError
from forge.run_dir import RunPaths

if TYPE_CHECKING:
    import lightning as L
    import torch
    from torch import nn


@dataclass
class Trained:
    """A run's trained model as a checkpoint rebuilt it."""

    module: "L.LightningModule"  # the LightningModule (hyperparameters, adapters, EMA)
    model: "nn.Module"  # the network to run: EMA weights for token models, adapters merged on request for LLMs
    checkpoint: Path


class Family(ABC):
    spec: ClassVar[FamilySpec]

    def tokenizer(self, cfg: DictConfig) -> Any:
        """The tokenizer that text data is prepared with; None for forge's token tasks."""
        return None

    @abstractmethod
    def module(self, cfg: DictConfig, meta: dict[str, Any]) -> "L.LightningModule":
        """The LightningModule to train on the prepared data described by `meta`."""

    @abstractmethod
    def load(self, cfg: DictConfig, paths: RunPaths, merged: bool = False) -> Trained:
        """The trained model from the run's best checkpoint (its last if there is no best)."""

    @abstractmethod
    def forward(self, model: "nn.Module", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """The model's logits on a training batch (calibration runs it over the train split)."""

    @abstractmethod
    def scored_logits(self, model: "nn.Module", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """Logits at the positions the task scores, [n, vocab]: where KL and top-1 are measured."""

    @abstractmethod
    def eval_batches(self, cfg: DictConfig, paths: RunPaths, model: "nn.Module") -> Any:
        """The evaluated split, batch by batch, as `model` reads it."""

    @abstractmethod
    def score(self, cfg: DictConfig, paths: RunPaths, model: "nn.Module") -> dict[str, Any]:
        """Scores of any model of this family (trained or compressed) on the evaluated split."""

    def evaluate(self, cfg: DictConfig, paths: RunPaths, trained: Trained) -> dict[str, Any]:
        """The suite `eval.metric` names (validation checked the family offers it)."""
        return getattr(self, f"evaluate_{cfg.eval.metric}")(cfg, paths, trained)

    def export(self, cfg: DictConfig, paths: RunPaths, trained: Trained, compressed: Optional["nn.Module"]) -> dict[str, Any]:
        """The export `export.format` names; `compressed`: the packed model, when the run has one."""
        return getattr(self, f"export_{cfg.export.format}")(cfg, paths, trained, compressed)


def compressor_cfg(cfg: DictConfig) -> Optional[dict]:
    """The compressor config a module is built with, so it applies the compressor's training hook
    (quantization-aware training) and a checkpoint rebuilds the same layers; None without one."""
    return OmegaConf.to_container(cfg.compressor, resolve=True) if cfg.compressor.get("_target_") else None


def family_of(cfg: DictConfig) -> Family:
    target = cfg.model.get("_target_")
    name = family_name(target)
    if name is None:
        raise ForgeError(f"model._target_={target}: no model family declares this model")
    module, cls = FAMILIES[name].implementation.split(":")
    return getattr(importlib.import_module(module), cls)()
