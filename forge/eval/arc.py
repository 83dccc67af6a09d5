"""ARC scoring: map every augmented prediction back, vote per query, and score pass@k.

The test split holds each evaluation query untransformed and under several augmentations
(forge.data.arc). A model that has learnt the rule answers all versions alike, so after undoing
each row's colour permutation and dihedral transform the answers agree; the most voted ones are
the guesses, and ARC's official metric allows two (pass@2). Task score = mean over its queries,
reported score = mean over tasks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from forge.data.arc import COLOURS, PAD
from forge.data.grids import dihedral as transform
from forge.data.grids import inverse_dihedral
from forge.data.loader import SplitDataset
from forge.data.prepare import load_meta
from forge.data.task import IGNORE
from forge.models.sequence import predict


def crop(canvas: np.ndarray) -> Optional[np.ndarray]:
    """The grid drawn at the canvas's top-left, or None unless it is a non-empty colour rectangle on PAD."""
    colour = canvas < COLOURS
    h, w = int(colour.any(1).sum()), int(colour.any(0).sum())
    rectangle = np.zeros_like(colour)
    rectangle[:h, :w] = True
    if h == 0 or (colour != rectangle).any() or (canvas[~colour] != PAD).any():
        return None
    return canvas[:h, :w]


def restore(grid: np.ndarray, k: int, perm: Sequence[int]) -> np.ndarray:
    """Undo an augmentation: invert the colour permutation, then the dihedral transform."""
    inverse = np.argsort(np.asarray(perm))
    return transform(inverse[grid], inverse_dihedral(k))


def grid_key(grid: np.ndarray) -> Hashable:
    return grid.shape, grid.astype(np.int64).tobytes()


def ranked_answers(grids: Sequence[Optional[np.ndarray]]) -> list[Hashable]:
    """Distinct answers by votes, ties to the earliest (the untransformed row comes first).

    A malformed prediction (None) is its own wrong answer: it never pools votes with another.
    """
    votes: dict[Hashable, list[int]] = {}
    for i, grid in enumerate(grids):
        key = ("malformed", i) if grid is None else grid_key(grid)
        votes.setdefault(key, [0, i])[0] += 1
    return sorted(votes, key=lambda key: (-votes[key][0], votes[key][1]))


def vote_pass_at_k(
    predictions: np.ndarray,
    truths: np.ndarray,
    task_ids: np.ndarray,
    query_ids: np.ndarray,
    dihedral: np.ndarray,
    colour_perm: np.ndarray,
    colour_perms: Sequence[Sequence[int]],
    ks: Sequence[int] = (1, 2),
) -> dict[str, float]:
    """pass@k for each k: predictions and truths are answer canvases (N, G, G) as the rows saw them.

    A query is solved when its true output is among its k most voted restored answers.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for row, (task, query) in enumerate(zip(task_ids.tolist(), query_ids.tolist())):
        groups.setdefault((task, query), []).append(row)

    def restored(canvas: np.ndarray, row: int) -> Optional[np.ndarray]:
        grid = crop(canvas)
        return None if grid is None else restore(grid, int(dihedral[row]), colour_perms[int(colour_perm[row])])

    solved: dict[int, dict[int, list[bool]]] = {k: {} for k in ks}
    for (task, query), rows in groups.items():
        truth = restored(truths[rows[0]], rows[0])
        if truth is None:
            raise ValueError(f"task {task} query {query}: the true answer canvas is not a grid; rebuild the ARC dataset")
        ranking = ranked_answers([restored(predictions[r], r) for r in rows])
        for k in ks:
            solved[k].setdefault(task, []).append(grid_key(truth) in ranking[:k])
    scores: dict[str, float] = {f"pass@{k}": float(np.mean([np.mean(q) for q in solved[k].values()])) for k in ks}
    scores["tasks"] = len({task for task, _ in groups})
    scores["queries"] = len(groups)
    return scores


@torch.no_grad()
def evaluate_arc(model: torch.nn.Module, data_dir: Path | str, batch_size: int) -> dict[str, float]:
    """pass@1, pass@2, tasks and queries of a bidirectional model on a prepared ARC test split."""
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    if "colour_perms" not in meta:
        raise ValueError(f"{data_dir} holds no ARC dataset (meta.json has no colour_perms): prepare it with data=arc")
    data = SplitDataset(data_dir, "test")
    answer = data.labels[0] != IGNORE
    device = next(model.parameters()).device
    predicted = []
    for start in range(0, len(data), batch_size):
        inputs, labels = data.inputs[start : start + batch_size], data.labels[start : start + batch_size]
        tokens = predict(model, inputs.to(device), labels.to(device), causal=False)
        predicted.append(tokens.cpu()[:, answer])
    shape = (-1, *meta["grid"])
    extras = {name: column.numpy() for name, column in data.extras.items()}
    return vote_pass_at_k(
        torch.cat(predicted).numpy().reshape(shape),
        data.labels[:, answer].numpy().reshape(shape),
        extras["task"],
        extras["query"],
        extras["dihedral"],
        extras["colour_perm"],
        meta["colour_perms"],
    )
