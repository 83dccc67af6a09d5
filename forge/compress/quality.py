"""How far a compressed model's predictions moved from the float model's, on the same scored
tokens: mean KL(float || compressed) in nats and how often both pick the same top token."""

from __future__ import annotations

from typing import Iterable

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
