"""The evaluate stage for token tasks: exact match, token accuracy and loss on held-out data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from forge import io
from forge.data.loader import SplitDataset
from forge.errors import ForgeError
from forge.models import count_parameters
from forge.data.task import IGNORE
from forge.models.sequence import answer_scores, predict, sequence_loss, targets
from forge.run_dir import RunPaths

log = logging.getLogger(__name__)


def load_trained(paths: RunPaths) -> tuple[torch.nn.Module, Path]:
    """The trained model from the best checkpoint (the last one if there is no best)."""
    from forge.train.module import SequenceModule

    ckpt = paths.best_ckpt if paths.best_ckpt.exists() else paths.last_ckpt
    if not ckpt.exists():
        raise ForgeError(f"no checkpoint in {paths.checkpoints}: run stage=train first (or stage=all)")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    module = SequenceModule(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    return module.evaluated.eval(), ckpt


@torch.no_grad()
def score(model: torch.nn.Module, data: SplitDataset, batch_size: int) -> dict[str, float]:
    causal = bool(getattr(model, "causal", True))
    exact = tokens_right = tokens = loss_tokens = 0
    loss_sum = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[list(range(start, min(start + batch_size, len(data))))]
        inputs, labels = batch["inputs"], batch["labels"]
        loss_sum += sequence_loss(model(inputs), labels, causal, reduction="sum").item()
        loss_tokens += int((targets(labels, causal) != IGNORE).sum())
        e, right = answer_scores(predict(model, inputs, labels, causal), labels)
        exact += int(e.sum())
        tokens_right += int(right)
        tokens += int((labels != IGNORE).sum())
    return {
        "exact_match": exact / len(data),
        "token_accuracy": tokens_right / max(1, tokens),
        "loss": loss_sum / max(1, loss_tokens),
        "examples": len(data),
    }


def evaluate(cfg: DictConfig, paths: RunPaths) -> dict[str, Any]:
    model, ckpt = load_trained(paths)
    data = SplitDataset(paths.data, cfg.eval.split, hide_answers=not getattr(model, "causal", True))
    metrics = {f"{cfg.eval.split}/{k}": v for k, v in score(model, data, cfg.eval.batch_size).items()}
    if cfg.eval.metric == "arc_vote":
        from forge.eval.arc import evaluate_arc

        metrics.update({f"test/{k}": v for k, v in evaluate_arc(model, paths.data, cfg.eval.batch_size).items()})
    metrics["parameters"] = count_parameters(model)
    metrics["checkpoint"] = ckpt.name
    io.write_json(paths.metrics, metrics)
    log.info("evaluate: %s", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics
