"""Sudoku and maze tasks: labels are the unique answers, symmetries keep them, splits stay apart."""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from forge.data.prepare import build_task
from forge.data.grids import DIHEDRAL, dihedral
from forge.data.maze import GOAL, OPEN, PATH, START, WALL, Maze, shortest_paths
from forge.data.sudoku import (
    BOXES,
    LEVELS,
    Sudoku,
    Transform,
    apply,
    count_solutions,
    invert,
    is_valid_solution,
    random_transform,
    rate,
)
from forge.data.task import IGNORE

REPO = Path(__file__).resolve().parents[1]
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."


def _digits(text: str) -> list[int]:
    return [0 if ch == "." else int(ch) for ch in text]


def _sudoku(size: int, **changes: object) -> Sudoku:
    base = dict(size=size, n_train=6, n_val=3, n_test=3, levels=list(LEVELS), blanks=None, augment=1, seed=0)
    return Sudoku(**{**base, **changes})


def _solution(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.where(inputs == 0, labels, inputs)


def _naive_count(cells: list[int], size: int, limit: int = 2) -> int:
    """Plain backtracking over the first blank, independent of the module's solver."""
    box_rows, box_cols = BOXES[size]
    try:
        i = cells.index(0)
    except ValueError:
        return 1
    r, c = divmod(i, size)
    r0, c0 = r - r % box_rows, c - c % box_cols
    used = {cells[r * size + k] for k in range(size)} | {cells[k * size + c] for k in range(size)}
    used |= {cells[(r0 + a) * size + c0 + b] for a in range(box_rows) for b in range(box_cols)}
    total = 0
    for d in range(1, size + 1):
        if d not in used:
            cells[i] = d
            total += _naive_count(cells, size, limit - total)
            cells[i] = 0
            if total >= limit:
                break
    return total


@pytest.mark.parametrize("size", [4, 6, 9])
def test_sudoku_labels_are_the_unique_solution(size: int) -> None:
    task = _sudoku(size)
    splits = task.build()
    assert task.vocab == ["."] + [str(d) for d in range(1, size + 1)]
    assert task.meta == {"grid": [size, size], "levels": list(LEVELS)}
    for arrays in splits.values():
        assert arrays.inputs.shape[1] == size * size and arrays.inputs.dtype == np.int64
        assert ((arrays.labels == IGNORE) == (arrays.inputs != 0)).all(), "scored exactly at blanks"
        for puzzle, labels in zip(arrays.inputs, arrays.labels):
            solution = _solution(puzzle, labels)
            assert is_valid_solution(solution, size), "labels and givens form a valid grid"
            assert count_solutions(puzzle, size) == 1, "so it is the only solution"
            if size < 9:
                assert _naive_count(puzzle.tolist(), size) == 1
        assert set(arrays.extras["level"].tolist()) <= set(range(len(LEVELS)))


def test_is_valid_solution_rejects_broken_grids() -> None:
    grid = _sudoku(9, n_train=1, n_val=0, n_test=0, augment=0).build()["train"]
    solution = _solution(grid.inputs[0], grid.labels[0]).reshape(9, 9)
    assert is_valid_solution(solution, 9)
    swapped = solution.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    assert not is_valid_solution(swapped, 9), "rows still fine, columns broken"
    assert not is_valid_solution(np.where(solution == 9, 0, solution), 9)
    assert not is_valid_solution(solution[:8], 9)


def _identity(size: int) -> Transform:
    return Transform(digits=np.arange(size + 1), transpose=False, rows=np.arange(size), cols=np.arange(size))


def _swap(size: int, width: int, first: int, second: int) -> np.ndarray:
    """Order 0..size-1 with the blocks of `width` lines at `first` and `second` exchanged."""
    order = np.arange(size)
    a, b = order[first * width : (first + 1) * width].copy(), order[second * width : (second + 1) * width].copy()
    order[first * width : (first + 1) * width], order[second * width : (second + 1) * width] = b, a
    return order


def _single_symmetries(size: int) -> dict[str, Transform]:
    box_rows, box_cols = BOXES[size]
    ident = _identity(size)
    kinds = {
        "digits": dataclasses.replace(ident, digits=np.array([0, *range(size, 0, -1)])),
        "row in band": dataclasses.replace(ident, rows=_swap(size, 1, 0, 1)),
        "bands": dataclasses.replace(ident, rows=_swap(size, box_rows, 0, 1)),
        "column in stack": dataclasses.replace(ident, cols=_swap(size, 1, 0, box_cols - 1)),
        "stacks": dataclasses.replace(ident, cols=_swap(size, box_cols, 0, 1)),
    }
    if box_rows == box_cols:
        kinds["transpose"] = dataclasses.replace(ident, transpose=True)
    return kinds


@pytest.mark.parametrize("size", [4, 6, 9])
def test_every_symmetry_is_invertible_and_keeps_puzzles_valid(size: int) -> None:
    rows = _sudoku(size, n_train=2, n_val=0, n_test=0, augment=0).build()["train"]
    rng = np.random.default_rng(0)
    randoms = [random_transform(size, rng) for _ in range(30)]
    assert any(t.transpose for t in randoms) == (size != 6), "6x6 boxes are not square: no transpose"
    for puzzle, labels in zip(rows.inputs, rows.labels):
        puzzle, solution = puzzle.reshape(size, size), _solution(puzzle, labels).reshape(size, size)
        for t in [*_single_symmetries(size).values(), *randoms]:
            moved, moved_puzzle = apply(t, solution), apply(t, puzzle)
            assert is_valid_solution(moved, size)
            assert (invert(t, moved) == solution).all() and (invert(t, moved_puzzle) == puzzle).all()
            assert ((moved_puzzle == 0) | (moved_puzzle == moved)).all()
            assert (moved_puzzle == 0).sum() == (puzzle == 0).sum()
            assert count_solutions(moved_puzzle.ravel(), size) == 1
    broken = dataclasses.replace(_identity(size), rows=_swap(size, 1, 0, BOXES[size][0]))
    assert not is_valid_solution(apply(broken, solution), size), "rows across bands do not commute with boxes"


@pytest.mark.parametrize("size, augment", [(4, 3), (9, 2)])
def test_sudoku_splits_never_share_a_solution_grid(size: int, augment: int) -> None:
    splits = _sudoku(size, n_train=20, n_val=10, n_test=10, augment=augment).build()
    assert len(splits["train"].inputs) == 20 * (1 + augment)
    grids = {}
    for name, arrays in splits.items():
        grids[name] = {_solution(p, l).tobytes() for p, l in zip(arrays.inputs, arrays.labels)}
        assert len(grids[name]) == len(arrays.inputs), f"{name} repeats a solution grid"
    assert not grids["train"] & grids["val"] and not grids["train"] & grids["test"] and not grids["val"] & grids["test"]


def test_levels_filter_and_rating_order() -> None:
    medium = _sudoku(9, n_train=4, n_val=2, n_test=2, levels=["medium"], augment=0).build()
    for arrays in medium.values():
        assert (arrays.extras["level"] == LEVELS.index("medium")).all()
        assert all(rate(p, 9)[0] == LEVELS.index("medium") for p in arrays.inputs)
    easy = _sudoku(9, n_train=4, n_val=2, n_test=2, levels=["trivial"], blanks=40, augment=0).build()
    assert all((a.extras["level"] == 0).all() and ((a.inputs == 0).sum(1) == 40).all() for a in easy.values())


def test_rating_falls_as_givens_are_added_back() -> None:
    """From a famously hard puzzle to one blank, adding solution digits never raises the level."""
    puzzle = _digits(INKALA)
    level, stats = rate(puzzle, 9)
    assert count_solutions(puzzle, 9) == 1 and level == LEVELS.index("expert") and stats["dead_ends"] > 255
    full = _digits("812753649943682175675491283154237896369845721287169534521974368438526917796318452")
    assert is_valid_solution(np.array(full), 9)
    blanks = [i for i, v in enumerate(puzzle) if v == 0]
    assert all(full[i] == puzzle[i] for i in range(81) if puzzle[i])
    levels = []
    for k in range(0, len(blanks) + 1, 4):
        partial = list(puzzle)
        for i in blanks[:k]:
            partial[i] = full[i]
        levels.append(rate(partial, 9)[0])
    assert levels == sorted(levels, reverse=True) and set(levels) == set(range(len(LEVELS)))
    one_blank = list(full)
    one_blank[40] = 0
    assert rate(one_blank, 9) == (0, {"guesses": 0, "dead_ends": 0})


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"size": 7}, "data.size=7"),
        ({"levels": ["impossible"]}, "data.levels"),
        ({"levels": []}, "data.levels"),
        ({"blanks": 70}, "data.blanks=70"),
        ({"blanks": 0}, "data.blanks=0"),
        ({"augment": -1}, "data.augment=-1"),
        ({"n_val": -1}, "data.n_val=-1"),
        ({"size": 4, "n_train": 100, "augment": 2}, "only 288 4x4 grids"),
    ],
)
def test_bad_sudoku_config_names_the_key(changes: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        _sudoku(**{"size": 9, **changes})


def test_unreachable_sudoku_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"data.levels=\['expert'\].*change data.blanks"):
        _sudoku(4, levels=["expert"]).build()


