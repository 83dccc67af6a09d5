"""Every shipped recipe composes, validates and says how to run it; a tiny Sudoku trains end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_in_process
from forge.config.compose import compose
from forge.config.validate import validate

RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_validates_and_documents_its_command(name: str) -> None:
    cfg, _ = compose([f"+recipe={name}"])
    validate(cfg)
    header = (REPO / "recipes" / f"{name}.yaml").read_text().split("defaults:")[0]
    assert f"forge +recipe={name}" in header


def test_tiny_sudoku_recipe_trains_evaluates_and_exports(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_in_process(
        "+recipe=trm_sudoku", "data.size=4", "data.levels=[trivial]", "data.n_train=64", "data.n_val=16",
        "data.n_test=16", "data.augment=1", "data.batch_size=16", "model.d_model=16", "model.d_ff=32",
        "model.segments=2", "trainer.max_minutes=null", "trainer.max_steps=8", "trainer.val_every_n_steps=4",
        "trainer.checkpoint_every_n_steps=4", "logger=csv", f"cache_dir={tmp_path / 'cache'}", run_dir=run,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    train = json.loads((run / "train.json").read_text())
    assert metrics["test/examples"] == 16 and 0.0 <= metrics["test/exact_match"] <= 1.0
    assert train["steps"] == 8 and train["parameters"] == metrics["parameters"]
    assert (run / "model" / "model.safetensors").exists()
