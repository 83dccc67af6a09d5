"""Sudoku puzzles with exactly one solution, rated by how much search a fixed solver needs.

Generation: a random full grid, then cells blanked in random order while the solution stays
unique (a solver with naked- and hidden-single propagation looks for a second one), until
`blanks` cells are blank or no further cell can be (a minimal puzzle).

Rating: "DFS with minimum-remaining-values branching and naked-single propagation", run over
its whole tree, so the counts do not depend on the order digits are tried in. A puzzle that
propagation alone solves is trivial; the others are bucketed by dead ends (branches that reach
a cell with no candidate, i.e. backtracks), on a log scale because they spread over 1 to 1000+:

    trivial: no guess   easy: 1-15 dead ends   medium: 16-63   hard: 64-255   expert: 256+

Measured on 2,000 generated 9x9 puzzles per setting:
    blanks=null (53-60 blanks): trivial 1%, easy 27%, medium 41%, hard 26%, expert 5%
    blanks=50:                  trivial 36%, easy 60%, medium 4%, hard 0.1%
    blanks=45:                  trivial 84%, easy 16%
Minimal 4x4 puzzles are all trivial, minimal 6x6 ones 65% trivial, 31% easy, 5% medium.
Speed on one core (pure Python bitmasks, rating included): 2,000 minimal 9x9 puzzles take about
48 s, most of it proving that the last givens cannot go; with blanks=50, 9 s; 4x4 and 6x6 take
0.5 and 2 ms a puzzle. The default config (1,700 medium puzzles, ~4,200 generated) takes 95 s.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from forge.data.configs import LEVELS
from forge.data.task import IGNORE, SplitArrays

BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
# Upper bounds on dead ends for easy, medium and hard; more is expert (see the module docstring).
DEAD_END_LIMITS = (15, 63, 255)
# Fewest givens that can pin down a unique solution, and how many solution grids exist at all.
MIN_GIVENS = {4: 4, 6: 8, 9: 17}
GRID_COUNT = {4: 288, 6: 28_200_960, 9: 6_670_903_752_021_072_936_960}
# Generation gives up once this many puzzles were tried and fewer than 1 in MIN_YIELD was kept.
PATIENCE, MIN_YIELD = 300, 50
TRANSFORM_TRIES = 100


@dataclass(frozen=True)
class _Geometry:
    """Per-cell unit indices and the all-digits mask of one board size."""

    full: int
    row: tuple[int, ...]
    col: tuple[int, ...]
    box: tuple[int, ...]


@functools.lru_cache(maxsize=None)
def _geometry(size: int) -> _Geometry:
    box_rows, box_cols = BOXES[size]
    cells = range(size * size)
    stacks = size // box_cols
    return _Geometry(
        full=(1 << size) - 1,
        row=tuple(i // size for i in cells),
        col=tuple(i % size for i in cells),
        box=tuple((i // size) // box_rows * stacks + (i % size) // box_cols for i in cells),
    )


POPCOUNT = tuple(bin(m).count("1") for m in range(1 << 9))
DIGIT_OF_BIT = {1 << d: d + 1 for d in range(9)}


@dataclass
class _Search:
    """What a search found, and how much it had to guess and backtrack on the way."""

    solutions: list[list[int]]
    guesses: int
    dead_ends: int


def _solve(
    cells: Sequence[int],
    size: int,
    limit: int,
    rng: Optional[random.Random] = None,
    hidden: bool = True,
    max_dead_ends: float = math.inf,
) -> _Search:
    """Depth-first search for up to `limit` solutions of a flat puzzle (0 = blank).

    Each node places naked singles (cells with one candidate) sweep after sweep and, with
    `hidden`, hidden singles (a digit with one possible cell in a unit), then branches on the
    cell with the fewest candidates. `rng` shuffles the order digits are tried in; the search
    stops early after `max_dead_ends` contradictions.
    """
    geo = _geometry(size)
    R, C, B, full = geo.row, geo.col, geo.box, geo.full
    grid = list(cells)
    rows, cols, boxes = [0] * size, [0] * size, [0] * size
    out = _Search([], 0, 0)
    empties = []
    for i, v in enumerate(grid):
        if not v:
            empties.append(i)
            continue
        bit = 1 << (v - 1)
        if (rows[R[i]] | cols[C[i]] | boxes[B[i]]) & bit:
            out.dead_ends = 1
            return out
        rows[R[i]] |= bit
        cols[C[i]] |= bit
        boxes[B[i]] |= bit
    trail: list[int] = []

    def place(i: int, bit: int) -> None:
        grid[i] = DIGIT_OF_BIT[bit]
        rows[R[i]] |= bit
        cols[C[i]] |= bit
        boxes[B[i]] |= bit
        trail.append(i)

    def undo(mark: int) -> None:
        while len(trail) > mark:
            i = trail.pop()
            bit = 1 << (grid[i] - 1)
            grid[i] = 0
            rows[R[i]] ^= bit
            cols[C[i]] ^= bit
            boxes[B[i]] ^= bit

    def propagate(todo: list[int]) -> Optional[tuple[list[int], int, int]]:
        """Place singles until none is left: (still empty, MRV cell or -1 when solved, its candidates)."""
        while True:
            rest, cands, best, best_n, best_cand, placed = [], [], -1, size + 1, 0, False
            for i in todo:
                cand = full & ~(rows[R[i]] | cols[C[i]] | boxes[B[i]])
                n = POPCOUNT[cand]
                if n == 1:
                    place(i, cand)
                    placed = True
                elif n == 0:
                    return None
                else:
                    rest.append(i)
                    cands.append(cand)
                    if n < best_n:
                        best, best_n, best_cand = i, n, cand
            if placed:
                todo = rest
                continue
            found = hidden_singles(rest, cands) if hidden else False
            if found is None:
                return None
            if not found:
                return rest, best, best_cand
            todo = [i for i in rest if not grid[i]]

    def hidden_singles(rest: list[int], cands: list[int]) -> Optional[bool]:
        """Place each digit that has one possible cell in a row, column or box; None on contradiction."""
        row_any, col_any, box_any = [0] * size, [0] * size, [0] * size
        row_two, col_two, box_two = [0] * size, [0] * size, [0] * size
        for i, cand in zip(rest, cands):
            r, c, b = R[i], C[i], B[i]
            row_two[r] |= row_any[r] & cand
            row_any[r] |= cand
            col_two[c] |= col_any[c] & cand
            col_any[c] |= cand
            box_two[b] |= box_any[b] & cand
            box_any[b] |= cand
        for k in range(size):
            if full & ~(rows[k] | row_any[k]) or full & ~(cols[k] | col_any[k]) or full & ~(boxes[k] | box_any[k]):
                return None
        placed = False
        for i, cand in zip(rest, cands):
            r, c, b = R[i], C[i], B[i]
            forced = cand & ((row_any[r] & ~row_two[r]) | (col_any[c] & ~col_two[c]) | (box_any[b] & ~box_two[b]))
            if forced:
                if POPCOUNT[forced] > 1 or (rows[r] | cols[c] | boxes[b]) & forced:
                    return None
                place(i, forced)
                placed = True
        return placed

    def dfs(todo: list[int]) -> None:
        mark = len(trail)
        found = propagate(todo)
        if found is None:
            out.dead_ends += 1
        elif found[1] < 0:
            out.solutions.append(grid.copy())
        else:
            rest, cell, cand = found
            out.guesses += 1
            rest.remove(cell)
            bits = [b for b in DIGIT_OF_BIT if cand & b]
            if rng is not None:
                rng.shuffle(bits)
            for bit in bits:
                place(cell, bit)
                dfs(rest)
                undo(len(trail) - 1)
                if len(out.solutions) >= limit or out.dead_ends > max_dead_ends:
                    break
        undo(mark)

    dfs(empties)
    return out


def count_solutions(puzzle: Sequence[int], size: int, limit: int = 2) -> int:
    """Solutions of a flat puzzle (0 = blank), counting stops at `limit`."""
    return len(_solve(list(np.ravel(puzzle)), size, limit).solutions)


def rate(puzzle: Sequence[int], size: int) -> tuple[int, dict[str, int]]:
    """Level index into LEVELS of a uniquely solvable flat puzzle, and the solver's counts.

    The search stops once it is past the expert threshold, so dead ends are capped there.
    """
    search = _solve(list(np.ravel(puzzle)), size, limit=2, hidden=False, max_dead_ends=DEAD_END_LIMITS[-1])
    stats = {"guesses": search.guesses, "dead_ends": search.dead_ends}
    if search.guesses == 0:
        return 0, stats
    return 1 + sum(search.dead_ends > limit for limit in DEAD_END_LIMITS), stats


def is_valid_solution(grid: np.ndarray, size: int) -> bool:
    """True when every row, column and box of the (size, size) or flat grid holds 1..size once."""
    geo = _geometry(size)
    cells = np.ravel(grid).tolist()
    if len(cells) != size * size or sorted(set(cells)) != list(range(1, size + 1)):
        return False
    for unit in (geo.row, geo.col, geo.box):
        if len({(u, v) for u, v in zip(unit, cells)}) != size * size:
            return False
    return True


def _full_grid(size: int, rng: random.Random) -> list[int]:
    """A random solution grid: random digits in the diagonal boxes, then a randomized backtracking fill.

    Diagonal boxes share no row or column, so they fill independently; on 4x4 and 6x6 boards
    some such fillings have no completion, and a fresh one is drawn.
    """
    geo = _geometry(size)
    box_rows, box_cols = BOXES[size]
    stacks = size // box_cols
    diagonal = [k * stacks + k for k in range(min(size // box_rows, stacks))]
    while True:
        cells = [0] * (size * size)
        for box in diagonal:
            digits = rng.sample(range(1, size + 1), size)
            for i in range(size * size):
                if geo.box[i] == box:
                    cells[i] = digits.pop()
        solutions = _solve(cells, size, limit=1, rng=rng).solutions
        if solutions:
            return solutions[0]


def _dig(solution: list[int], size: int, blanks: Optional[int], rng: random.Random) -> Optional[list[int]]:
    """Blank cells in random order while the solution stays unique, until `blanks` are blank.

    A cell that cannot be blanked never can be later (more blanks only add solutions), so each
    cell is tried once; one whose other digits all sit among its peers' givens goes without a
    search. None when `blanks` is more than this order allows.
    """
    geo = _geometry(size)
    R, C, B = geo.row, geo.col, geo.box
    puzzle = list(solution)
    rows, cols, boxes = [geo.full] * size, [geo.full] * size, [geo.full] * size
    order = list(range(size * size))
    rng.shuffle(order)
    removed = 0
    for i in order:
        if removed == blanks:
            break
        bit = 1 << (puzzle[i] - 1)
        rows[R[i]] ^= bit
        cols[C[i]] ^= bit
        boxes[B[i]] ^= bit
        others = geo.full & ~(rows[R[i]] | cols[C[i]] | boxes[B[i]]) & ~bit
        if _has_alternative(puzzle, i, others, size):
            rows[R[i]] |= bit
            cols[C[i]] |= bit
            boxes[B[i]] |= bit
        else:
            puzzle[i] = 0
            removed += 1
    return puzzle if blanks is None or removed == blanks else None


def _has_alternative(puzzle: list[int], cell: int, others: int, size: int) -> bool:
    """Whether `cell` can hold a digit from the mask `others` in some solution of `puzzle`."""
    trial = list(puzzle)
    for bit, digit in DIGIT_OF_BIT.items():
        if others & bit:
            trial[cell] = digit
            if _solve(trial, size, limit=1).solutions:
                return True
    return False


@dataclass(frozen=True)
class Transform:
    """A validity-preserving relabelling: digits, then an optional transpose, then row/column order.

    Rows are reordered only within bands and bands as wholes (columns likewise with stacks), so
    rows, columns and boxes map onto rows, columns and boxes.
    """

    digits: np.ndarray
    transpose: bool
    rows: np.ndarray
    cols: np.ndarray


def random_transform(size: int, rng: np.random.Generator) -> Transform:
    """A random element of the board's symmetry group (transposes only when boxes are square)."""
    box_rows, box_cols = BOXES[size]
    return Transform(
        digits=np.concatenate([[0], rng.permutation(size) + 1]),
        transpose=box_rows == box_cols and bool(rng.integers(2)),
        rows=_block_permutation(size // box_rows, box_rows, rng),
        cols=_block_permutation(size // box_cols, box_cols, rng),
    )


def _block_permutation(blocks: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([b * width + rng.permutation(width) for b in rng.permutation(blocks)])


def apply(transform: Transform, grid: np.ndarray) -> np.ndarray:
    """A (size, size) puzzle or solution under the transform; blanks (0) stay blank."""
    out = transform.digits[grid]
    if transform.transpose:
        out = out.T
    return out[transform.rows][:, transform.cols]


def invert(transform: Transform, grid: np.ndarray) -> np.ndarray:
    """Undo `apply`: map a transformed grid (or a prediction on it) back to the original frame."""
    out = np.empty_like(grid)
    out[np.ix_(transform.rows, transform.cols)] = grid
    if transform.transpose:
        out = out.T
    return np.argsort(transform.digits)[out]


@dataclass
class _Puzzle:
    puzzle: np.ndarray
    solution: np.ndarray
    level: int


class Sudoku:
    """Uniquely solvable puzzles of the chosen levels; no solution grid appears twice anywhere."""

    def __init__(
        self,
        size: int,
        n_train: int,
        n_val: int,
        n_test: int,
        levels: Sequence[str],
        blanks: Optional[int],
        augment: int,
        seed: int,
    ) -> None:
        if size not in BOXES:
            raise ValueError(f"data.size={size}: sudoku boards are 4x4, 6x6 or 9x9; set size to 4, 6 or 9")
        unknown = [name for name in levels if name not in LEVELS]
        if unknown or not levels:
            raise ValueError(f"data.levels={list(levels)}: choose a non-empty subset of {list(LEVELS)}")
        most = size * size - MIN_GIVENS[size]
        if blanks is not None and not 1 <= blanks <= most:
            raise ValueError(
                f"data.blanks={blanks}: a {size}x{size} sudoku with a unique solution has 1 to {most} "
                "blanks; pick a value in that range or null for minimal puzzles"
            )
        if augment < 0:
            raise ValueError(f"data.augment={augment}: the number of extra copies must be 0 or more")
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        for split, n in self.sizes.items():
            if n < 0:
                raise ValueError(f"data.n_{split}={n}: a split cannot have a negative size")
        grids = n_train * (1 + augment) + n_val + n_test
        if grids > GRID_COUNT[size]:
            raise ValueError(
                f"data: {grids} distinct solution grids needed (n_train * (1 + augment) + n_val + n_test) "
                f"but only {GRID_COUNT[size]} {size}x{size} grids exist; lower the counts or augment"
            )
        self.size, self.blanks, self.augment, self.seed = size, blanks, augment, seed
        self.levels = [LEVELS.index(name) for name in levels]
        self.vocab = ["."] + [str(d) for d in range(1, size + 1)]
        self.meta = {"grid": [size, size], "levels": list(LEVELS)}

    def build(self) -> dict[str, SplitArrays]:
        rng = np.random.default_rng(self.seed)
        # The search draws a random number per node: stdlib random is far faster per scalar draw.
        fast = random.Random(int(rng.integers(2**63)))
        pool = self._generate(sum(self.sizes.values()), fast)
        seen = {p.solution.tobytes() for p in pool}
        out, start = {}, 0
        for split, n in self.sizes.items():
            chosen = pool[start : start + n]
            start += n
            if split == "train":
                chosen = chosen + self._augmented(chosen, seen, rng)
            out[split] = self._encode(chosen)
        return out

    def _generate(self, n: int, rng: random.Random) -> list[_Puzzle]:
        """n puzzles of the wanted levels with pairwise distinct solution grids."""
        pool: list[_Puzzle] = []
        seen: set[bytes] = set()
        tried = 0
        while len(pool) < n:
            tried += 1
            if tried > PATIENCE and len(pool) * MIN_YIELD < tried:
                raise ValueError(self._low_yield(len(pool), tried))
            solution = _full_grid(self.size, rng)
            key = bytes(solution)
            if key in seen:
                continue
            puzzle = _dig(solution, self.size, self.blanks, rng)
            if puzzle is None:
                continue
            level, _ = rate(puzzle, self.size)
            if level in self.levels:
                seen.add(key)
                shape = (self.size, self.size)
                pool.append(_Puzzle(np.reshape(puzzle, shape), np.reshape(solution, shape), level))
        return pool

    def _low_yield(self, kept: int, tried: int) -> str:
        wanted = [LEVELS[i] for i in self.levels]
        return (
            f"data.levels={wanted}: only {kept} of {tried} generated {self.size}x{self.size} puzzles "
            f"(blanks={self.blanks}) were new and of these levels; add levels or change data.blanks "
            "(fewer blanks give trivial and easy puzzles, null gives minimal ones, the hardest)"
        )

    def _augmented(self, puzzles: list[_Puzzle], seen: set[bytes], rng: np.random.Generator) -> list[_Puzzle]:
        """`augment` transformed copies of each puzzle, each with a solution grid not seen before.

        A copy keeps its source's level: symmetries preserve difficulty, though not the rater's
        tie-breaks between equally constrained cells.
        """
        copies = []
        for p in puzzles:
            for _ in range(self.augment):
                copies.append(self._fresh_copy(p, seen, rng))
        return copies

    def _fresh_copy(self, p: _Puzzle, seen: set[bytes], rng: np.random.Generator) -> _Puzzle:
        for _ in range(TRANSFORM_TRIES):
            t = random_transform(self.size, rng)
            solution = apply(t, p.solution)
            if solution.tobytes() not in seen:
                seen.add(solution.tobytes())
                return _Puzzle(apply(t, p.puzzle), solution, p.level)
        raise ValueError(
            f"data.augment={self.augment}: no unused {self.size}x{self.size} solution grid found among "
            f"{TRANSFORM_TRIES} transforms of a train puzzle; lower augment or the split sizes"
        )

    def _encode(self, puzzles: list[_Puzzle]) -> SplitArrays:
        cells = self.size * self.size
        inputs = np.array([p.puzzle.ravel() for p in puzzles], dtype=np.int64).reshape(-1, cells)
        solutions = np.array([p.solution.ravel() for p in puzzles], dtype=np.int64).reshape(-1, cells)
        labels = np.where(inputs == 0, solutions, IGNORE)
        level = np.array([p.level for p in puzzles], dtype=np.int64)
        return SplitArrays(inputs=inputs, labels=labels, extras={"level": level})