def _maze(**changes: object) -> Maze:
    base = dict(size=15, n_train=12, n_val=4, n_test=4, min_path=20, loops=0.2, augment=3, seed=0)
    return Maze(**{**base, **changes})


def _bfs(grid: np.ndarray, source: tuple[int, int]) -> tuple[dict, dict]:
    """Distances and shortest-path counts from `source`, written independently of the module."""
    dist, count = {source: 0}, {source: 1}
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if grid[nxt] == WALL:
                continue
            if nxt not in dist:
                dist[nxt], count[nxt] = dist[(r, c)] + 1, 0
                queue.append(nxt)
            if dist[nxt] == dist[(r, c)] + 1:
                count[nxt] += count[(r, c)]
    return dist, count


def _check_maze(inputs: np.ndarray, labels: np.ndarray, length: int, size: int) -> None:
    grid, marks = inputs.reshape(size, size), labels.reshape(size, size)
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    assert (border == WALL).all()
    assert (grid == START).sum() == 1 and (grid == GOAL).sum() == 1
    assert ((marks == IGNORE) == (grid == WALL)).all(), "scored exactly at open cells"
    assert ((marks == START) == (grid == START)).all() and ((marks == GOAL) == (grid == GOAL)).all()
    assert (grid[(marks == PATH) | (marks == OPEN)] == OPEN).all()
    start, goal = (tuple(np.argwhere(grid == t)[0]) for t in (START, GOAL))
    from_start, count = _bfs(grid, start)
    from_goal, _ = _bfs(grid, goal)
    assert from_start[goal] == length and count[goal] == 1, "the shortest path is unique"
    on_path = {tuple(p) for p in np.argwhere((marks == PATH) | (marks == START) | (marks == GOAL))}
    shortest = {cell for cell, d in from_start.items() if d + from_goal[cell] == length}
    assert on_path == shortest and len(on_path) == length + 1, "labels mark that path, S to G"
    found_length, found_count, cells = shortest_paths(grid)
    assert (found_length, found_count) == (length, 1) and set(cells) == on_path
    assert cells[0] == start and cells[-1] == goal
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(cells, cells[1:])), "contiguous"


