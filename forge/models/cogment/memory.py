"""A gated slot memory that the refinement core reads by attention and writes on surprise.

Each example starts from the learned slots (what training stored there); at every refinement
step the state reads the slots through a gated cross-attention, and the slots take in a summary
of the state in proportion to how surprised the model was by its own prediction (normalized
entropy): a confident step leaves memory alone, an uncertain one rewrites it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedMemory(nn.Module):
    def __init__(self, slots: int, d_model: int) -> None:
        super().__init__()
        self.slots = nn.Parameter(torch.randn(slots, d_model) * d_model**-0.5)
        self.read_q = nn.Linear(d_model, d_model, bias=False)
        self.read_gate = nn.Linear(d_model, d_model)
        self.write_q = nn.Linear(d_model, d_model, bias=False)
        self.write_gate = nn.Linear(2 * d_model, 1)

    def initial(self, n: int) -> torch.Tensor:
        return self.slots.expand(n, -1, -1)

    def read(self, state: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """What the state takes from memory: attention over slots, gated per channel."""
        context = F.scaled_dot_product_attention(self.read_q(state), memory, memory)
        return torch.sigmoid(self.read_gate(state)) * context

    def write(self, memory: torch.Tensor, state: torch.Tensor, surprise: torch.Tensor) -> torch.Tensor:
        """Move each slot toward what it attends to in the state, by gate x surprise (0..1)."""
        candidate = F.scaled_dot_product_attention(self.write_q(memory), state, state)
        gate = torch.sigmoid(self.write_gate(torch.cat([memory, candidate], -1))) * surprise.view(-1, 1, 1)
        return memory + gate * (candidate - memory)


def surprise(logits: torch.Tensor) -> torch.Tensor:
    """Mean normalized entropy of each example's predictions, in [0, 1]; no gradient."""
    with torch.no_grad():
        logp = F.log_softmax(logits.float(), -1)
        entropy = -(logp.exp() * logp).sum(-1) / torch.log(torch.tensor(float(logits.shape[-1])))
        return entropy.mean(1)
