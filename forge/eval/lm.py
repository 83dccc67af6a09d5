"""The evaluate stage for causal LMs: held-out loss and perplexity, and HumanEval, for the
fine-tuned model and (side by side) the base model it started from."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from forge import atomic
from forge.data.loader import SplitDataset
from forge.errors import ForgeError
from forge.run_dir import RunPaths

log = logging.getLogger(__name__)


def load_finetuned(paths: RunPaths, cache_dir: Any = None) -> Any:
    from forge.train.causal_lm import load_checkpoint

    ckpt = paths.best_ckpt if paths.best_ckpt.exists() else paths.last_ckpt
    if not ckpt.exists():
        raise ForgeError(f"no checkpoint in {paths.checkpoints}: run stage=train first (or stage=all)")
    return load_checkpoint(str(ckpt), cache_dir), ckpt


@torch.no_grad()
def heldout_loss(lm: Any, data: SplitDataset, batch_size: int) -> dict[str, float]:
    """Mean loss per scored token over a split of packed rows (`lm`: a transformers model)."""
    from forge.train.causal_lm import packed_loss

    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data[list(range(start, min(len(data), start + batch_size)))]
        s, n = packed_loss(lm, {k: v.to(lm.device) for k, v in batch.items()})
        total, count = total + float(s), count + int(n)
    loss = total / max(1, count)
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}


def eval_device(accelerator: str) -> torch.device:
    """Evaluate where the trainer trained: generation on a CPU is two orders of magnitude slower."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@contextlib.contextmanager
def base_model(module: Any) -> Iterator[Any]:
    """The module with its adapters switched off, or, after a full fine-tune, a fresh base."""
    if hasattr(module.model, "disable_adapter"):
        with module.model.disable_adapter():
            yield module
        return
    from forge.train.causal_lm import CausalLMModule

    yield CausalLMModule(**{**module.hparams, "peft_cfg": {"_target_": None}, "bitlinear_skip": None}).eval().to(module.device)


def evaluate(cfg: DictConfig, paths: RunPaths) -> dict[str, Any]:
    from forge.models.hf import HFCausalLM

    module, ckpt = load_finetuned(paths, cfg.cache_dir)
    module.to(eval_device(cfg.trainer.accelerator))
    tokenizer = HFCausalLM.from_config(cfg.model, cfg.cache_dir).tokenizer()
    data = SplitDataset(paths.data, cfg.eval.split)
    he_cfg = OmegaConf.to_container(cfg.eval.humaneval, resolve=True) if cfg.eval.get("humaneval") else None
    metrics: dict[str, Any] = {"checkpoint": ckpt.name}
    variants = [("", contextlib.nullcontext(module))]
    if cfg.eval.compare_base:
        variants.append(("base/", base_model(module)))
    for prefix, context in variants:
        with context as m:
            metrics.update({f"{prefix}{cfg.eval.split}/{k}": v for k, v in heldout_loss(m.lm, data, cfg.eval.batch_size).items()})
            if he_cfg is not None:
                log.info("evaluate: HumanEval (%s model)", prefix.rstrip("/") or "fine-tuned")
                scores, records = _humaneval(m, tokenizer, he_cfg, cfg.seed, merge=not prefix)
                atomic.write_text(paths.humaneval(prefix.rstrip("/") or "fine-tuned", scores["prompt"]), "".join(json.dumps(r) + "\n" for r in records))
                metrics.update({f"{prefix}humaneval/{k}": v for k, v in scores.items()})
    if cfg.compressor.get("_target_") is not None:
        from forge.compress.compare import compare_lm

        metrics.update(compare_lm(cfg, paths, module.lm, data))
    metrics["parameters"] = sum(p.numel() for p in module.model.parameters())
    atomic.write_json(paths.metrics, metrics)
    log.info("evaluate: %s", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics


def _humaneval(module: Any, tokenizer: Any, he_cfg: dict, seed: int, merge: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generation runs on a merged copy when adapters are active: unmerged LoRA adds two small
    matmuls per adapted layer to every decoding step, which dominates on a CPU."""
    from forge.eval.humaneval import pass_at_k

    model = module.model
    if merge and hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return pass_at_k(model, tokenizer, he_cfg, seed)
