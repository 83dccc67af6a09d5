"""Walk-forward validation: every fold trains only on rows more than the gap earlier than its
validation block, never on a group that is in the block, and the blocks follow one another to
the end of the data; a tiny run reports it with the k-fold table and cv.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file
from scipy.stats import t

from conftest import run_forge, run_in_process, tiny
from forge.config.compose import compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.data.prepare import cache_root
from forge.data.walk_forward import walk_forward


@st.composite
def settings_and_data(draw: st.DrawFn) -> tuple[int, int, int, Optional[int], Optional[np.ndarray], Optional[np.ndarray]]:
    n = draw(st.integers(2, 120))
    folds = draw(st.integers(2, 8))
    gap = draw(st.integers(0, 12))
    max_train = draw(st.none() | st.integers(1, 60))
    time = draw(st.none() | st.lists(st.integers(0, 40), min_size=n, max_size=n).map(np.array))
    groups = draw(st.none() | st.lists(st.integers(0, draw(st.integers(0, 30))), min_size=n, max_size=n).map(np.array))
    return n, folds, gap, max_train, time, groups


@settings(max_examples=400, deadline=None)
@given(settings_and_data())
def test_train_precedes_the_block_by_more_than_the_gap_and_shares_no_group(case: tuple) -> None:
    n, folds, gap, max_train, time, groups = case
    when = np.arange(n) if time is None else time
    order = sorted(range(n), key=lambda i: (when[i], i))  # time order, ties by position
    size = n // (folds + 1)
    try:
        split = walk_forward(n, folds, gap, max_train, time, groups)
    except ConfigError as e:
        # refused only when there are fewer rows than blocks, or a fold has nothing to train on
        if size == 0:
            assert str(e).startswith(f"cv.folds={folds}:")
        else:
            assert str(e).startswith(f"cv.gap={gap}:")
            k = int(str(e).split("fold ")[1].split()[0])
            block = order[n - (folds - k) * size :][:size]
            window = [i for i in order if when[i] < when[block[0]] - gap][-(max_train or n):]
            assert all(groups is not None and groups[i] in set(groups[block]) for i in window)
        return
    assert size > 0 and len(split) == folds
    assert [i for _, val in split for i in val] == order[n - folds * size :]  # consecutive blocks to the end
    for k, (train, val) in enumerate(split):
        assert len(val) == size and len(set(val)) == size
        start = when[val].min()
        assert all(when[i] < start - gap for i in train)  # before the block, more than the gap earlier
        if time is None:
            assert val[0] - max(train) - 1 >= gap  # at least `gap` rows between train and validation
        assert groups is None or not set(groups[train]) & set(groups[val])
        window = [i for i in order if when[i] < start - gap][-(max_train or n):]
        expected = [i for i in window if groups is None or groups[i] not in set(groups[val])]
        assert train.tolist() == expected  # nothing else is left out
        assert max_train is None or len(train) <= max_train


def test_hand_checked_expanding_sliding_and_gap() -> None:
    def lists(split: list) -> list:
        return [(train.tolist(), val.tolist()) for train, val in split]

    assert lists(walk_forward(10, 3)) == [([0, 1, 2, 3], [4, 5]), ([0, 1, 2, 3, 4, 5], [6, 7]), ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])]
    assert lists(walk_forward(10, 3, gap=1)) == [([0, 1, 2], [4, 5]), ([0, 1, 2, 3, 4], [6, 7]), ([0, 1, 2, 3, 4, 5, 6], [8, 9])]
    assert lists(walk_forward(10, 3, gap=1, max_train=2)) == [([1, 2], [4, 5]), ([3, 4], [6, 7]), ([5, 6], [8, 9])]
    assert lists(walk_forward(7, 2)) == [([0, 1, 2], [3, 4]), ([0, 1, 2, 3, 4], [5, 6])]  # the first block holds the remainder


def test_groups_in_the_block_are_dropped_from_training() -> None:
    groups = np.array([7, 8, 7, 9, 8, 5])  # session ids
    split = walk_forward(6, 2, groups=groups)
    assert [(tr.tolist(), va.tolist()) for tr, va in split] == [([1], [2, 3]), ([0, 2, 3], [4, 5])]


def test_time_column_orders_rows_and_the_gap_counts_time() -> None:
    time = np.array([5, 1, 3, 3, 2, 9])
    assert [(tr.tolist(), va.tolist()) for tr, va in walk_forward(6, 2, time=time)] == [([1, 4], [2, 3]), ([1, 4, 2, 3], [0, 5])]
    assert walk_forward(6, 2, gap=1, time=time)[0][0].tolist() == [1]  # block at time 3, gap 1: only times below 2 train
    ties = np.array([0, 1, 1, 1, 2, 3])  # the block starts inside a run of equal times
    assert walk_forward(6, 2, time=ties)[0][0].tolist() == [0]


def test_too_many_folds_or_too_wide_a_gap_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^cv.folds=5: walk-forward cuts the rows into cv.folds\+1 blocks and there are only 4 "):
        walk_forward(4, 5)
    with pytest.raises(ConfigError, match=r"^cv.gap=4: fold 0 of walk-forward has no training row .*use a smaller cv.gap"):
        walk_forward(10, 3, gap=4)
    with pytest.raises(ConfigError, match="^cv.gap=0: fold 0 .* and the rows of groups in its block"):
        walk_forward(6, 2, groups=np.array([1, 1, 1, 2, 3, 4]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cv.folds=3", "cv.scheme=walkforward"], "cv.scheme=walkforward: not a valid choice"),
        (["cv.folds=3", "cv.scheme=walk_forward", "cv.gap=-1"], "cv.gap=-1: must be >= 0"),
        (["cv.folds=1", "cv.scheme=walk_forward"], "cv.folds=1: cross-validation needs at least 2 folds"),
        (["cv.scheme=walk_forward"], "cv.scheme=walk_forward: needs cv.folds"),
        (["cv.folds=3", "cv.scheme=walk_forward", "cv.stratify=true"], "cv.stratify=true: walk-forward folds are blocks"),
        (["cv.folds=3", "cv.scheme=walk_forward", "cv.max_train=0"], "cv.max_train=0: must be >= 1"),
        (["cv.folds=3", "cv.gap=5"], "cv.gap=5: only walk-forward folds have it"),
        (["cv.folds=3", "cv.group_column=task"], "cv.group_column=task: only walk-forward folds have it"),
    ],
)
def test_bad_walk_forward_settings_are_refused(overrides: list[str], message: str) -> None:
    cfg, origin = compose(["+recipe=quickstart", *overrides])
    with pytest.raises(ConfigError) as e:
        validate(cfg, origin.where)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_bad_setting_exits_2_before_any_work(tmp_path: Path) -> None:
    proc = run_forge("validate", "cv.folds=3", "cv.scheme=walkforward", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("forge: error: cv.scheme=walkforward:") and "Did you mean 'walk_forward'?" in proc.stderr


def test_a_gap_the_data_cannot_afford_stops_the_run_at_prepare(tmp_path: Path, cache: Path) -> None:
    """How many rows there are is known once the data is prepared: before any training."""
    with pytest.raises(ConfigError, match=r"^cv.gap=200: fold 0 of walk-forward has no training row \(the 144 rows before its block"):
        run_in_process(*tiny(cache), "cv.folds=3", "cv.scheme=walk_forward", "cv.gap=200", run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "fold_0" / "checkpoints").exists()


def test_three_fold_walk_forward_run_trains_on_the_past_and_reports_the_table(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run_in_process(*tiny(cache), "trainer.max_steps=10", "cv.folds=3", "cv.scheme=walk_forward", "cv.gap=16", run_dir=run)
    printed = capsys.readouterr().out
    assert "walk-forward validation: 3 folds, gap 16" in printed and "train / val rows per fold: 128/144  272/144  416/144" in printed

    summary = json.loads((run / "cv.json").read_text())
    assert (summary["scheme"], summary["folds"], summary["gap"], summary["max_train"]) == ("walk_forward", 3, 16, None)
    # 512 train + 64 val rows in 4 blocks of 144; fold k validates on block k+1, trains up to 16 rows before it
    assert summary["sizes"] == [{"train": 144 * (k + 1) - 16, "val": 144, "test": 64} for k in range(3)]
    loss = summary["metrics"]["test/loss"]
    values = [json.loads((run / f"fold_{k}" / "metrics.json").read_text())["test/loss"] for k in range(3)]
    mean, std = np.mean(values), np.std(values, ddof=1)
    assert loss["values"] == values and loss["mean"] == pytest.approx(mean) and loss["std"] == pytest.approx(std)
    assert loss["ci95"] == pytest.approx([mean - t.ppf(0.975, 2) * std / math.sqrt(3), mean + t.ppf(0.975, 2) * std / math.sqrt(3)])

    fingerprint = json.loads((run / "fold_0" / "data" / "meta.json").read_text())["fingerprint"]
    original = [load_file(str(cache_root(str(cache)) / fingerprint / f"{s}.safetensors"))["inputs"] for s in ("train", "val")]
    pool = np.concatenate(original)
    for k in range(3):
        fold = {s: load_file(str(run / f"fold_{k}" / "data" / f"{s}.safetensors"))["inputs"] for s in ("train", "val")}
        assert np.array_equal(fold["train"], pool[: 144 * (k + 1) - 16])
        assert np.array_equal(fold["val"], pool[144 * (k + 1) : 144 * (k + 2)])
