"""Fixed-length rows from variable-length examples, with the padding and boundaries recorded.

Each row carries `segments`: 1, 2, ... for the examples packed into it and 0 for padding. The
model builds its attention mask from it (an example attends only to itself) and restarts
positions at each example, so a packed row trains exactly as its examples would one by one.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from forge.data.task import IGNORE


class Packer:
    """Best-fit packing into at most `open_rows` rows at a time, so memory stays constant in the
    number of examples: a new example goes to the open row it fills most tightly; when none has
    room and all are open, the fullest row is emitted first. With packing off, a row per example."""

    def __init__(self, seq_len: int, pad_id: int, packing: bool, open_rows: int = 64) -> None:
        self.seq_len, self.pad_id, self.packing = seq_len, pad_id, packing
        self.open_rows = open_rows if packing else 1
        self.rows: list[list[tuple[list[int], list[bool]]]] = []

    def add(self, ids: list[int], mask: list[bool]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n = len(ids)
        fits = [(self._free(r), i) for i, r in enumerate(self.rows) if self._free(r) >= n]
        if fits and self.packing:
            self.rows[min(fits)[1]].append((ids, mask))
            return
        if len(self.rows) >= self.open_rows:
            fullest = min(range(len(self.rows)), key=lambda i: self._free(self.rows[i]))
            yield self._emit(self.rows.pop(fullest))
        self.rows.append([(ids, mask)])

    def flush(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        while self.rows:
            yield self._emit(self.rows.pop(0))

    def _free(self, row: list[tuple[list[int], list[bool]]]) -> int:
        return self.seq_len - sum(len(ids) for ids, _ in row)

    def _emit(self, row: list[tuple[list[int], list[bool]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inputs = np.full(self.seq_len, self.pad_id, dtype=np.int32)
        labels = np.full(self.seq_len, IGNORE, dtype=np.int32)
        segments = np.zeros(self.seq_len, dtype=np.int32)
        at = 0
        for number, (ids, mask) in enumerate(row, start=1):
            end = at + len(ids)
            inputs[at:end] = ids
            labels[at:end] = np.where(mask, ids, IGNORE)
            labels[at] = IGNORE  # the first token of an example is never predicted from the one before
            segments[at:end] = number
            at = end
        return inputs, labels, segments
