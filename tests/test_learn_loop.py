"""The learning loop end to end on the tiny causal LM, with a real SQLite store, the real registry
(Git + DVC + GTO) and real servers: record -> export -> train -> register -> deploy, then a
simulated drop of the new version's reward -> rollback. And the parts on their own: the gate on
corrupted and better candidates, prompt and model choices that survive a restart."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURES, run_in_process
from forge import registry, serving
from forge.learn.learner import Learner
from forge.learn.loop import Loop
from forge.runs.listing import describe
from test_models_registry import heldout, make_run, repo  # noqa: F401  (the Git+DVC project fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_args(tiny_lm: Path, cache: Path) -> list[str]:
    return ["model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8", "data=sft_jsonl",
            "data.seq_len=64", "data.batch_size=2", "data.val_fraction=0.25", "data.test_fraction=0.25", "eval=perplexity",
            "eval.batch_size=4", "optim.lr=1e-2", "optim.warmup_steps=0", "trainer.max_steps=4", "trainer.val_every_n_steps=4",
            "export=hf", "export.outputs=[adapter,merged]", "logger=csv", f"cache_dir={cache}"]


def record(learner: Learner, n: int, passed: int, version: str | None = None, task: str = "task {i}") -> None:
    for i in range(n):
        learner.record_run(task.format(i=i), "coder", "agent", response=f"def f{i}(x):\n    return x + {i}\n", version=version,
                           signals={"compiled": True, "tests_passed": passed, "tests_total": 4})


def test_record_export_train_deploy_then_a_drop_rolls_back(repo: Path, tiny_lm: Path, cache: Path) -> None:  # noqa: F811
    first = repo / "outputs" / "first"
    sources = f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]"
    run_in_process(*tiny_args(tiny_lm, cache), sources, run_dir=first)
    registry.register(first, "agent")
    port = free_port()
    serving.deploy("agent@v0.0.1", "prod", port=port)
    learner = Learner(repo, reward_weights={"tests_passed": 1.0}, export={"min_runs": 20, "min_reward": 0.75},
                      train={"recipe": None, "min_examples": 20, "overrides": tiny_args(tiny_lm, cache), "start_from": "deployed"},
                      gate={"enabled": False},
                      watch={"min_runs": 12, "alpha": 0.01}, deploy={"model": "agent", "port": port})
    record(learner, 24, passed=4, version="v0.0.1")  # good runs
    record(learner, 5, passed=1, version="v0.0.1", task="weak {i}")  # reward 0.25: not training data
    learner.record_run("the held-out task", "coder", "agent", response="x", heldout=True, signals={"tests_passed": 4, "tests_total": 4})

    taken = learner.step()
    assert taken[0] == "reconcile done: agent v0.0.1 is in prod: the loop starts from it"
    assert taken[1].startswith("export done: 24 runs with reward >= 0.75 to learn/exports/export-")
    assert taken[2].startswith("train started: run ")
    training = Path(Loop(learner.cfg, learner.store, repo).state()["training"]["run"])
    deadline = time.monotonic() + 300
    while describe(training)["status"] in ("starting", "running") and time.monotonic() < deadline:
        time.sleep(1)
    assert describe(training)["status"] == "finished", (training / "console.log").read_text()[-2000:]
    config = yaml.safe_load((training / "config.yaml").read_text())
    assert config["peft"]["init_from"] == str(repo / ".forge" / "serve" / "agent" / "v0.0.1" / "adapter"), "continued from v0.0.1"

    taken = learner.step()
    assert taken[0] == f"register done: run {training.name} is agent@v0.0.2"
    assert taken[1].startswith("deploy done: agent@v0.0.2 -> prod: the gate is off")
    r = registry.Repo(repo)
    assert registry.current(r, "agent", "prod") == "v0.0.2"
    assert learner.store.count(used=True) == 24, "the deployed version's examples are marked used"
    ends = {e["version"]: e["url"] for e in Loop(learner.cfg, learner.store, repo).endpoints()}
    assert set(ends) == {"v0.0.1", "v0.0.2"}, "the previous version keeps serving the watched share"
    assert serving.chat(ends["v0.0.2"], serving.PROBE, 2) and serving.chat(ends["v0.0.1"], serving.PROBE, 2)

    record(learner, 12, passed=1, version="v0.0.2", task="after {i}")  # the new version does worse
    record(learner, 12, passed=4, version="v0.0.1", task="after {i}")
    taken = learner.step()
    assert taken[0].startswith("rollback done: agent prod: v0.0.2 -> v0.0.1: ")
    assert registry.current(r, "agent", "prod") == "v0.0.1"
    assert [m["version"] for m in registry.history(r, "agent")] == ["v0.0.1", "v0.0.2", "v0.0.1"]
    assert [e["version"] for e in Loop(learner.cfg, learner.store, repo).endpoints()] == ["v0.0.1"]
    assert [a.action for a in learner.store.actions()] == ["rollback", "deploy", "register", "train", "export", "reconcile"]
    assert learner.step() == [], "nothing left to do"
    serving.shutdown("agent", "prod", repo)
    learner.close()


def test_the_gate_rejects_corrupted_candidates_and_accepts_a_better_one(repo: Path) -> None:  # noqa: F811
    """Ten corrupted candidates (held-out losses raised by noise) are rejected against the
    deployed version, every one; a genuinely better one is accepted."""
    from forge.gate import test_version

    import numpy as np

    def scored(name: str, losses: list[float]) -> Path:
        run = make_run(repo, name, float(np.mean(losses)))
        (run / "data" / "meta.json").write_text(json.dumps({"fingerprint": "held-out rows"}))  # the same rows for all
        heldout(run, "fine-tuned", losses)
        return run

    base = [2.0 + (i % 9) / 10 for i in range(80)]
    registry.register(scored("deployed", base), "agent")
    rng = np.random.default_rng(0)
    for i in range(10):
        spec = registry.register(scored(f"corrupt-{i}", list(np.array(base) + np.abs(rng.normal(0.3, 0.2, len(base))))), "agent")
        assert test_version(registry.Repo(repo), spec, "agent@v0.0.1").deploy is False
    better = scored("better", list(np.array(base) - 0.2 + rng.normal(0, 0.05, len(base))))
    verdict = test_version(registry.Repo(repo), registry.register(better, "agent"), "agent@v0.0.1")
    assert verdict.deploy is True and verdict.decided_by == "test/loss"


def test_prompt_and_model_choices_survive_a_restart(tmp_path: Path) -> None:
    settings = {"prompts": {"coder": ["terse", "stepwise"]}, "router": {"models": [{"name": "small", "cost": 0.1},
                                                                                  {"name": "large", "cost": 1.0}], "cost_cap": 0.5}}
    first = Learner(tmp_path, **settings)
    picks = []
    for i in range(30):
        prompt, model = first.select_prompt("coder"), first.select_model().model
        good = prompt == "stepwise" and model == "large"
        first.record_run(f"t{i}", "coder", model, response="r", prompt_variant=prompt, cost={"small": 0.1, "large": 1.0}[model],
                         signals={"tests_passed": 4 if good else 1, "tests_total": 4})
        picks.append((prompt, model))
    first.close()
    again, twin = Learner(tmp_path, **settings), Learner(tmp_path / "twin", **settings)
    for i, (prompt, model) in enumerate(picks):  # a learner that never stopped, fed the same runs
        twin.select_prompt("coder"), twin.select_model()
        twin.record_run(f"t{i}", "coder", model, response="r", prompt_variant=prompt, cost={"small": 0.1, "large": 1.0}[model],
                        signals={"tests_passed": 4 if prompt == "stepwise" and model == "large" else 1, "tests_total": 4})
    assert [(again.select_prompt("coder"), again.select_model().model) for _ in range(20)] == \
           [(twin.select_prompt("coder"), twin.select_model().model) for _ in range(20)]
    assert sum(s.runs for s in again.stats()) == 30


def test_a_rejected_round_waits_for_new_examples_before_training_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []

    def start(self: Loop, sources: str) -> dict:  # a launched run that has not begun: no training needed here
        run = tmp_path / "outputs" / "runs" / f"r{len(started)}"
        run.mkdir(parents=True)
        (run / "launch.json").write_text(json.dumps({"argv": [], "started": "2026-01-01T00:00:00+00:00"}))
        started.append(sources)
        return {"run": run.name, "run_dir": str(run.relative_to(tmp_path))}

    monkeypatch.setattr(Loop, "_start_run", start)
    learner = Learner(tmp_path, export={"min_runs": 5, "min_reward": 1.0}, train={"min_examples": 5})
    record(learner, 5, passed=4)
    assert [line.split(":")[0] for line in learner.step()] == ["export done", "train started"]
    loop = Loop(learner.cfg, learner.store, tmp_path)
    state = loop.state()
    state["training"] = None  # its candidate was rejected by the gate
    learner.store.put_state("loop", json.dumps(state).encode())
    assert learner.step() == [] and len(started) == 1, "the same examples are not trained on again"
    record(learner, 5, passed=4, task="more {i}")
    assert [line.split(":")[0] for line in learner.step()] == ["export done", "train started"]
    assert len(started) == 2 and started[1].count("agent_runs") == 2, "the new round trains on both unused exports"


def test_select_model_before_the_first_pass_uses_the_registry_stage(repo: Path, tiny_lm: Path) -> None:  # noqa: F811
    from test_serving import parrot

    run = make_run(repo, "deployed", 0.5, model=False)
    parrot(tiny_lm, "in", run / "model" / "merged")
    registry.register(run, "agent")
    port = free_port()
    serving.deploy("agent@v0.0.1", "prod", port=port)
    try:
        with Learner(repo, deploy={"model": "agent", "port": port}) as learner:
            choice = learner.select_model()
            assert (choice.model, choice.version, choice.url) == ("agent", "v0.0.1", f"http://127.0.0.1:{port}/v1")
    finally:
        serving.shutdown("agent", "prod", repo)
