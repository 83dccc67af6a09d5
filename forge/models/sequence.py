"""How a token model is scored and decoded; shared by training and evaluation.

Causal models predict the next token, so logits at t are scored against labels at t + 1 and
answers are produced greedily, one token at a time, never by teacher forcing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forge.data.task import IGNORE


def targets(labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """The labels each logit position is scored against (shifted by one for a causal model)."""
    return labels[:, 1:] if causal else labels


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, causal: bool, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the scored tokens: their mean, or their sum with reduction="sum"."""
    if causal:
        logits = logits[:, :-1]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets(labels, causal).reshape(-1),
        ignore_index=IGNORE,
        reduction=reduction,
    )


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Tokens the model gives at every scored position (other positions keep the input)."""
    if not causal:
        return model(inputs).argmax(-1)
    scored = labels != IGNORE
    start = torch.where(scored.any(1), scored.float().argmax(1), torch.full_like(scored[:, 0], inputs.shape[1], dtype=torch.long))
    tokens = inputs.clone()
    for s in start.unique().tolist():
        rows = (start == s).nonzero().squeeze(1)
        part = tokens[rows]
        for t in range(max(s, 1), inputs.shape[1]):
            part[:, t] = model(part[:, :t])[:, -1].argmax(-1)
        tokens[rows] = part
    return tokens


def answer_scores(pred: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example exact match (bool) and the number of correct scored tokens."""
    scored = labels != IGNORE
    right = (pred == labels) & scored
    exact = (right | ~scored).all(1)
    return exact, right.sum()
