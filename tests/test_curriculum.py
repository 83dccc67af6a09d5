"""Curricula: stages advance on budget or graduation, and a resumed run continues mid-stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from conftest import kill_at_first_checkpoint, run_forge, run_in_process

SMALL = [
    "trainer.log_every_n_steps=1",
    "trainer.val_every_n_steps=1000",
    "trainer.deterministic=true",
    "eval.batch_size=64",
    "logger=csv",
]
MIXTURE_RECIPE = """# @package _global_
defaults:
  - /data@data.sources.add: addition
  - /data@data.sources.sort: sorting
  - override /data: mixture
  - override /model: trm
  - override /curriculum: staged
  - _self_

data:
  sources:
    add: {digits: 2, n_train: 400, n_val: 32, n_test: 32}
    sort: {length: 4, max_value: 9, n_train: 400, n_val: 32, n_test: 32}
model: {d_model: 16, d_ff: 32, n_layers: 1, h_cycles: 1, l_cycles: 2, segments: 2}
curriculum:
  batch_size: 16
  stages:
    - {name: first, mix: {add: 1.0}, steps: 6, threshold: 0.0}
    - {name: second, mix: {add: 0.5, sort: 0.5}, steps: 60}
trainer: {max_steps: 100, checkpoint_every_n_steps: 10}
"""


def _curriculum_state(run: Path) -> dict:
    callbacks = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    return next(state for key, state in callbacks.items() if "Staged" in key or "Difficulty" in key)


@pytest.fixture
def mixture_args(tmp_path: Path) -> list[str]:
    (tmp_path / "recipes" / "recipe").mkdir(parents=True)
    (tmp_path / "recipes" / "recipe" / "mix.yaml").write_text(MIXTURE_RECIPE)
    return [f"hydra.searchpath=[file://{tmp_path / 'recipes'}]", "+recipe=mix", f"cache_dir={tmp_path / 'cache'}", *SMALL]


def test_staged_curriculum_graduates_then_spends_its_budget(tmp_path: Path, mixture_args: list[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run = tmp_path / "run"
    run_in_process(*mixture_args, run_dir=run)
    state = _curriculum_state(run)
    assert [h["why"].split(":")[0] for h in state["history"]] == ["graduated", "budget of 60 steps spent"]
    assert [h["step"] for h in state["history"]] == [6, 66]
    assert state["position"] == 2
    assert "curriculum: complete at step 66" in caplog.text
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/add/examples"] == metrics["test/sort/examples"] == 32
    assert metrics["test/examples"] == 64


def test_curriculum_resumes_mid_stage_exactly(tmp_path: Path, mixture_args: list[str]) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_forge(*mixture_args, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert 6 < kill_at_first_checkpoint(*mixture_args, run_dir=broken, cwd=tmp_path) < 66  # mid second stage
    assert "model_carry" in torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    run_forge(*mixture_args, f"hydra.run.dir={broken}", f"resume={broken}", cwd=tmp_path)
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (straight, broken))
    assert a["global_step"] == b["global_step"] == 66
    assert _curriculum_state(straight) == _curriculum_state(broken)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


def test_difficulty_curriculum_graduates_and_takes_remedial_passes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    levels = (
        "curriculum.levels=["
        "{name: trivial, lr: 0.001, batch_size: 16, max_epochs: 3, patience: 3, gradient_clip: 1.0, threshold: 0.0},"
        "{name: easy, lr: 0.001, batch_size: 8, max_epochs: 1, patience: 1, gradient_clip: 0.5, threshold: 1.01}]"
    )
    caplog.set_level(logging.INFO)
    run_in_process(
        "+recipe=trm_sudoku", "data.size=6", "data.levels=[trivial,easy]", "data.n_train=60", "data.n_val=30",
        "data.n_test=20", "data.augment=1", "model.d_model=16", "model.d_ff=32", "model.h_cycles=1",
        "model.l_cycles=1", "model.segments=2", "trainer.max_minutes=null", "trainer.max_steps=500",
        "curriculum=difficulty", "curriculum.remedial=1", "curriculum.replay=0.25", levels,
        f"cache_dir={tmp_path / 'cache'}", *SMALL, run_dir=run,
    )
    state = _curriculum_state(run)
    reasons = [h["why"] for h in state["history"]]
    assert reasons[0].startswith("graduated") and reasons[1].startswith("not graduated")
    assert "after 1 remedial passes" in reasons[1]
    assert state["history"][1]["epochs"] == 1  # the remedial pass: one more max_epochs of 1
    assert "remedial pass 1 at half lr" in caplog.text
