"""forge's own token models (transformer, HRRM, Cogment) on forge's token tasks: trained from
scratch on the task's vocabulary, scored by exact match of greedy answers, exported as
safetensors with the config that rebuilds them."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from forge.config.families import FAMILIES
from forge.data.loader import SplitDataset
from forge.data.prepare import load_meta
from forge.data.task import IGNORE
from forge.eval.exact_match import score
from forge.families import Family, Trained, compressor_cfg
from forge.models import count_parameters
from forge.models.sequence import targets
from forge.run_dir import RunPaths
from forge.train.checkpoints import best_or_last
from forge.train.module import SequenceModule, init_weights, load_checkpoint


class TokenFamily(Family):
    spec = FAMILIES["tokens"]

    def module(self, cfg: DictConfig, meta: dict[str, Any]) -> SequenceModule:
        module = SequenceModule(OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.optim, resolve=True),
                                len(meta["vocab"]), meta["seq_len"], cfg.trainer.max_steps, compressor_cfg(cfg))
        if cfg.get("init_from"):
            init_weights(module, cfg.init_from)
        return module

    def load(self, cfg: DictConfig, paths: RunPaths, merged: bool = False) -> Trained:
        ckpt = best_or_last(paths)
        module = load_checkpoint(str(ckpt))
        return Trained(module, module.evaluated.eval(), ckpt)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["inputs"])

    def scored_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        causal = _causal(model)
        out = model(batch["inputs"])
        out = out[:, :-1] if causal else out
        return out[targets(batch["labels"], causal) != IGNORE]

    def eval_batches(self, cfg: DictConfig, paths: RunPaths, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        return _split(cfg, paths, model).batches(cfg.eval.batch_size)

    def score(self, cfg: DictConfig, paths: RunPaths, model: nn.Module) -> dict[str, Any]:
        """Exact match, token accuracy, loss and count; for a mixture also per source."""
        return score(model, _split(cfg, paths, model), cfg.eval.batch_size, load_meta(paths.data).get("sources"))

    def evaluate_exact_match(self, cfg: DictConfig, paths: RunPaths, trained: Trained) -> dict[str, Any]:
        metrics: dict[str, Any] = {f"{cfg.eval.split}/{k}": v for k, v in self.score(cfg, paths, trained.model).items()}
        metrics["parameters"] = count_parameters(trained.model)
        metrics["checkpoint"] = trained.checkpoint.name
        return metrics

    def evaluate_arc_vote(self, cfg: DictConfig, paths: RunPaths, trained: Trained) -> dict[str, Any]:
        """Exact match per row, then ARC's pass@k over the votes of each query's augmentations."""
        from forge.eval.arc import evaluate_arc

        metrics = self.evaluate_exact_match(cfg, paths, trained)
        metrics.update({f"test/{k}": v for k, v in evaluate_arc(trained.model, paths.data, cfg.eval.batch_size).items()})
        return metrics

    def export_safetensors(self, cfg: DictConfig, paths: RunPaths, trained: Trained, compressed: Optional[nn.Module]) -> dict[str, Any]:
        from forge.export.safetensors import export

        if compressed is not None:
            export(cfg, paths, compressed, packed=paths.compressed)
        else:
            export(cfg, paths, trained.model)
        return {"model": str(paths.model)}


def _causal(model: nn.Module) -> bool:
    return bool(getattr(model, "causal", True))


def _split(cfg: DictConfig, paths: RunPaths, model: nn.Module) -> SplitDataset:
    """The evaluated split; a bidirectional model gets it with the answers blanked out."""
    return SplitDataset(paths.data, cfg.eval.split, hide_answers=not _causal(model))
