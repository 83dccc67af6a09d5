"""Mazes with a start and a goal; the label marks the one shortest path between them.

A perfect maze (randomized depth-first search over the rooms at odd coordinates) has exactly
one path between any two cells; knocking out a `loops` fraction of the walls it left standing
between rooms adds alternative routes, so the model cannot just follow the only corridor. A
maze is kept only when its shortest path is unique, so the label is well defined. The default
config (1,700 15x15 mazes, and 3 rotated or reflected copies of each train maze) builds in 1 s.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Optional

import numpy as np

from forge.data.grids import DIHEDRAL, dihedral
from forge.data.task import IGNORE, SplitArrays

VOCAB = ["#", ".", "S", "G", "o"]
WALL, OPEN, START, GOAL, PATH = range(len(VOCAB))
# Generation gives up once this many mazes were tried and fewer than 1 in MIN_YIELD was kept.
PATIENCE, MIN_YIELD = 300, 50


def _perfect_maze(size: int, rng: random.Random) -> list[bool]:
    """Flat open-cell mask of a spanning tree over the rooms (odd coordinates), by randomized DFS."""
    is_open = [False] * (size * size)
    is_open[size + 1] = True
    stack = [(1, 1)]
    while stack:
        r, c = stack[-1]
        fresh = [
            (r + dr, c + dc)
            for dr, dc in ((0, 2), (0, -2), (2, 0), (-2, 0))
            if 0 < r + dr < size - 1 and 0 < c + dc < size - 1 and not is_open[(r + dr) * size + c + dc]
        ]
        if not fresh:
            stack.pop()
            continue
        nr, nc = rng.choice(fresh)
        is_open[(r + nr) // 2 * size + (c + nc) // 2] = is_open[nr * size + nc] = True
        stack.append((nr, nc))
    return is_open


def _knock_out(is_open: list[bool], size: int, loops: float, rng: random.Random) -> None:
    """Open a `loops` fraction of the closed walls that separate two rooms."""
    walls = [
        r * size + c
        for r in range(1, size - 1)
        for c in range(1, size - 1)
        if r % 2 != c % 2 and not is_open[r * size + c]
    ]
    for i in rng.sample(walls, round(loops * len(walls))):
        is_open[i] = True


def _bfs(is_open: list[bool], size: int, start: int) -> tuple[list[int], list[int]]:
    """Distance from `start` (-1 if unreachable) and number of shortest paths, per flat cell."""
    dist, count = [-1] * (size * size), [0] * (size * size)
    dist[start], count[start] = 0, 1
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in (here + 1, here - 1, here + size, here - size):
            if not is_open[there]:
                continue
            if dist[there] < 0:
                dist[there] = dist[here] + 1
                queue.append(there)
            if dist[there] == dist[here] + 1:
                count[there] += count[here]
    return dist, count


def shortest_paths(grid: np.ndarray) -> tuple[int, int, list[tuple[int, int]]]:
    """(length in steps, number of shortest paths, one shortest path S..G) of a token grid.

    The grid must be walled on its border, as generated mazes are; (-1, 0, []) when G is unreachable.
    """
    size = grid.shape[1]
    flat = grid.ravel().tolist()
    start, goal = flat.index(START), flat.index(GOAL)
    dist, count = _bfs([t != WALL for t in flat], size, start)
    if dist[goal] < 0:
        return -1, 0, []
    path = [goal]
    while path[-1] != start:
        here = path[-1]
        path.append(next(p for p in (here + 1, here - 1, here + size, here - size) if dist[p] == dist[here] - 1))
    return dist[goal], count[goal], [divmod(i, size) for i in reversed(path)]


class Maze:
    """Mazes with a uniquely shortest S-to-G path of at least `min_path` steps; no split shares one."""

    vocab = VOCAB

    def __init__(
        self,
        size: int,
        n_train: int,
        n_val: int,
        n_test: int,
        min_path: int,
        loops: float,
        augment: int,
        seed: int,
    ) -> None:
        if size < 5 or size % 2 == 0:
            raise ValueError(f"data.size={size}: a maze needs an odd size of 5 or more (walls on the border)")
        if not 0 <= loops <= 1:
            raise ValueError(f"data.loops={loops}: the fraction of walls to knock out must be in [0, 1]")
        if not 0 <= augment < DIHEDRAL:
            raise ValueError(
                f"data.augment={augment}: a maze has {DIHEDRAL - 1} other rotations/reflections; use 0 to 7"
            )
        rooms = (size // 2) ** 2
        open_cells = 2 * rooms - 1 + round(loops * (size // 2 - 1) ** 2)
        if not 1 <= min_path < open_cells:
            raise ValueError(
                f"data.min_path={min_path}: a {size}x{size} maze has {open_cells} open cells, so a path "
                f"has 1 to {open_cells - 1} steps; lower min_path or raise size"
            )
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        for split, n in self.sizes.items():
            if n < 0:
                raise ValueError(f"data.n_{split}={n}: a split cannot have a negative size")
        self.size, self.min_path, self.loops, self.augment, self.seed = size, min_path, loops, augment, seed
        self.meta = {"grid": [size, size]}

    def build(self) -> dict[str, SplitArrays]:
        rng = random.Random(self.seed)
        seen: set[bytes] = set()
        mazes = self._generate(sum(self.sizes.values()), seen, rng)
        out, start = {}, 0
        for split, n in self.sizes.items():
            chosen = mazes[start : start + n]
            start += n
            if split == "train":
                chosen = chosen + self._augmented(chosen, rng)
            out[split] = self._encode(chosen)
        return out

    def _generate(self, n: int, seen: set[bytes], rng: random.Random) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """n (tokens, labels, path length) mazes, none equal to a symmetry of another."""
        mazes: list[tuple[np.ndarray, np.ndarray, int]] = []
        tried = 0
        while len(mazes) < n:
            tried += 1
            if tried > PATIENCE and len(mazes) * MIN_YIELD < tried:
                raise ValueError(
                    f"data.min_path={self.min_path}: only {len(mazes)} of {tried} {self.size}x{self.size} "
                    f"mazes (loops={self.loops}) had a unique shortest path that long; lower min_path, "
                    "raise size or lower loops"
                )
            maze = self._sample(rng)
            if maze is None or maze[0].tobytes() in seen:
                continue
            seen.update(dihedral(maze[0], k).tobytes() for k in range(DIHEDRAL))
            mazes.append(maze)
        return mazes

    def _sample(self, rng: random.Random) -> Optional[tuple[np.ndarray, np.ndarray, int]]:
        """One maze with random start and a random goal among those at a unique, long enough distance."""
        size = self.size
        is_open = _perfect_maze(size, rng)
        _knock_out(is_open, size, self.loops, rng)
        start = rng.choice([i for i, o in enumerate(is_open) if o])
        dist, count = _bfs(is_open, size, start)
        goals = [i for i, d in enumerate(dist) if d >= self.min_path and count[i] == 1]
        if not goals:
            return None
        goal = rng.choice(goals)
        tokens = np.where(np.array(is_open), OPEN, WALL)
        tokens[start], tokens[goal] = START, GOAL
        labels = np.where(tokens == WALL, IGNORE, tokens)
        here = goal
        while dist[here] > 1:
            here = next(p for p in (here + 1, here - 1, here + size, here - size) if dist[p] == dist[here] - 1)
            labels[here] = PATH
        return tokens.reshape(size, size), labels.reshape(size, size), dist[goal]

    def _augmented(
        self, mazes: list[tuple[np.ndarray, np.ndarray, int]], rng: random.Random
    ) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Up to `augment` distinct non-identity symmetries of each maze (fewer for symmetric ones)."""
        copies = []
        for tokens, labels, length in mazes:
            own = {tokens.tobytes()}
            for k in rng.sample(range(1, DIHEDRAL), self.augment):
                turned = dihedral(tokens, k)
                if turned.tobytes() not in own:
                    own.add(turned.tobytes())
                    copies.append((turned, dihedral(labels, k), length))
        return copies

    def _encode(self, mazes: list[tuple[np.ndarray, np.ndarray, int]]) -> SplitArrays:
        cells = self.size * self.size
        inputs = np.array([m[0].ravel() for m in mazes], dtype=np.int64).reshape(-1, cells)
        labels = np.array([m[1].ravel() for m in mazes], dtype=np.int64).reshape(-1, cells)
        length = np.array([m[2] for m in mazes], dtype=np.int64)
        return SplitArrays(inputs=inputs, labels=labels, extras={"path_length": length})
