"""Hugging Face causal LMs (a local folder, a GGUF file or a hub id) fine-tuned on packed SFT rows,
with or without PEFT adapters: text is tokenized with the model's own tokenizer, the model is
scored by held-out loss (and HumanEval when configured) next to its base model, and exported as
adapter, merged model and GGUF."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from forge import atomic
from forge.config.families import FAMILIES
from forge.data.loader import SplitDataset
from forge.families import Family, Trained, compressor_cfg
from forge.models.hf import HFCausalLM
from forge.run_dir import RunPaths
from forge.train.causal_lm import CausalLMModule, load_checkpoint, scored_logits
from forge.train.checkpoints import best_or_last

log = logging.getLogger(__name__)


class CausalLMFamily(Family):
    spec = FAMILIES["causal_lm"]

    def tokenizer(self, cfg: DictConfig) -> Any:
        return HFCausalLM.from_config(cfg.model, cfg.cache_dir).tokenizer()

    def module(self, cfg: DictConfig, meta: dict[str, Any]) -> CausalLMModule:
        return CausalLMModule(OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.peft, resolve=True),
                              OmegaConf.to_container(cfg.optim, resolve=True), cfg.trainer.max_steps, meta.get("chat_template"),
                              cfg.cache_dir, compressor_cfg(cfg))

    def load(self, cfg: DictConfig, paths: RunPaths, merged: bool = False) -> Trained:
        """On the CPU. `merged`: a plain transformers model with the adapters merged into its
        weights (what compression wants; the module's adapters are gone then); otherwise the
        model with adapters attached."""
        ckpt = best_or_last(paths)
        module = load_checkpoint(str(ckpt), cfg.cache_dir)
        model = module.model
        if merged and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        return Trained(module, model if merged else module.lm, ckpt)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Only the scored positions go through the output head (a fifth of the model's compute)."""
        return self.scored_logits(model, batch)

    def scored_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return scored_logits(model, batch)[0]

    def eval_batches(self, cfg: DictConfig, paths: RunPaths, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        return SplitDataset(paths.data, cfg.eval.split).batches(cfg.eval.batch_size, device=model.device)

    def score(self, cfg: DictConfig, paths: RunPaths, model: nn.Module) -> dict[str, Any]:
        """Loss, perplexity and token count on the held-out split."""
        from forge.eval.lm import heldout_loss

        return heldout_loss(model, SplitDataset(paths.data, cfg.eval.split), cfg.eval.batch_size)[0]

    def evaluate_lm(self, cfg: DictConfig, paths: RunPaths, trained: Trained) -> dict[str, Any]:
        """Held-out loss and, when configured, HumanEval; with eval.compare_base the base model
        (adapters off, or the pretrained weights after a full fine-tune) side by side."""
        from forge.eval.lm import base_model, eval_device, heldout_loss, humaneval

        module = trained.module.to(eval_device(cfg.trainer.accelerator))
        he_cfg = OmegaConf.to_container(cfg.eval.humaneval, resolve=True) if cfg.eval.get("humaneval") else None
        metrics: dict[str, Any] = {"checkpoint": trained.checkpoint.name}
        variants = [("", contextlib.nullcontext(module))]
        if cfg.eval.compare_base:
            variants.append(("base/", base_model(module)))
        for prefix, context in variants:
            with context as m:
                name = prefix.rstrip("/") or "fine-tuned"
                held, rows = heldout_loss(m.lm, SplitDataset(paths.data, cfg.eval.split), cfg.eval.batch_size)
                metrics.update({f"{prefix}{cfg.eval.split}/{k}": v for k, v in held.items()})
                atomic.write_text(paths.heldout(name, cfg.eval.split), "".join(json.dumps(r) + "\n" for r in rows))
                if he_cfg is not None:
                    log.info("evaluate: HumanEval (%s model)", name)
                    scores, records = humaneval(m, self.tokenizer(cfg), he_cfg, cfg.seed, merge=not prefix,
                                                sandbox=OmegaConf.to_container(cfg.eval.sandbox, resolve=True))
                    atomic.write_text(paths.humaneval(name, scores["prompt"]), "".join(json.dumps(r) + "\n" for r in records))
                    metrics.update({f"{prefix}humaneval/{k}": v for k, v in scores.items()})
        metrics["parameters"] = sum(p.numel() for p in module.model.parameters())
        return metrics

    def export_hf(self, cfg: DictConfig, paths: RunPaths, trained: Trained, compressed: Optional[nn.Module]) -> dict[str, Any]:
        from forge.export.hf import export

        return export(cfg, paths, trained.module, trained.checkpoint, compressed)
