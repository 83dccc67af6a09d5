"""Fixed-length rows from variable-length examples, with the padding and boundaries recorded.

Each row carries `segments`: 1, 2, ... for the examples packed into it and 0 for padding. The
model builds its attention mask from it (an example attends only to itself) and restarts
positions at each example, so a packed row trains exactly as its examples would one by one.

Each row also carries a reward: the mean of its examples' rewards (agent runs), or None when one
of them has none. A packed row is trained on as one, so replay
by reward surprise has one reward per row to draw it by.
"""

from __future__ import annotations

from statistics import fmean
from typing import Iterator, Optional

import numpy as np

from forge.data.task import IGNORE

Row = tuple[np.ndarray, np.ndarray, np.ndarray, Optional[float]]  # inputs, labels, segments, reward
Packed = tuple[list[int], list[bool], Optional[float]]


class Packer:
    """Best-fit packing into at most `open_rows` rows at a time, so memory stays constant in the
    number of examples: a new example goes to the open row it fills most tightly; when none has
    room and all are open, the fullest row is emitted first. With packing off, a row per example."""

    def __init__(self, seq_len: int, pad_id: int, packing: bool, open_rows: int = 64) -> None:
        self.seq_len, self.pad_id, self.packing = seq_len, pad_id, packing
        self.open_rows = open_rows if packing else 1
        self.rows: list[list[Packed]] = []

    def add(self, ids: list[int], mask: list[bool], reward: Optional[float] = None) -> Iterator[Row]:
        n = len(ids)
        fits = [(self._free(r), i) for i, r in enumerate(self.rows) if self._free(r) >= n]
        if fits and self.packing:
            self.rows[min(fits)[1]].append((ids, mask, reward))
            return
        if len(self.rows) >= self.open_rows:
            fullest = min(range(len(self.rows)), key=lambda i: self._free(self.rows[i]))
            yield self._emit(self.rows.pop(fullest))
        self.rows.append([(ids, mask, reward)])

    def flush(self) -> Iterator[Row]:
        while self.rows:
            yield self._emit(self.rows.pop(0))

    def _free(self, row: list[Packed]) -> int:
        return self.seq_len - sum(len(ids) for ids, _, _ in row)

    def _emit(self, row: list[Packed]) -> Row:
        inputs = np.full(self.seq_len, self.pad_id, dtype=np.int32)
        labels = np.full(self.seq_len, IGNORE, dtype=np.int32)
        segments = np.zeros(self.seq_len, dtype=np.int32)
        at = 0
        for number, (ids, mask, _) in enumerate(row, start=1):
            end = at + len(ids)
            inputs[at:end] = ids
            labels[at:end] = np.where(mask, ids, IGNORE)
            labels[at] = IGNORE  # the first token of an example is never predicted from the one before
            segments[at:end] = number
            at = end
        rewards = [reward for _, _, reward in row]
        return inputs, labels, segments, None if None in rewards else fmean(rewards)
