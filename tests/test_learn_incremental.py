"""The loop's incremental mode (`update: incremental`): a round continues the deployed adapter
with a re-warmed rate on its new examples plus a seeded rehearsal share of earlier ones, and a
candidate worse than the deployed version on earlier rounds' examples is rejected, with the
reason in the audit log, while the deployed version stays. On the tiny causal LM with a real
SQLite store and the Git + DVC + GTO registry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURES, run_in_process
from forge import registry
from forge.config.errors import ConfigError
from forge.errors import ForgeError
from forge.learn.config import load, start_from
from forge.learn.export import rehearsal_mix
from forge.learn.learner import Learner
from forge.learn.loop import Loop
from forge.runs.listing import describe
from test_learn_loop import free_port, record, tiny_args
from test_models_registry import make_run, repo  # noqa: F401  (the Git+DVC project fixture)


@pytest.mark.parametrize("overrides, message", [
    (["update=online"], "learn.update=online: choose one of retrain, incremental"),
    (["incremental.rehearsal=1.5"], "learn.incremental.rehearsal=1.5: must be in [0, 1] (a share of the round's new examples)"),
    (["incremental.rehearsal=-0.1"], "learn.incremental.rehearsal=-0.1: must be in [0, 1] (a share of the round's new examples)"),
    (["update=incremental", "train.start_from=base"], "learn.train.start_from=base: update=incremental continues the deployed adapter; "
                                                      "set train.start_from=deployed or leave it null, or use update=retrain"),
    (["incremental.rewarm_steps=-1"], "learn.incremental.rewarm_steps=-1: must be 0 or more"),
])
def test_bad_incremental_settings_are_one_line(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, overrides)
    assert str(e.value) == message


def test_update_decides_where_a_round_starts_unless_start_from_says(tmp_path: Path) -> None:
    assert start_from(load(tmp_path)) == "base"
    assert start_from(load(tmp_path, ["update=incremental"])) == "deployed"
    assert start_from(load(tmp_path, ["update=incremental", "train.start_from=deployed"])) == "deployed"
    assert start_from(load(tmp_path, ["train.start_from=deployed"])) == "deployed"
    cfg = load(tmp_path, ["update=incremental"]).incremental
    assert (cfg.rehearsal, cfg.seed, cfg.rewarm_steps, cfg.earlier_examples) == (0.05, 0, None, 256)


def test_the_rehearsal_share_is_drawn_seeded_from_earlier_examples_only() -> None:
    new = [{"id": f"n{i}"} for i in range(40)]
    earlier = [{"id": f"e{i}"} for i in range(100)] + new[:3]  # examples the round holds already are not drawn again
    mix = rehearsal_mix(new, earlier, 0.05, seed=0)
    assert (len(mix.records), len(mix.drawn), mix.pool) == (42, 2, 100), "5% of 40 new examples: 2 earlier ones"
    assert mix.records[:40] == new and all(i.startswith("e") for i in mix.drawn)
    assert rehearsal_mix(new, earlier[::-1], 0.05, seed=0).drawn == mix.drawn, "the pool's order does not matter"
    assert rehearsal_mix(new, earlier, 0.05, seed=1).drawn != mix.drawn
    assert len(rehearsal_mix(new, earlier, 0.25, seed=0).drawn) == 10
    assert rehearsal_mix(new, earlier, 0.0, seed=0).records == new
    assert len(rehearsal_mix(new, earlier[:5], 0.5, seed=0).drawn) == 5, "at most the whole pool"


def test_a_deployed_version_without_an_adapter_cannot_be_continued(repo: Path) -> None:  # noqa: F811
    registry.register(make_run(repo, "no-adapter", 0.5), "agent")
    registry.deploy("agent@v0.0.1", "prod", repo)
    with Learner(repo, update="incremental", export={"min_runs": 4, "min_reward": 1.0}, train={"min_examples": 4}) as learner:
        record(learner, 4, passed=4)
        with pytest.raises(ForgeError, match=r"^learn train: update=incremental, but agent@v0.0.1 has no adapter to continue; export "
                                             r"adapters \(export.outputs with adapter\) or use update=retrain with train.start_from=base$"):
            learner.step()


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_an_incremental_round_that_forgets_is_rejected_and_the_deployed_version_stays(repo: Path, tiny_lm: Path,  # noqa: F811
                                                                                     cache: Path) -> None:
    import torch

    first = repo / "outputs" / "first"
    sources = f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]"
    run_in_process(*tiny_args(tiny_lm, cache), sources, run_dir=first)
    registry.register(first, "agent")
    registry.deploy("agent@v0.0.1", "prod", repo)
    learner = Learner(repo, update="incremental", incremental={"rehearsal": 0.25, "seed": 3, "rewarm_steps": 2},
                      reward_weights={"tests_passed": 1.0}, export={"min_runs": 12, "min_reward": 0.75},
                      train={"recipe": None, "min_examples": 20, "overrides": tiny_args(tiny_lm, cache)},
                      gate={"enabled": False}, watch={"enabled": False}, deploy={"model": "agent", "port": free_port()})
    for i in range(12):  # what v0.0.1 was trained on: an earlier round's export
        learner.record_run(f"earlier {i}", "coder", "agent", response=f"def g{i}(x):\n    return x * {i}\n", version="v0.0.1",
                           id=f"e{i:02d}", signals={"tests_passed": 4, "tests_total": 4})
    assert [line.split(":")[0] for line in learner.step()] == ["reconcile done", "export done"], "12 examples: below min_examples"
    loop = Loop(learner.cfg, learner.store, repo)
    state = loop.state()
    state["used_exports"] = [e.id for e in learner.store.exports()]
    learner.store.put_state("loop", json.dumps(state).encode())
    learner.store.mark_used(state["used_exports"], "v0.0.1")

    for i in range(20):
        learner.record_run(f"new {i}", "coder", "agent", response=f"def f{i}(x):\n    return x + {i}\n", version="v0.0.1",
                           id=f"n{i:02d}", signals={"tests_passed": 4, "tests_total": 4})
    taken = learner.step()
    assert taken[0].startswith("export done: 20 runs")
    assert taken[1].startswith("train started: run ")
    assert "; rehearsing 5 of 12 earlier examples with 20 new in learn/exports/round-" in taken[1]
    training = loop.state()["training"]
    rehearsal = training["rehearsal"]
    assert rehearsal["ids"] == ["e00", "e02", "e06", "e01", "e08"], "25% of 20 new examples, drawn with seed 3"
    assert ids(repo / rehearsal["file"]) == [f"n{i:02d}" for i in range(20)] + rehearsal["ids"]
    assert (repo / (rehearsal["file"] + ".dvc")).is_file(), "the round's training file is DVC-tracked like an export"
    assert learner.store.actions()[0].details["rehearsal"] == rehearsal

    run = Path(training["run"])
    deadline = time.monotonic() + 300
    while describe(run)["status"] in ("starting", "running") and time.monotonic() < deadline:
        time.sleep(1)
    assert describe(run)["status"] == "finished", (run / "console.log").read_text()[-2000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["peft"]["init_from"] == str(repo / ".forge" / "serve" / "agent" / "v0.0.1" / "adapter"), "continued from v0.0.1"
    assert config["optim"]["warmup_steps"] == 2, "the rate warms up again"
    assert [(s["format"], s["path"]) for s in config["data"]["sources"]] == [("agent_runs", str(repo / rehearsal["file"]))]

    for ckpt in (run / "checkpoints").glob("*.ckpt"):  # a deliberately corrupted adapter
        state_dict = torch.load(ckpt, map_location="cpu", weights_only=True)
        generator = torch.Generator().manual_seed(0)
        for key, value in state_dict["state_dict"].items():
            if "lora_" in key:
                value.add_(torch.randn(value.shape, generator=generator) * 2.0)
        torch.save(state_dict, ckpt)

    taken = learner.step()
    assert taken[0] == f"register done: run {run.name} is agent@v0.0.2"
    assert taken[1].startswith("gate rejected: do not deploy: agent@v0.0.2 is worse than agent@v0.0.1 on the earlier tasks (loss ")
    assert " on 12 earlier examples, p=0.000488, minimum detectable effect " in taken[1]
    assert taken[1].endswith("); agent@v0.0.1 stays in prod")
    logged = learner.store.actions(action="gate")[0]
    assert (logged.status, logged.details["comparison"]["verdict"]) == ("rejected", "A better")
    assert registry.current(registry.Repo(repo), "agent", "prod") == "v0.0.1"
    assert loop.state()["deployed"]["version"] == "v0.0.1" and loop.state()["candidate"] is None
    assert learner.step() == [], "the same examples are not trained on again"
    learner.close()
