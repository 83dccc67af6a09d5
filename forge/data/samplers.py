"""Prioritized replay (Schaul et al. 2016) as a resumable batch sampler: rows the model fits
worst are drawn more often, and importance-sampling weights undo the bias this puts on the loss.

Row i is drawn with probability P(i) = p_i^alpha / sum_j p_j^alpha, with replacement, where its
priority p_i is its last training loss + eps; a row not trained on yet has the highest priority
so far, so it is drawn soon. With data.replay.priority=reward_surprise the priorities are fixed
instead: p_i = |r_i - mean r| + eps, r_i the row's agent-run reward (a packed row's: the mean of
its runs'), so runs whose reward was most unlike the usual are drawn more often. Each drawn row
carries the weight

    w_i = (N P(i))^-beta / max_j (N P(j))^-beta,   max over all N rows of the split,

so weights are at most 1 (they only scale the update down, as in the paper) and, unlike
normalising by the batch's own largest weight, a row's weight does not depend on which other rows
share its batch: at beta = 1 the weighted loss is the uniform one times a constant, N min_j P(j).
beta rises linearly from its start to 1 over the run's draws.

The priorities, the generator and the draw count are the sampler's state: saved in each
checkpoint through the loader, a resumed run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

import torch
from torch.utils.data import Dataset, Sampler

from forge.data.loader import SplitDataset
from forge.data.sft.rows import REWARD
from forge.errors import ForgeError


class Draw(NamedTuple):
    """One batch's rows (repeats allowed) and their importance weights."""

    rows: list[int]
    weights: torch.Tensor


def reward_surprise(data: SplitDataset, eps: float) -> torch.Tensor:
    """|r_i - mean r| + eps for every row of the split, from its per-row `reward` column."""
    rewards = data.extras.get(REWARD)
    if rewards is None:
        raise ForgeError("data.replay.priority=reward_surprise: the prepared training rows have no reward (only agent_runs "
                         "records carry one, and every source must be agent_runs); use data.replay.priority=loss")
    rewards = rewards.to(torch.float64)
    return (rewards - rewards.mean()).abs() + eps


class PrioritizedBatchSampler(Sampler[Draw]):
    """Batches drawn by priority from a seeded generator; `update` gives rows their new losses.

    `fixed`: priorities for the whole run (reward surprise); losses then leave them as they are.
    An epoch is as many batches as a uniform epoch of the same split, so validation and
    checkpoints fall where they would without replay.
    """

    def __init__(self, n: int, batch_size: int, seed: int, total_draws: int, alpha: float, beta: float, eps: float,
                 fixed: Optional[torch.Tensor] = None) -> None:
        self.n, self.batch_size = n, batch_size
        self.total_draws, self.alpha, self.beta0, self.eps = max(1, total_draws), alpha, beta, eps
        self.fixed = fixed is not None
        self.priorities = torch.zeros(n, dtype=torch.float64) if fixed is None else fixed.to(torch.float64).clone()
        self.seen = torch.full((n,), self.fixed, dtype=torch.bool)
        self.generator = torch.Generator().manual_seed(seed)
        self.draws = 0  # batches drawn since the run began: what beta anneals over
        self.epoch, self.yielded, self._skip = 0, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip = epoch, 0

    def __len__(self) -> int:
        return self.n // self.batch_size

    @property
    def beta(self) -> float:
        """The weights' exponent for the next draw: beta at the start, 1 after the last draw."""
        return self.beta0 + (1.0 - self.beta0) * min(1.0, self.draws / self.total_draws)

    def probabilities(self) -> torch.Tensor:
        """P(i) for every row; rows not trained on yet at the highest priority seen (1 at first)."""
        top = self.priorities[self.seen].max() if bool(self.seen.any()) else torch.tensor(1.0, dtype=torch.float64)
        scaled = torch.where(self.seen, self.priorities, top) ** self.alpha
        return scaled / scaled.sum()

    def weights(self, probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(N P(i))^-beta of `rows`, over the largest weight of any row of the split."""
        return ((probs[rows] / probs.min()) ** -self.beta).float()

    def __iter__(self) -> Iterator[Draw]:
        start, self._skip = self._skip, 0
        for i in range(start, len(self)):
            probs = self.probabilities()
            rows = torch.multinomial(probs, self.batch_size, replacement=True, generator=self.generator)
            draw = Draw(rows.tolist(), self.weights(probs, rows))
            self.draws, self.yielded = self.draws + 1, i + 1
            yield draw

    def update(self, rows: torch.Tensor, losses: torch.Tensor) -> None:
        """The rows' new priorities: their losses + eps (a row drawn twice in a batch: its mean);
        fixed priorities stay."""
        if self.fixed:
            return
        rows, losses = rows.cpu(), losses.detach().to("cpu", torch.float64) + self.eps
        total = torch.zeros_like(self.priorities).index_add_(0, rows, losses)
        count = torch.zeros_like(self.priorities).index_add_(0, rows, torch.ones_like(losses))
        drawn = count > 0
        self.priorities[drawn] = total[drawn] / count[drawn]
        self.seen |= drawn

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "yielded": self.yielded, "draws": self.draws, "priorities": self.priorities.clone(),
                "seen": self.seen.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._skip, self.draws = state["epoch"], state["yielded"], state["draws"]
        self.priorities, self.seen = state["priorities"].clone(), state["seen"].clone()
        self.generator.set_state(state["generator"])


class Replayed(Dataset):
    """A split whose batches also carry their rows (`rows`) and importance weights (`weights`):
    the training step weights each row's loss and reports it back for that row."""

    def __init__(self, data: SplitDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, draw: Draw) -> dict[str, torch.Tensor]:
        return {**self.data[draw.rows], "rows": torch.as_tensor(draw.rows), "weights": draw.weights}
