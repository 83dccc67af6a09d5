"""A SIGKILL at each point of the loop's automated actions (export, train, deploy, rollback)
leaves the store, the registry and the served model consistent, and the next pass finishes or
undoes the action."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from forge import registry, serving
from forge.learn.learner import Learner
from forge.learn.loop import STATE
from test_learn_loop import free_port, record, tiny_args
from test_models_registry import make_run, repo  # noqa: F401  (the Git+DVC project fixture)
from test_serving import parrot

KILL = """
import json, os, signal, sys
from pathlib import Path
from forge import registry, serving
from forge.learn import loop, store
from forge.learn.learner import Learner

point, settings = sys.argv[1], json.loads(sys.argv[2])
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
def then_die(real):
    def call(*args, **kwargs):
        real(*args, **kwargs)
        die()
    return call
where, name, how = {
    "export": (store.Store, "mark_exported", die),
    "train-before-start": (loop.Loop, "_start_run", die),
    "train-after-start": (loop.Loop, "_start_run", then_die),
    "deploy-before-tag": (registry, "deploy", die),
    "deploy-after-tag": (loop.Loop, "_deployed", die),
    "rollback-before-tag": (registry, "rollback", die),
    "rollback-after-tag": (serving, "shutdown", die),
}[point]
setattr(where, name, how(getattr(where, name)) if how is then_die else how)
Learner(Path("."), **settings).step()
"""


def killed_step(project: Path, point: str, settings: dict) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(Path(__file__).resolve().parents[i]) for i in (1, 0))}
    done = subprocess.run([sys.executable, "-c", KILL, point, json.dumps(settings)], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def test_an_export_killed_before_the_store_commit_is_redone_once(repo: Path) -> None:  # noqa: F811
    settings = {"export": {"min_runs": 5, "min_reward": 1.0}, "train": {"enabled": False}}
    with Learner(repo, **settings) as learner:
        record(learner, 5, passed=4)
    killed_step(repo, "export", settings)
    with Learner(repo, **settings) as learner:
        assert learner.store.exports() == [] and learner.store.count(exported=True) == 0
        [orphan] = (repo / "learn" / "exports").glob("export-*.jsonl")
        [line] = learner.step()
        assert line.startswith(f"export done: 5 runs with reward >= 1 to learn/exports/{orphan.name}")
        assert [Path(e.path).name for e in learner.store.exports()] == [orphan.name] and learner.store.count(exported=True) == 5
        assert list((repo / "learn" / "exports").glob("export-*.jsonl")) == [orphan]


@pytest.mark.parametrize("point", ["train-before-start", "train-after-start"])
def test_a_train_start_killed_is_adopted_or_started_again(repo: Path, tiny_lm: Path, cache: Path, point: str) -> None:  # noqa: F811
    settings = {"export": {"min_runs": 20, "min_reward": 1.0}, "deploy": {"model": "agent"},
                "train": {"recipe": None, "min_examples": 20, "overrides": [*tiny_args(tiny_lm, cache), "trainer.max_steps=1"]}}
    with Learner(repo, **settings) as learner:
        record(learner, 24, passed=4)
        learner.cfg.train.enabled = False
        assert learner.step()[0].startswith("export done")
    killed_step(repo, point, settings)
    runs = repo / "outputs" / "runs"
    with Learner(repo, **settings) as learner:
        state = json.loads(learner.store.get_state(STATE))
        assert state["training"]["run"] is None, "the intent was recorded before the start"
        lines = learner.step()
        if point == "train-before-start":
            assert lines == ["train undone: a start was interrupted before its run began; the next pass starts it again"]
            assert not runs.exists()
            lines = learner.step()
            assert lines[0].startswith("train started: run ") and len(list(runs.iterdir())) == 1
        else:
            [run] = runs.iterdir()
            assert lines == [f"train started: run {run.name} (its start was interrupted after the run began)"]
        assert json.loads(learner.store.get_state(STATE))["training"]["run"] == str(next(runs.iterdir()))
        subprocess.run([sys.executable, "-m", "forge", "runs", "stop", "--force", str(next(runs.iterdir()))], cwd=repo,
                       capture_output=True)


@pytest.fixture
def deployed(repo: Path, tiny_lm: Path) -> Path:  # noqa: F811
    """agent@v0.0.1 (says 'in') deployed and served, agent@v0.0.2 (says 'None') registered."""
    for word in ("in", "None"):
        run = make_run(repo, f"run-{word}", 0.5, model=False)
        parrot(tiny_lm, word, run / "model" / "merged")
        registry.register(run, "agent")
    yield repo
    for stage in ("prod", "prod-previous"):
        serving.shutdown("agent", stage, repo)


def with_candidate(project: Path, settings: dict) -> None:
    """The loop's state as a finished training run leaves it: v0.0.2 the candidate, v0.0.1 deployed."""
    with Learner(project, **settings) as learner:
        assert learner.step()[0] == "reconcile done: agent v0.0.1 is in prod: the loop starts from it"
        state = json.loads(learner.store.get_state(STATE))
        state["candidate"] = {"version": "v0.0.2", "run": str(project / "outputs" / "run-None"), "exports": []}
        learner.store.put_state(STATE, json.dumps(state).encode())


