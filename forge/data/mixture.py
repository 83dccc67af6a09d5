"""Several tasks as one dataset: a shared vocabulary, one padded length, rows tagged by source.

A staged curriculum draws its stages' mixes from these sources. Token strings are merged by
name (a "3" is the same token in every task), each source's rows are padded at the end to the
longest source with PAD (never scored), and every row keeps its source's index in `source`
(and its `level`, or -1 where the source has none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import OmegaConf

from forge.data.prepare import build_task
from forge.data.task import IGNORE, SplitArrays

PAD, BLANK = "<pad>", "<blank>"


class Mixture:
    def __init__(self, sources: dict[str, Any]) -> None:
        if not sources:
            raise ValueError("data.sources is empty: name at least one task")
        self.names = list(sources)
        self.tasks = {name: build_task(OmegaConf.create(cfg)) for name, cfg in sources.items()}
        self.vocab = [PAD, BLANK]
        for task in self.tasks.values():
            self.vocab += [t for t in task.vocab if t not in self.vocab]
        self.meta = {"sources": self.names, "blank": BLANK}

    def build(self) -> dict[str, SplitArrays]:
        built = {name: task.build() for name, task in self.tasks.items()}
        length = max(a.inputs.shape[1] for splits in built.values() for a in splits.values())
        out: dict[str, SplitArrays] = {}
        for split in ("train", "val", "test"):
            parts = [self._remap(i, name, built[name][split], length) for i, name in enumerate(self.names) if split in built[name]]
            out[split] = SplitArrays(
                inputs=np.concatenate([p.inputs for p in parts]),
                labels=np.concatenate([p.labels for p in parts]),
                extras={k: np.concatenate([p.extras[k] for p in parts]) for k in ("source", "level")},
            )
        return out

    def _remap(self, index: int, name: str, arrays: SplitArrays, length: int) -> SplitArrays:
        task = self.tasks[name]
        table = np.array([self.vocab.index(t) for t in task.vocab], dtype=np.int64)
        blank = getattr(task, "meta", {}).get("blank")
        n, width = arrays.inputs.shape
        inputs = np.full((n, length), self.vocab.index(PAD), dtype=np.int64)
        labels = np.full((n, length), IGNORE, dtype=np.int64)
        inputs[:, :width] = table[arrays.inputs]
        scored = arrays.labels != IGNORE
        labels[:, :width] = np.where(scored, table[np.where(scored, arrays.labels, 0)], IGNORE)
        if blank is not None:
            inputs[:, :width][arrays.inputs == task.vocab.index(blank)] = self.vocab.index(BLANK)
        level = arrays.extras.get("level", np.full(n, -1, dtype=np.int64))
        return SplitArrays(inputs, labels, {"source": np.full(n, index, dtype=np.int64), "level": level.astype(np.int64)})
