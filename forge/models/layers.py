"""Building blocks the recursive reasoning models share.

Blocks are post-norm (normalize after each residual add), as in HRM and TRM: a block applied
dozens of times to its own output keeps its state at unit scale, where a pre-norm residual
stream would grow with every application.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forge.data.task import IGNORE
from forge.models.configs import MIXERS


class Attention(nn.Module):
    """Bidirectional multi-head self-attention (every position sees every other)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by model.n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).transpose(1, 3).unbind(2)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))


class TokenMixer(nn.Module):
    """An MLP across positions (MLP-Mixer): TRM's choice for fixed-size grids like Sudoku, where
    it beats attention at small scale. Needs a fixed sequence length."""

    def __init__(self, seq_len: int, expansion: int = 2) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Linear(seq_len, expansion * seq_len), nn.GELU(), nn.Linear(expansion * seq_len, seq_len))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """Mixer (attention or token MLP) then a feed-forward layer, each residual and post-norm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, mixer: str, seq_len: int) -> None:
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"model.mixer={mixer!r}: choose attention or mlp")
        self.mixer = Attention(d_model, n_heads) if mixer == "attention" else TokenMixer(seq_len)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff, bias=False), nn.GELU(), nn.Linear(d_ff, d_model, bias=False))
        self.norm1 = nn.RMSNorm(d_model)
        self.norm2 = nn.RMSNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.mixer(x))
        return self.norm2(x + self.ff(x))


class Reasoner(nn.Module):
    """A stack of blocks updating a latent state from an injected signal: f(state + injection).

    Learned memory slots, when there are any, are prepended as extra positions: every position
    reads them by attention (or the token mixer) as shared context, and they are dropped again
    from the output.
    """

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, mixer: str, seq_len: int, memory_slots: int) -> None:
        super().__init__()
        self.slots = nn.Parameter(torch.randn(memory_slots, d_model) * 0.02) if memory_slots else None
        width = seq_len + memory_slots
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, mixer, width) for _ in range(n_layers))

    def forward(self, state: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        h = state + injection
        if self.slots is not None:
            h = torch.cat([self.slots.expand(len(h), -1, -1), h], dim=1)
        for block in self.blocks:
            h = block(h)
        return h[:, -state.shape[1] :]


class TokenEmbedding(nn.Module):
    """Token plus learned position embeddings at unit scale, stored at 1/sqrt(d_model) and scaled
    up in the forward pass, as HRM and TRM do. Adam moves every weight by about the learning rate
    per step, so the scaled copy learns sqrt(d_model) times faster relative to its size; which
    cells share a row, column or box is all in the positions, and these models sit at chance
    until the positions have moved.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int) -> None:
        super().__init__()
        self.scale = d_model**0.5
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(max_len, d_model))
        nn.init.normal_(self.tokens.weight, std=1 / self.scale)
        nn.init.normal_(self.pos, std=1 / self.scale)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.tokens(tokens) + self.pos[: tokens.shape[1]])


def init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=module.in_features**-0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def token_ce_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over each example's scored positions (0 where none are scored)."""
    ce = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE, reduction="none")
    scored = (labels != IGNORE).sum(1).clamp(min=1)
    return ce.sum(1) / scored