@pytest.mark.parametrize("point", ["deploy-before-tag", "deploy-after-tag"])
def test_a_deploy_killed_is_finished_by_the_next_pass(deployed: Path, point: str) -> None:
    port = free_port()
    serving.deploy("agent@v0.0.1", "prod", port=port)
    settings = {"deploy": {"model": "agent", "port": port}, "gate": {"enabled": False}, "watch": {"previous_share": 0.0}}
    with_candidate(deployed, settings)
    killed_step(deployed, point, settings)
    r = registry.Repo(deployed)
    assert registry.current(r, "agent", "prod") == ("v0.0.1" if point == "deploy-before-tag" else "v0.0.2")
    with Learner(deployed, **settings) as learner:
        [line] = learner.step()
        assert line.startswith("deploy done: agent@v0.0.2 -> prod: ")
        if point == "deploy-after-tag":
            assert line.endswith("its deploy was made by a step that did not finish")
        assert registry.current(r, "agent", "prod") == "v0.0.2"
        assert serving.chat(f"http://127.0.0.1:{port}/v1", serving.PROBE, 1) == "None"
        assert [m["version"] for m in registry.history(r, "agent")] == ["v0.0.1", "v0.0.2"]
        assert learner.step() == []


@pytest.mark.parametrize("point", ["rollback-before-tag", "rollback-after-tag"])
def test_a_rollback_killed_is_finished_by_the_next_pass(deployed: Path, point: str) -> None:
    port = free_port()
    serving.deploy("agent@v0.0.1", "prod", port=port)
    settings = {"deploy": {"model": "agent", "port": port}, "gate": {"enabled": False}, "watch": {"min_runs": 12, "previous_share": 0.0}}
    with_candidate(deployed, settings)
    with Learner(deployed, **settings) as learner:
        assert learner.step()[0].startswith("deploy done: agent@v0.0.2")
        record(learner, 12, passed=1, version="v0.0.2")
        record(learner, 12, passed=4, version="v0.0.1")
    killed_step(deployed, point, settings)
    r = registry.Repo(deployed)
    assert registry.current(r, "agent", "prod") == ("v0.0.2" if point == "rollback-before-tag" else "v0.0.1")
    with Learner(deployed, **settings) as learner:
        [line] = learner.step()
        if point == "rollback-before-tag":
            assert line.startswith("rollback done: agent prod: v0.0.2 -> v0.0.1: ")
        else:
            assert line == "reconcile done: the registry has agent v0.0.1 in prod; the loop follows it"
        assert registry.current(r, "agent", "prod") == "v0.0.1"
        assert serving.chat(f"http://127.0.0.1:{port}/v1", serving.PROBE, 1) == "in"
        assert learner.step() == []
