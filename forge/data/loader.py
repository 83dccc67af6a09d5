"""Batches from a prepared dataset, resumable mid-epoch.

The loader is Lightning-stateful (`state_dict`/`load_state_dict`): the checkpoint records the
epoch and how many batches of it were consumed (and, for prioritized replay, forge.data.samplers,
the priorities and the generator), and a resumed run continues with exactly the batches an
uninterrupted one would have seen. It also shards by rank itself, so the same
batches are used with one process or several (Lightning's distributed sampler is turned off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from forge.data.prepare import load_meta
from forge.data.task import IGNORE


class SplitDataset(Dataset):
    """One split held in memory; indexing with a list of rows returns a whole batch.

    Tasks written for causal models carry the answer in their inputs (the model is scored on
    predicting it one token ahead). A bidirectional model would see it, so for one
    (`hide_answers`) the scored positions are replaced by the task's `blank` token.
    """

    def __init__(self, data_dir: Path, split: str, hide_answers: bool = False) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(data_dir / f"{split}.safetensors"))
        self.inputs = tensors.pop("inputs").long()
        self.labels = tensors.pop("labels").long()
        # Integer extras are per token ([rows, seq_len], e.g. packed `segments`) or per row
        # ([rows], e.g. a mixture's `source`); a float one (an agent run's `reward`) stays float.
        self.extras = {k: v if v.is_floating_point() else v.long() for k, v in tensors.items()}
        meta = load_meta(data_dir) if hide_answers else {}
        if meta.get("blank") is not None:
            blank = meta["vocab"].index(meta["blank"])
            self.inputs = self.inputs.masked_fill(self.labels != IGNORE, blank)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """A batch: inputs, labels and the per-token extras (e.g. packed `segments`); per-row
        extras stay out (the sampler and the curriculum read them from `extras`)."""
        idx = torch.as_tensor(rows)
        per_token = {k: v[idx] for k, v in self.extras.items() if v.ndim == 2}
        return {"inputs": self.inputs[idx], "labels": self.labels[idx], **per_token}

    def batches(self, batch_size: int, rows: Optional[list[int]] = None,
                device: Optional[torch.device] = None) -> Iterator[dict[str, torch.Tensor]]:
        """`rows` (all by default) in order, `batch_size` at a time: how evaluation, calibration
        and comparison read a split."""
        rows = list(range(len(self))) if rows is None else rows
        for start in range(0, len(rows), batch_size):
            batch = self[rows[start : start + batch_size]]
            yield batch if device is None else {k: v.to(device) for k, v in batch.items()}


class ResumableBatchSampler(Sampler[list[int]]):
    """A fresh seeded permutation each epoch, this rank's share of it, cut into full batches.

    `rows` restricts it to a pool of row indices (a curriculum's choice for the epoch).
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, rows: Optional[torch.Tensor] = None
    ) -> None:
        self.rows = rows if rows is not None else torch.arange(n)
        self.n, self.batch_size, self.seed = len(self.rows), batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.yielded, self._skip = 0, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip = epoch, 0

    def __len__(self) -> int:
        return (self.n // self.world_size) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self.rows[torch.randperm(self.n, generator=gen)][self.rank :: self.world_size].tolist()
        start, self._skip = self._skip, 0
        for i in range(start, len(self)):
            self.yielded = i + 1
            yield order[i * self.batch_size : (i + 1) * self.batch_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._skip = state["epoch"], state["yielded"]


class ResumableLoader(DataLoader):
    """A DataLoader whose position is saved in Lightning checkpoints: its batch sampler's state
    (a ResumableBatchSampler's, or forge.data.samplers' PrioritizedBatchSampler's)."""

    def __init__(self, dataset: Dataset, batch_sampler: Sampler) -> None:
        # Its own generator: a DataLoader iterator otherwise draws a seed from the global RNG when
        # it starts, so a resumed run (new iterator after the restored RNG) would shift every
        # random draw after it, such as dropout masks.
        super().__init__(dataset, sampler=batch_sampler, batch_size=None, generator=torch.Generator())
        self.resumable = batch_sampler

    def state_dict(self) -> dict[str, Any]:
        return self.resumable.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resumable.load_state_dict(state)
