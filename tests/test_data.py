"""The addition task, the content-addressed cache and the resumable batch order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from forge.data.addition import VOCAB, Addition
from forge.data.loader import ResumableBatchSampler
from forge.data.prepare import fingerprint, prepare
from forge.data.task import IGNORE


def _numbers(tokens: np.ndarray, lsb_first: bool) -> list[int]:
    digits = tokens[::-1] if lsb_first else tokens
    return [int("".join(VOCAB[t] for t in digits))]


@pytest.mark.parametrize("lsb_first", [True, False])
def test_addition_examples_are_correct_sums(lsb_first: bool) -> None:
    splits = Addition(3, lsb_first, 300, 50, 50, seed=7).build()
    for arrays in splits.values():
        assert arrays.inputs.shape[1] == 3 + 1 + 3 + 1 + 4
        for row, labels in zip(arrays.inputs, arrays.labels):
            (a,), (b,), (s,) = (_numbers(row[i:j], lsb_first) for i, j in ((0, 3), (4, 7), (8, 12)))
            assert (VOCAB[row[3]], VOCAB[row[7]]) == ("+", "=")
            assert a + b == s
            assert (labels[:8] == IGNORE).all() and (labels[8:] == row[8:]).all()


def test_splits_never_share_a_problem_in_either_order() -> None:
    splits = Addition(2, True, 3000, 500, 1000, seed=1).build()
    seen = {}
    for name, arrays in splits.items():
        pairs = {tuple(sorted((tuple(r[0:2]), tuple(r[3:5])))) for r in arrays.inputs}
        assert len(pairs) == len(arrays.inputs)
        for other, other_pairs in seen.items():
            assert not pairs & other_pairs, (name, other)
        seen[name] = pairs


def test_too_many_problems_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="only 55 distinct 1-digit additions"):
        Addition(1, True, 50, 5, 5, seed=0)


def _data_cfg(**changes: object) -> object:
    base = dict(_target_="forge.data.addition.Addition", digits=2, lsb_first=True, n_train=200, n_val=20, n_test=20, seed=3, batch_size=8)
    return OmegaConf.create({**base, **changes})


def test_prepared_data_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Addition.build
    monkeypatch.setattr(Addition, "build", lambda self: calls.append(1) or original(self))
    prepare(_data_cfg(), str(tmp_path / "cache"), tmp_path / "run1" / "data")
    prepare(_data_cfg(batch_size=64), str(tmp_path / "cache"), tmp_path / "run2" / "data")
    assert len(calls) == 1, "same content, different loader settings: generated once"
    assert (tmp_path / "run2" / "data" / "train.safetensors").read_bytes() == (tmp_path / "run1" / "data" / "train.safetensors").read_bytes()
    prepare(_data_cfg(seed=4), str(tmp_path / "cache"), tmp_path / "run3" / "data")
    assert len(calls) == 2
    assert fingerprint(_data_cfg()) != fingerprint(_data_cfg(seed=4))
    assert not list((tmp_path / "cache" / "data").glob(".*tmp")), "no temporary folders left behind"


def test_sampler_resumes_mid_epoch_with_the_same_batches() -> None:
    full = ResumableBatchSampler(100, 8, seed=5)
    full.set_epoch(2)
    expected = list(full)
    killed = ResumableBatchSampler(100, 8, seed=5)
    killed.set_epoch(2)
    it = iter(killed)
    seen = [next(it) for _ in range(5)]
    state = killed.state_dict()
    resumed = ResumableBatchSampler(100, 8, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert seen + list(resumed) == expected
    assert len(expected) == 12 and all(len(b) == 8 for b in expected)


def test_sampler_epochs_differ_and_ranks_partition() -> None:
    a = ResumableBatchSampler(64, 4, seed=0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    ranks = [ResumableBatchSampler(64, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    rows = [sorted(i for b in s for i in b) for s in ranks]
    assert not set(rows[0]) & set(rows[1]) and len(rows[0]) + len(rows[1]) == 64
