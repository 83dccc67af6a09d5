"""The evaluate stage for token tasks: exact match, token accuracy and loss on held-out data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from forge import atomic
from forge.data.loader import SplitDataset
from forge.data.prepare import load_meta
from forge.data.task import IGNORE
from forge.errors import ForgeError
from forge.models import count_parameters
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
def tally(model: torch.nn.Module, data: SplitDataset, batch_size: int, rows: Optional[list[int]] = None) -> dict[str, float]:
    """Raw counts over `rows` (all by default): exact answers, right and scored tokens, loss."""
    causal = bool(getattr(model, "causal", True))
    rows = list(range(len(data))) if rows is None else rows
    counts = dict(examples=len(rows), exact=0, tokens_right=0, tokens=0, loss_sum=0.0, loss_tokens=0)
    for start in range(0, len(rows), batch_size):
        batch = data[rows[start : start + batch_size]]
        inputs, labels = batch["inputs"], batch["labels"]
        counts["loss_sum"] += sequence_loss(model(inputs), labels, causal, reduction="sum").item()
        counts["loss_tokens"] += int((targets(labels, causal) != IGNORE).sum())
        exact, right = answer_scores(predict(model, inputs, labels, causal), labels)
        counts["exact"] += int(exact.sum())
        counts["tokens_right"] += int(right)
        counts["tokens"] += int((labels != IGNORE).sum())
    return counts


def rates(counts: dict[str, float]) -> dict[str, float]:
    return {
        "exact_match": counts["exact"] / max(1, counts["examples"]),
        "token_accuracy": counts["tokens_right"] / max(1, counts["tokens"]),
        "loss": counts["loss_sum"] / max(1, counts["loss_tokens"]),
        "examples": counts["examples"],
    }


def score(model: torch.nn.Module, data: SplitDataset, batch_size: int, sources: Optional[list[str]] = None) -> dict[str, float]:
    """Exact match, token accuracy, loss and count; for a mixture also per source (`NAME/...`)."""
    if not sources or "source" not in data.extras:
        return rates(tally(model, data, batch_size))
    by_source = {name: tally(model, data, batch_size, (data.extras["source"] == i).nonzero().squeeze(1).tolist())
                 for i, name in enumerate(sources)}
    total = {k: sum(c[k] for c in by_source.values()) for k in next(iter(by_source.values()))}
    out = rates(total)
    for name, counts in by_source.items():
        out.update({f"{name}/{k}": v for k, v in rates(counts).items()})
    return out


def evaluate(cfg: DictConfig, paths: RunPaths) -> dict[str, Any]:
    model, ckpt = load_trained(paths)
    data = SplitDataset(paths.data, cfg.eval.split, hide_answers=not getattr(model, "causal", True))
    sources = load_meta(paths.data).get("sources")
    float_scores = score(model, data, cfg.eval.batch_size, sources)
    metrics: dict[str, Any] = {f"{cfg.eval.split}/{k}": v for k, v in float_scores.items()}
    if cfg.compressor.get("_target_") is not None:
        from forge.compress.compare import compare_token_model

        metrics.update(compare_token_model(cfg, paths, model, data, float_scores, sources))
    if cfg.eval.metric == "arc_vote":
        from forge.eval.arc import evaluate_arc

        metrics.update({f"test/{k}": v for k, v in evaluate_arc(model, paths.data, cfg.eval.batch_size).items()})
    metrics["parameters"] = count_parameters(model)
    metrics["checkpoint"] = ckpt.name
    atomic.write_json(paths.metrics, metrics)
    log.info("evaluate: %s", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics
