"""Prioritized replay by reward surprise (data.replay.priority=reward_surprise): agent-run rewards
reach the prepared rows (a packed row: its runs' mean), priorities are |r - mean r| + eps fixed
for the run, and settings without rewards are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, run_forge, run_in_process, tiny_tokenizer
from forge.config.compose import compose
from forge.config.errors import ConfigError
from forge.config.validate import validate
from forge.data.samplers import PrioritizedBatchSampler, reward_surprise
from forge.data.sft import SFT
from forge.data.sft.pack import Packer
from forge.errors import ForgeError

WEIGHTS = {"compiled": 1.0, "tests_passed": 2.0, "errors": -0.5, "human_rating": 0.25}
FIXTURE_REWARDS = [4.25, 1.5, -1.0]  # the fixture's three valid runs (the fourth is quarantined)


def prepared(tmp_path: Path, sources: list[dict], packing: bool, seq_len: int = 512) -> tuple[dict, dict]:
    folder = tmp_path / "data"
    folder.mkdir()
    meta = SFT(sources, seq_len, packing, 0.0, 0.0, 0, tiny_tokenizer()).write(folder)
    return load_file(str(folder / "train.safetensors")), meta


def agent_runs(path: Path = FIXTURES / "agent_runs.jsonl") -> list[dict]:
    return [{"format": "agent_runs", "path": str(path), "reward_weights": WEIGHTS}]


def test_unpacked_rows_carry_their_runs_rewards(tmp_path: Path) -> None:
    train, meta = prepared(tmp_path, agent_runs(), packing=False)
    assert train["reward"].dtype == torch.float32 and train["reward"].shape == (3,)
    assert train["reward"].tolist() == FIXTURE_REWARDS and meta["row_rewards"] is True


def test_a_packed_rows_reward_is_the_mean_of_its_runs(tmp_path: Path) -> None:
    train, _ = prepared(tmp_path, agent_runs(), packing=True)
    assert int(train["segments"].max()) == 3, "the three runs share one row"
    assert torch.equal(train["reward"], torch.tensor([sum(FIXTURE_REWARDS) / 3], dtype=torch.float32))


def test_packer_rewards_by_row() -> None:
    packer = Packer(seq_len=10, pad_id=0, packing=True)
    rows = [*packer.add([1] * 6, [True] * 6, 1.0), *packer.add([2] * 3, [True] * 3, 0.5), *packer.add([3] * 4, [True] * 4, 0.0)]
    rows += list(packer.flush())
    assert [(r[2].max(), r[3]) for r in rows] == [(2, 0.75), (1, 0.0)]
    mixed = Packer(seq_len=10, pad_id=0, packing=True)
    assert [r[3] for r in [*mixed.add([1] * 3, [True] * 3, 1.0), *mixed.add([2] * 3, [True] * 3), *mixed.flush()]] == [None]


def test_data_without_rewards_has_no_reward_column(tmp_path: Path) -> None:
    train, meta = prepared(tmp_path, [{"format": "prompt_completion", "path": str(FIXTURES / "prompt_completion.jsonl")}], True)
    assert set(train) == {"inputs", "labels", "segments"} and meta["row_rewards"] is False


def test_the_column_is_part_of_the_cache_key() -> None:
    key = SFT(agent_runs(), 512, True, 0.0, 0.0, 0, tiny_tokenizer()).content_key()
    assert key["rows"] == 2, "data prepared before the reward column is not reused"


def surprise_sampler(rewards: list[float], alpha: float, beta: float = 0.5, eps: float = 0.5) -> PrioritizedBatchSampler:
    data = SimpleNamespace(extras={"reward": torch.tensor(rewards, dtype=torch.float32)})
    fixed = reward_surprise(data, eps)
    return PrioritizedBatchSampler(4, 2, seed=0, total_draws=10, alpha=alpha, beta=beta, eps=eps, fixed=fixed)


def test_probabilities_follow_surprise_to_the_alpha_and_losses_leave_them() -> None:
    s = surprise_sampler([0.0, 1.0, 1.0, 2.0], alpha=2.0)  # mean 1: surprises 1.5, 0.5, 0.5, 1.5
    assert s.priorities.tolist() == [1.5, 0.5, 0.5, 1.5]
    assert torch.allclose(s.probabilities(), torch.tensor([2.25, 0.25, 0.25, 2.25], dtype=torch.float64) / 5)
    rows = torch.tensor([0, 3])
    assert torch.allclose(s.weights(s.probabilities(), rows), torch.tensor([1 / 3, 1 / 3])), "(N P / N P_min)^-0.5 = 9^-0.5"
    s.update(torch.tensor([0, 1, 2, 3]), torch.tensor([9.0, 0.0, 0.0, 9.0]))
    assert s.priorities.tolist() == [1.5, 0.5, 0.5, 1.5]
    resumed = surprise_sampler([0.0, 1.0, 1.0, 2.0], alpha=2.0)
    draws = iter(s)
    next(draws)
    resumed.load_state_dict(s.state_dict())
    assert [d.rows for d in resumed] == [d.rows for d in draws], "resumed mid-epoch: the same draws"


def test_training_rows_without_rewards_are_refused_in_one_line() -> None:
    with pytest.raises(ForgeError) as e:
        reward_surprise(SimpleNamespace(extras={}), 0.01)
    assert str(e.value).startswith("data.replay.priority=reward_surprise: the prepared training rows have no reward")
    assert "\n" not in str(e.value)


def test_a_causal_lm_replays_agent_runs_by_surprise(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    with open(runs, "w") as f:
        for i in range(24):
            signals = {"tests_passed": i % 5, "tests_total": 4, "compiled": i % 3 != 0}
            f.write(json.dumps({"task": f"Return {i}.", "response": f"def f():\n    return {i}\n", "signals": signals}) + "\n")
    run = tmp_path / "run"
    run_in_process(
        "model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8", "data=sft_jsonl",
        f"data.sources=[{{format: agent_runs, path: {runs}, reward_weights: {{tests_passed: 1.0, compiled: 0.5}}}}]",
        "data.seq_len=64", "data.packing=false", "data.batch_size=2", "data.val_fraction=0.25", "data.test_fraction=0.25",
        "data.sampler=prioritized", "data.replay.priority=reward_surprise", "eval=perplexity", "eval.batch_size=4",
        "trainer.max_steps=4", "trainer.val_every_n_steps=4", "trainer.checkpoint_every_n_steps=4", "logger=none",
        "export=none", f"cache_dir={cache}", run_dir=run,
    )
    rewards = load_file(str(run / "data" / "train.safetensors"))["reward"].double()
    assert len(set(rewards.tolist())) > 2, "the runs' rewards differ"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (replay,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert replay["draws"] == 4 and bool(replay["seen"].all())
    assert torch.equal(replay["priorities"], (rewards - rewards.mean()).abs() + 0.01), "trained on, still the surprises"


@pytest.mark.parametrize("overrides, message", [
    (["data.replay.priority=reward_surprise"],
     "data.replay.priority=reward_surprise: it sets prioritized replay's priorities, and data.sampler=uniform"),
    (["data.sampler=prioritized", "data.replay.priority=reward_surprise"],
     "data.replay.priority=reward_surprise: only agent_runs records carry a reward, and data._target_=forge.data.addition.Addition"),
    (["+recipe=coder_lora", "data.sampler=prioritized", "data.replay.priority=reward_surprise"],
     "data.replay.priority=reward_surprise: only agent_runs records carry a reward, and its sources are python_code"),
    (["data.sampler=prioritized", "data.replay.priority=surprise"], "data.replay.priority=surprise: not a valid choice"),
])
def test_bad_surprise_settings_are_refused_naming_the_key(overrides: list[str], message: str) -> None:
    cfg, origin = compose(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg, origin.where)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_agent_runs_pass_validation_and_the_cli_refuses_other_data_with_exit_2(tmp_path: Path) -> None:
    ok = ["+recipe=coder_lora", "data.sources.0.format=agent_runs", "data.sampler=prioritized", "data.replay.priority=reward_surprise"]
    cfg, origin = compose(ok)
    assert validate(cfg, origin.where).data.replay.priority == "reward_surprise"
    proc = run_forge("validate", "data.sampler=prioritized", "data.replay.priority=reward_surprise", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("forge: error: data.replay.priority=reward_surprise: only agent_runs records carry a reward")
