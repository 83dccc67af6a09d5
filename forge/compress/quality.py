"""How far a compressed model's predictions moved from the float model's, on the same scored
tokens: mean KL(float || compressed) in nats and how often both pick the same top token."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F


@torch.no_grad()
def agreement(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """`pairs`: (float logits, compressed logits) at the same scored positions, [n, vocab] each."""
    kl, same, n = 0.0, 0, 0
    for ref, comp in pairs:
        ref_logp, comp_logp = F.log_softmax(ref.float(), -1), F.log_softmax(comp.float(), -1)
        kl += float(F.kl_div(comp_logp, ref_logp, log_target=True, reduction="sum"))
        same += int((ref.argmax(-1) == comp.argmax(-1)).sum())
        n += ref.shape[0]
    return {"kl": kl / max(1, n), "top1_agreement": same / max(1, n)}


def scored_logits(model: torch.nn.Module, causal: bool) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Logits at the scored positions of a token-task batch, [n, vocab]."""
    from forge.data.task import IGNORE
    from forge.models.sequence import targets

    def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(batch["inputs"])
        out = out[:, :-1] if causal else out
        return out[targets(batch["labels"], causal) != IGNORE]

    return logits
