"""Cogment: encode once, then refine with adaptive computation time (Graves 2016).

Transformer layers encode the input; a refinement core, reading the gated memory, updates the
state up to `max_steps` times with the encoding injected each time. After step n a halting head
gives h_n; an example halts at the first step N where the running sum of h reaches 1 - epsilon
(or at `max_steps`). Its prediction is the mixture of the step predictions weighted by
p_n = h_n for n < N and the remainder R = 1 - sum(h_n) at N; its ponder cost is N + R.
Training minimizes the mixture's cross-entropy, plus `ponder_cost` x (N + R), plus
`deep_supervision` x the mean cross-entropy of the individual steps. Halted examples are dropped
from the batch, in training and inference alike, so halting saves the compute it promises.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from forge.data.task import IGNORE
from forge.models.cogment.memory import GatedMemory, surprise
from forge.models.layers import Block, Reasoner, TokenEmbedding, init_linear, token_ce_per_example


class Cogment(nn.Module):
    causal = False

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        mixer: str,
        encoder_layers: int,
        core_layers: int,
        max_steps: int,
        halt_epsilon: float,
        ponder_cost: float,
        deep_supervision: float,
        memory_slots: int,
    ) -> None:
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"model.max_steps={max_steps} must be at least 1")
        if not 0.0 < halt_epsilon < 1.0:
            raise ValueError(f"model.halt_epsilon={halt_epsilon} must be between 0 and 1")
        self.max_steps, self.halt_epsilon = max_steps, halt_epsilon
        self.ponder_cost, self.deep_supervision = ponder_cost, deep_supervision
        self.embed = TokenEmbedding(vocab_size, max_len, d_model)
        self.encoder = nn.Sequential(*(Block(d_model, n_heads, d_ff, mixer, max_len) for _ in range(encoder_layers)))
        self.core = Reasoner(core_layers, d_model, n_heads, d_ff, mixer, max_len, memory_slots=0)
        self.memory = GatedMemory(memory_slots, d_model) if memory_slots else None
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.halt = nn.Linear(d_model, 1)
        self.apply(init_linear)
        nn.init.zeros_(self.halt.weight)
        nn.init.constant_(self.halt.bias, -1.0)  # h ~ 0.27: about four steps before training says otherwise
        self.steps_run = 0.0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the halting-weighted mixture (argmax = the prediction)."""
        log_mix, _, _ = self._ponder(tokens, None)
        return log_mix

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        log_mix, ponder, step_ce = self._ponder(inputs, labels)
        mix_loss = F.nll_loss(log_mix.transpose(1, 2), labels, ignore_index=IGNORE)
        loss = mix_loss + self.ponder_cost * ponder.mean() + self.deep_supervision * step_ce.mean()
        return loss, {"ponder": ponder.detach().mean(), "steps": torch.tensor(self.steps_run)}

    def _ponder(self, tokens: torch.Tensor, labels: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the refinement loop; returns the mixture, each example's N + R and mean step CE."""
        n = len(tokens)
        encoded = self.encoder(self.embed(tokens))
        state = encoded
        memory = self.memory.initial(n) if self.memory is not None else None
        log_mix = encoded.new_full((*tokens.shape, self.head.out_features), -math.inf)
        halt_sum = encoded.new_zeros(n)
        ponder = encoded.new_zeros(n)
        step_ce = encoded.new_zeros(n)
        steps = encoded.new_zeros(n)
        active = torch.arange(n, device=tokens.device)
        computed = 0
        for step in range(self.max_steps):
            s = state[active]
            if memory is not None:
                m = memory[active]
                s = s + self.memory.read(s, m)
            s = self.core(s, encoded[active])
            logits = self.head(s)
            h = torch.sigmoid(self.halt(s.mean(1)).squeeze(-1).float())
            spent = halt_sum[active]
            stop = (spent + h >= 1.0 - self.halt_epsilon) if step < self.max_steps - 1 else torch.ones_like(h, dtype=torch.bool)
            p = torch.where(stop, 1.0 - spent, h)
            weighted = torch.log(p.clamp_min(1e-12)).view(-1, 1, 1) + F.log_softmax(logits.float(), -1)
            log_mix = log_mix.index_put((active,), torch.logaddexp(log_mix[active], weighted))
            halt_sum = halt_sum.index_put((active,), spent + p)
            ponder = ponder.index_put((active,), torch.where(stop, step + 1 + (1.0 - spent), ponder[active]))
            if labels is not None:
                step_ce = step_ce.index_put((active,), step_ce[active] + token_ce_per_example(logits, labels[active]))
            steps = steps.index_put((active,), steps[active] + 1)
            state = state.index_put((active,), s)
            if memory is not None:
                memory = memory.index_put((active,), self.memory.write(m, s, surprise(logits)))
            computed += len(active)
            active = active[~stop]
            if not len(active):
                break
        self.steps_run = computed / max(1, n)
        return log_mix, ponder, step_ce / steps
