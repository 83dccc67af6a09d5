"""Sorting, arithmetic, modular arithmetic and recall: right answers, disjoint splits, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from forge.data.algorithmic import Arithmetic, Modular, Sorting
from forge.data.loader import SplitDataset
from forge.data.prepare import prepare
from forge.data.recall import FILLER, KEY, PAD, QUERY, VALUE, Recall
from forge.data.task import IGNORE, SplitArrays


def rows(arrays: SplitArrays) -> set[bytes]:
    return {row.tobytes() for row in arrays.inputs}


def assert_disjoint(splits: dict[str, SplitArrays], key=rows) -> None:
    seen: dict[str, set] = {}
    for name, arrays in splits.items():
        mine = key(arrays)
        assert len(mine) == len(arrays.inputs), f"{name} repeats a problem"
        for other, theirs in seen.items():
            assert not mine & theirs, (name, other)
        seen[name] = mine


def assert_labels_are_the_tail(arrays: SplitArrays, answer_len: int) -> None:
    assert (arrays.labels[:, :-answer_len] == IGNORE).all()
    assert (arrays.labels[:, -answer_len:] == arrays.inputs[:, -answer_len:]).all()


def test_sorting_answers_are_the_sorted_inputs() -> None:
    task = Sorting(length=6, max_value=4, n_train=2000, n_val=200, n_test=200, seed=0)
    splits = task.build()
    for arrays in splits.values():
        assert arrays.inputs.shape[1] == 13 and (arrays.inputs[:, 6] == task.vocab.index("=")).all()
        assert (arrays.inputs[:, 7:] == np.sort(arrays.inputs[:, :6], axis=1)).all()
        assert_labels_are_the_tail(arrays, 6)
    assert_disjoint(splits)


def number(tokens: np.ndarray, lsb_first: bool) -> int:
    return int("".join(map(str, tokens[::-1] if lsb_first else tokens)))


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("lsb_first", [True, False])
def test_arithmetic_answers_are_correct(op: str, lsb_first: bool) -> None:
    splits = Arithmetic(op, 2, lsb_first, n_train=2000, n_val=300, n_test=300, seed=1).build()
    width = {"add": 3, "sub": 2, "mul": 4}[op]
    for arrays in splits.values():
        assert arrays.inputs.shape[1] == 2 + 1 + 2 + 1 + width
        for row in arrays.inputs[:300]:
            a, b, result = number(row[0:2], lsb_first), number(row[3:5], lsb_first), number(row[6:], lsb_first)
            assert result == {"add": a + b, "sub": a - b, "mul": a * b}[op]
        assert_labels_are_the_tail(arrays, width)
    assert_disjoint(splits, key=lambda s: {tuple(sorted((r[0:2].tobytes(), r[3:5].tobytes()))) for r in s.inputs})


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_modular_covers_every_pair_once_with_the_right_answer(op: str) -> None:
    p = 13
    task = Modular(p, op, train_fraction=0.3, seed=2)
    splits = task.build()
    number = {task.vocab.index(str(v)): v for v in range(p)}
    for arrays in splits.values():
        x, y, z = (np.vectorize(number.get)(arrays.inputs[:, i]) for i in (0, 2, 4))
        expected = {"add": x + y, "sub": x - y, "mul": x * y, "div": x * np.array([pow(int(v), -1, p) if v else 0 for v in y])}[op] % p
        assert (z == expected).all()
        assert_labels_are_the_tail(arrays, 1)
    pairs = p * (p - 1 if op == "div" else p)
    assert len(splits["train"].inputs) == round(0.3 * pairs)
    assert len(splits["train"].inputs) + len(splits["val"].inputs) == pairs
    assert splits["test"] is splits["val"]
    assert_disjoint({"train": splits["train"], "val": splits["val"]})


@pytest.mark.parametrize("mode", ["kv", "needle"])
@pytest.mark.parametrize("n_keys", [1, 5])
def test_recall_answer_is_the_queried_keys_value(mode: str, n_keys: int) -> None:
    length = 40
    splits = Recall(mode, length, n_keys, n_train=500, n_val=50, n_test=50, seed=3).build()
    for arrays in splits.values():
        assert arrays.inputs.shape[1] == length
        for row in arrays.inputs:
            context, (q, key, value) = row[:-3], row[-3:]
            keys = np.flatnonzero((context >= KEY) & (context < VALUE))
            assert q == QUERY and len(keys) == n_keys == len(set(context[keys].tolist()))
            assert ((context[keys + 1] >= VALUE) & (context[keys + 1] < FILLER)).all(), "each key is followed by its value"
            assert value == context[keys[context[keys] == key][0] + 1]
            others = np.delete(context, np.concatenate([keys, keys + 1]))
            assert (others == PAD).all() if mode == "kv" else (others >= FILLER).all()
        assert_labels_are_the_tail(arrays, 1)
    assert_disjoint(splits)


@pytest.mark.parametrize(
    "target, settings",
    [
        ("algorithmic.Sorting", dict(length=4, max_value=9, n_train=50, n_val=10, n_test=10)),
        ("algorithmic.Arithmetic", dict(op="sub", digits=2, lsb_first=False, n_train=50, n_val=10, n_test=10)),
        ("algorithmic.Modular", dict(p=7, op="add", train_fraction=0.5)),
        ("recall.Recall", dict(mode="needle", length=20, n_keys=2, n_train=50, n_val=10, n_test=10)),
    ],
)
def test_a_bidirectional_model_sees_a_blank_answer(tmp_path: Path, target: str, settings: dict) -> None:
    cfg = OmegaConf.create({"_target_": f"forge.data.{target}", **settings, "seed": 0, "batch_size": 8})
    data_dir = prepare(cfg, str(tmp_path / "cache"), tmp_path / "data")
    shown, hidden = SplitDataset(data_dir, "train"), SplitDataset(data_dir, "train", hide_answers=True)
    scored = shown.labels != IGNORE
    blank = hidden.inputs[scored].unique()
    assert len(blank) == 1 and not (shown.inputs == blank).any(), "the blank token is used for nothing else"
    assert (hidden.inputs[~scored] == shown.inputs[~scored]).all()


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: Sorting(1, 9, 10, 10, 10, 0), "data.length=1"),
        (lambda: Sorting(4, 0, 10, 10, 10, 0), "data.max_value=0"),
        (lambda: Sorting(2, 2, 5, 5, 5, 0), "only 9 distinct"),
        (lambda: Sorting(4, 9, 10, 0, 10, 0), "data.n_val=0"),
        (lambda: Arithmetic("div", 2, True, 10, 10, 10, 0), "data.op=div"),
        (lambda: Arithmetic("add", 10, True, 10, 10, 10, 0), "data.digits=10"),
        (lambda: Arithmetic("mul", 1, True, 40, 10, 10, 0), "only 55 distinct"),
        (lambda: Modular(97, "pow", 0.5, 0), "data.op=pow"),
        (lambda: Modular(12, "div", 0.5, 0), "data.p=12"),
        (lambda: Modular(97, "add", 1.0, 0), "data.train_fraction=1.0"),
        (lambda: Recall("copy", 20, 2, 10, 10, 10, 0), "data.mode=copy"),
        (lambda: Recall("kv", 20, 65, 10, 10, 10, 0), "data.n_keys=65"),
        (lambda: Recall("needle", 8, 3, 10, 10, 10, 0), "data.length=8"),
        (lambda: Recall("kv", 5, 1, 4000, 500, 500, 0).build(), "raise n_keys or length"),
    ],
)
def test_bad_values_name_the_key(make, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make()
