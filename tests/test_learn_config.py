"""The loop's settings: defaults, the project's learn.yaml, command-line overrides, and settings
that would misbehave later refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config.errors import ConfigError
from forge.learn.config import load


def test_layers_in_order(tmp_path: Path) -> None:
    assert load(tmp_path).export.min_runs == 50
    (tmp_path / "learn.yaml").write_text("export:\n  min_runs: 7\ntrain:\n  recipe: mine\n")
    cfg = load(tmp_path, ["export.min_runs=9"])
    assert (cfg.export.min_runs, cfg.train.recipe, cfg.store.url) == (9, "mine", "sqlite:///learn/experience.db")


@pytest.mark.parametrize("override, message", [
    ("reward_weights.speed=1", "learn.reward_weights.speed: not a signal an agent run reports; use compiled, tests_passed, errors, "
                               "human_rating, latency, cost"),
    ("export.min_reward=1.5", "learn.export.min_reward=1.5: no run can reach it (the highest reward these weights give is 1); "
                              "lower it or raise learn.reward_weights"),
    ("export.min_runs=0", "learn.export.min_runs=0: must be at least 1"),
    ("watch.previous_share=1.5", "learn.watch.previous_share=1.5: must be in [0, 1]"),
    ("gate.alpha=0", "learn.gate.alpha=0: a significance level in (0, 1), e.g. 0.05"),
    ("watch.detector=kswin", "learn.watch.detector=kswin: choose one of page_hinkley, adwin"),
    ("reward_weights.errors=-0.1", "learn.reward_weights: the loop learns from a reward in [0, 1]: weigh only compiled and tests_passed, "
                                   "with weights of 0 or more summing to at most 1 (e.g. tests_passed: 0.8, compiled: 0.2); other "
                                   "signals are recorded as they are"),
    ("watch.delta=-1", "learn.watch.delta=-1: must be positive (below 1 for adwin), or null for the detector's default"),
    ("train.start_from=scratch", "learn.train.start_from=scratch: choose one of base, deployed"),
    ("retrain.reward_drop=2", "learn.retrain.reward_drop=2: a fraction in (0, 1), e.g. 0.1 for a 10% fall"),
    ("export.min_runs=many", "learn.export.min_runs: Value 'many' of type 'str' could not be converted to Integer (in the command line)"),
    ("exprot.min_runs=3", "learn.exprot: Key 'exprot' not in 'LearnCfg' (in the command line)"),
])
def test_bad_settings_are_one_line(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, [override])
    assert str(e.value).split("; see `forge learn --help`")[0] == message


def test_a_router_cap_no_model_fits_under(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^learn.router.cost_cap=0.5: below the cheapest model's cost \(1\); no model fits under it$"):
        load(tmp_path, values={"router": {"cost_cap": 0.5, "models": [{"name": "big", "cost": 2.0}, {"name": "small", "cost": 1.0}]}})
