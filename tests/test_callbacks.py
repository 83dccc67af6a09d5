"""The `callbacks` group: every entry is built from config, so a new callback is a class, its
schema and a YAML entry, with no edit to the training code."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_in_process, tiny

from forge.config.compose import compose
from forge.config.validate import validate
from forge.train.callbacks import StopAt, instantiate_callbacks
from forge.train.grokfast import GrokFast


def test_grokfast_and_stop_at_are_built_from_the_group() -> None:
    cfg, origin = compose(["+recipe=grokfast_modular", "optim/grokfast=ma", "optim.grokfast.window=7"])
    built = instantiate_callbacks(validate(cfg, origin.where).callbacks)
    assert [type(c) for c in built] == [GrokFast, StopAt]
    assert (built[0].filter, built[0].window) == ("ma", 7)
    assert built[1].targets == {"val/exact_match": 0.95}
    cfg, origin = compose(["+recipe=quickstart"])
    assert [type(c) for c in instantiate_callbacks(validate(cfg, origin.where).callbacks)] == [StopAt], "grokfast off, stop-at idle"


def test_a_callback_added_by_a_yaml_file_runs(tmp_path: Path, cache: Path) -> None:
    """A user's own config folder adds callbacks/stop_early.yaml; the run picks it up."""
    (tmp_path / "mine" / "callbacks").mkdir(parents=True)
    (tmp_path / "mine" / "callbacks" / "stop_early.yaml").write_text(
        "stop_early:\n  _target_: forge.train.callbacks.StopAt\n  targets: {val/loss: 1000.0}\n")
    run = tmp_path / "run"
    run_in_process(*tiny(cache), f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "callbacks=stop_early", run_dir=run)
    train = json.loads((run / "train.json").read_text())
    assert train["steps"] == 10 and train["steps_to/val/loss"] == 10, "stopped at the first validation (every 10 steps)"
