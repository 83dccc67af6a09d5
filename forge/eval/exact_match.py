"""Scores of token models: exact match, token accuracy and loss on a prepared split."""

from __future__ import annotations

from typing import Optional

import torch

from forge.data.loader import SplitDataset
from forge.data.task import IGNORE
from forge.models.sequence import answer_scores, predict, sequence_loss, targets



@torch.no_grad()
def tally(model: torch.nn.Module, data: SplitDataset, batch_size: int, rows: Optional[list[int]] = None) -> dict[str, float]:
    """Raw counts over `rows` (all by default): exact answers, right and scored tokens, loss."""
    causal = bool(getattr(model, "causal", True))
    rows = list(range(len(data))) if rows is None else rows
    counts = dict(examples=len(rows), exact=0, tokens_right=0, tokens=0, loss_sum=0.0, loss_tokens=0)
    for batch in data.batches(batch_size, rows):
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
