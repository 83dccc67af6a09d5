"""Evaluation of causal LMs: held-out loss and perplexity over packed rows, HumanEval by
generation, and the base model a fine-tune started from (for side-by-side scores)."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from typing import Any, Iterator

import torch

from forge.data.loader import SplitDataset

log = logging.getLogger(__name__)


@torch.no_grad()
def heldout_loss(lm: Any, data: SplitDataset, batch_size: int) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Mean loss per scored token over a split of packed rows (`lm`: a transformers model), and
    each row's own loss and token count in split order: the per-item outcomes a paired comparison
    of two models on the same prepared rows needs. An empty split (its fraction set to 0) has no
    loss: only its token count, 0, is reported."""
    from forge.train.causal_lm import row_losses

    rows: list[dict[str, float]] = []
    for batch in data.batches(batch_size, device=lm.device):
        sums, counts = row_losses(lm, batch)
        rows += [{"item": len(rows) + i, "loss": s / n if n else None, "tokens": n}
                 for i, (s, n) in enumerate(zip(sums.tolist(), counts.tolist()))]
    total, count = sum(r["loss"] * r["tokens"] for r in rows if r["tokens"]), sum(r["tokens"] for r in rows)
    if count == 0:
        log.warning("evaluate: the held-out split is empty (its fraction is 0): no loss or perplexity to report")
        return {"tokens": 0}, rows
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}, rows


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

    yield CausalLMModule(**{**module.hparams, "peft_cfg": {"_target_": None}, "compressor_cfg": None}).eval().to(module.device)


def humaneval(module: Any, tokenizer: Any, he_cfg: dict, seed: int, merge: bool, sandbox: dict) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generation runs on a merged copy when adapters are active: unmerged LoRA adds two small
    matmuls per adapted layer to every decoding step, which dominates on a CPU."""
    from forge.eval.humaneval import pass_at_k

    model = module.model
    if merge and hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return pass_at_k(model, tokenizer, he_cfg, seed, sandbox)
