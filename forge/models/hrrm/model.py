"""HRRM: a latent state refined by recursion, supervised segment by segment, with learned halting.

Two variants share everything but the recursion:

- `hrm` (Wang et al. 2025): a slow planner H and a fast reasoner L. Per segment, L updates
  `l_cycles` times per H update, `h_cycles` H updates in all, with the input injected into L;
  only the last L and H updates carry gradient (the one-step approximation).
- `trm` (Jolicoeur-Martineau 2025): one small network recursing on a latent z and an answer y:
  `l_cycles` times z <- f(z + y + x), then y <- f(y + z); repeated `h_cycles` times, the last
  repetition fully backpropagated. Weights are averaged (EMA) for evaluation.

Deep supervision follows both papers: a training step runs one segment for each example of a
persistent batch (the carry) and takes an optimizer step; the carried state is detached between
segments; an example leaves the carry (and a new one takes its slot) when it has run `segments`
segments or its halting head says its answer is right. At inference halted examples are dropped
from the batch, so easy puzzles really cost fewer segments.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from forge.models.configs import VARIANTS
from forge.models.layers import Reasoner, TokenEmbedding, init_linear, token_ce_per_example
from forge.models.sequence import answer_scores

State = tuple[torch.Tensor, torch.Tensor]


class HRRM(nn.Module):
    causal = False

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        variant: str,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        mixer: str,
        h_cycles: int,
        l_cycles: int,
        segments: int,
        halt_explore: float,
        halt_at_inference: bool,
        memory_slots: int,
        ema_decay: float,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"model.variant={variant!r}: choose hrm (planner + reasoner) or trm (one tiny network)")
        if min(h_cycles, l_cycles, segments) < 1:
            raise ValueError("model.h_cycles, model.l_cycles and model.segments must be at least 1")
        self.variant, self.h_cycles, self.l_cycles, self.segments = variant, h_cycles, l_cycles, segments
        self.halt_explore, self.halt_at_inference, self.ema_decay = halt_explore, halt_at_inference, ema_decay
        self.embed = TokenEmbedding(vocab_size, max_len, d_model)
        net = dict(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_ff=d_ff, mixer=mixer, seq_len=max_len)
        self.low = Reasoner(**net, memory_slots=memory_slots)
        self.high = Reasoner(**net, memory_slots=memory_slots) if variant == "hrm" else None
        # Fixed random starting states, as in HRM: they feed only the no-gradient cycles.
        self.register_buffer("init_high", torch.randn(d_model))
        self.register_buffer("init_low", torch.randn(d_model))
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.halt = nn.Linear(d_model, 1)
        self.apply(init_linear)
        nn.init.zeros_(self.halt.weight)
        nn.init.constant_(self.halt.bias, -5.0)  # start by running every segment, as HRM does
        self.carry: Optional[dict[str, torch.Tensor]] = None
        self.segments_run = 0.0

    def _segment(self, state: State, x: torch.Tensor) -> State:
        high, low = state
        with torch.no_grad():
            if self.variant == "hrm":
                for i in range(self.h_cycles * self.l_cycles - 1):
                    low = self.low(low, high + x)
                    if (i + 1) % self.l_cycles == 0:
                        high = self.high(high, low)
            else:
                for _ in range(self.h_cycles - 1):
                    high, low = self._recurse(high, low, x)
        if self.variant == "hrm":
            low = self.low(low, high + x)
            return self.high(high, low), low
        return self._recurse(high, low, x)

    def _recurse(self, answer: torch.Tensor, latent: torch.Tensor, x: torch.Tensor) -> State:
        for _ in range(self.l_cycles):
            latent = self.low(latent, answer + x)
        return self.low(answer, latent), latent

    def _initial(self, n: int, length: int) -> State:
        shape = (n, length, -1)
        return self.init_high.expand(*shape).clone(), self.init_low.expand(*shape).clone()

    def _read(self, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(high), self.halt(high.mean(1)).squeeze(-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits after up to `segments` segments; halted examples stop being computed."""
        x = self.embed(tokens)
        high, low = self._initial(*tokens.shape)
        logits = x.new_zeros(*tokens.shape, self.head.out_features)
        active = torch.arange(len(tokens), device=tokens.device)
        computed = 0
        for _ in range(self.segments):
            h, l = self._segment((high[active], low[active]), x[active])
            step_logits, q = self._read(h)
            # Under autocast the segment's outputs may be bf16 while the carried state is float.
            high, low = high.index_put((active,), h.to(high.dtype)), low.index_put((active,), l.to(low.dtype))
            logits = logits.index_put((active,), step_logits.to(logits.dtype))
            computed += len(active)
            if self.halt_at_inference:
                active = active[q <= 0]
                if not len(active):
                    break
        self.segments_run = computed / max(1, len(tokens))
        return logits

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One supervision segment of the carried batch: answer loss plus the halting head's BCE."""
        c = self._refill(inputs, labels)
        high, low = self._segment((c["high"], c["low"]), self.embed(c["inputs"]))
        logits, q = self._read(high)
        steps = c["steps"] + 1
        answer_loss = token_ce_per_example(logits, c["labels"]).mean()
        with torch.no_grad():
            exact, _ = answer_scores(logits.argmax(-1), c["labels"])
        halt_loss = F.binary_cross_entropy_with_logits(q, exact.float())
        with torch.no_grad():
            halted = steps >= self.segments
            if self.segments > 1:
                explore = torch.rand(len(q), device=q.device) < self.halt_explore
                min_steps = torch.where(explore, torch.randint_like(steps, 2, self.segments + 1), torch.ones_like(steps))
                halted |= (q > 0) & (steps >= min_steps)
        self.carry = {**c, "high": high.detach(), "low": low.detach(), "steps": steps, "halted": halted}
        stats = {"exact_match": exact.float().mean(), "segments": steps.float().mean(), "halt_loss": halt_loss.detach()}
        return answer_loss + 0.5 * halt_loss, stats

    def _refill(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The carry with every halted slot replaced by the batch's example at that slot."""
        c = self.carry
        if c is None or c["inputs"].shape != inputs.shape:
            high, low = self._initial(*inputs.shape)
            n = len(inputs)
            c = {"inputs": inputs, "labels": labels, "high": high, "low": low,
                 "steps": torch.zeros(n, dtype=torch.long, device=inputs.device),
                 "halted": torch.ones(n, dtype=torch.bool, device=inputs.device)}
        new = c["halted"]
        fresh_high, fresh_low = self._initial(*inputs.shape)
        return {
            "inputs": _rows(new, inputs, c["inputs"]),
            "labels": _rows(new, labels, c["labels"]),
            "high": _rows(new, fresh_high, c["high"]),
            "low": _rows(new, fresh_low, c["low"]),
            "steps": torch.where(new, 0, c["steps"]),
            "halted": new,
        }

    def carry_state(self) -> Optional[dict[str, torch.Tensor]]:
        """The carried batch, saved in checkpoints so a resumed run continues it exactly."""
        return self.carry

    def load_carry_state(self, carry: Optional[dict[str, torch.Tensor]]) -> None:
        self.carry = carry


def _rows(mask: torch.Tensor, where_true: torch.Tensor, where_false: torch.Tensor) -> torch.Tensor:
    """Row i from `where_true` if mask[i] else from `where_false`."""
    return torch.where(mask.view(-1, *[1] * (where_false.dim() - 1)), where_true, where_false)