def test_maze_labels_mark_the_unique_shortest_path() -> None:
    task = _maze()
    splits = task.build()
    assert task.vocab == ["#", ".", "S", "G", "o"] and task.meta == {"grid": [15, 15]}
    for arrays in splits.values():
        lengths = arrays.extras["path_length"]
        assert (lengths >= 20).all()
        for inputs, labels, length in zip(arrays.inputs, arrays.labels, lengths):
            _check_maze(inputs, labels, int(length), 15)


def _edges_and_cells(inputs: np.ndarray, size: int) -> tuple[int, int]:
    is_open = inputs.reshape(size, size) != WALL
    edges = (is_open[1:] & is_open[:-1]).sum() + (is_open[:, 1:] & is_open[:, :-1]).sum()
    return int(edges), int(is_open.sum())


def test_loops_add_alternative_routes() -> None:
    for loops, has_cycle in ((0.0, False), (0.3, True)):
        rows = _maze(loops=loops, augment=0).build()["train"].inputs
        for inputs in rows:
            edges, cells = _edges_and_cells(inputs, 15)
            assert (edges >= cells) == has_cycle, "a connected graph has a cycle iff edges >= cells"
            assert edges >= cells - 1


def test_maze_augmentations_are_symmetries_with_the_same_path() -> None:
    train = _maze(augment=3, n_train=8).build()["train"]
    base = train.inputs[:8].reshape(8, 15, 15)
    base_labels = train.labels[:8].reshape(8, 15, 15)
    assert 8 < len(train.inputs) <= 8 * 4
    for inputs, labels, length in zip(train.inputs[8:], train.labels[8:], train.extras["path_length"][8:]):
        grid = inputs.reshape(15, 15)
        matches = [
            (j, k) for j in range(8) for k in range(1, DIHEDRAL) if (dihedral(base[j], k) == grid).all()
        ]
        assert matches, "every extra copy is a rotation or reflection of a train maze"
        j, k = matches[0]
        assert (dihedral(base_labels[j], k) == labels.reshape(15, 15)).all()
        assert length == train.extras["path_length"][j] == shortest_paths(grid)[0]


def test_maze_splits_never_share_a_maze() -> None:
    splits = _maze(n_train=30, n_val=10, n_test=10, size=9, min_path=8, augment=7).build()
    variants = {}
    for name, arrays in splits.items():
        grids = arrays.inputs.reshape(-1, 9, 9)
        assert len({g.tobytes() for g in grids}) == len(grids), f"{name} repeats a maze"
        variants[name] = {dihedral(g, k).tobytes() for g in grids for k in range(DIHEDRAL)}
    assert not variants["train"] & variants["val"] and not variants["train"] & variants["test"]
    assert not variants["val"] & variants["test"]


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"size": 14}, "data.size=14"),
        ({"size": 3}, "data.size=3"),
        ({"loops": 1.5}, "data.loops=1.5"),
        ({"augment": 8}, "data.augment=8"),
        ({"min_path": 0}, "data.min_path=0"),
        ({"size": 7, "min_path": 40}, "data.min_path=40"),
        ({"n_test": -2}, "data.n_test=-2"),
    ],
)
def test_bad_maze_config_names_the_key(changes: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        _maze(**changes)


def test_unreachable_path_length_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="data.min_path=16.*lower min_path"):
        _maze(size=7, min_path=16, loops=0.0).build()


@pytest.mark.parametrize("name", ["sudoku", "maze"])
def test_shipped_configs_build(name: str) -> None:
    cfg = OmegaConf.load(REPO / "conf" / "data" / f"{name}.yaml")
    assert "batch_size" in cfg
    cfg.n_train, cfg.n_val, cfg.n_test = 2, 1, 1
    splits = build_task(cfg).build()
    assert len(splits["train"].inputs) > 2 and len(splits["val"].inputs) == len(splits["test"].inputs) == 1
