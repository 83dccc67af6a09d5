"""`forge models` register / ls / versions / deploy / rollback in a temporary Git+DVC repository,
on fake finished runs (what a run leaves behind; no training needed)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from forge import registry
from forge.cli.models import main
from forge.errors import ForgeError


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from dvc.repo import Repo

    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "Tester")
    git(root, "config", "user.email", "tester@example.com")
    Repo.init(str(root)).close()
    (root / ".gitignore").write_text("outputs/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    monkeypatch.chdir(root)
    return root


def make_run(root: Path, name: str, loss: float, status: str = "finished", model: bool = True, host: str = "") -> Path:
    run = root / "outputs" / name
    (run / "data").mkdir(parents=True)
    record = {"status": status, "stages_done": ["train"], "started": "2024-01-01T00:00:00+00:00"}
    if host:  # a run on another host is alive while its heartbeat is fresh
        record.update(host=host, heartbeat=datetime.now(timezone.utc).isoformat())
    (run / "run.json").write_text(json.dumps(record))
    (run / "metrics.json").write_text(json.dumps({"test/loss": loss, "test/exact_match": 1 - loss, "note": "text"}))
    (run / "config.yaml").write_text(yaml.safe_dump({"seed": 7, "optim": {"lr": loss}}))
    (run / "data" / "meta.json").write_text(json.dumps({"fingerprint": f"fp-{name}", "splits": {"train": {"examples": 10}},
                                                       "inputs": [{"path": f"runs/{name}.jsonl", "sha256": f"sha-{name}"}]}))
    if model:
        (run / "model" / "adapter").mkdir(parents=True)
        (run / "model" / "adapter" / "weights.bin").write_bytes(name.encode())
    return run


def test_register_twice_then_deploy_and_rollback(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = make_run(repo, "run-a", 0.5), make_run(repo, "run-b", 0.25)
    main(["register", str(a), "--name", "coder"])
    main(["register", str(b), "--name", "coder"])
    assert capsys.readouterr().out.splitlines()[::2] == ["coder@v0.0.1", "coder@v0.0.2"]
    assert git(repo, "tag", "--list", "coder@*").split() == ["coder@v0.0.1", "coder@v0.0.2"]

    # Each version is a commit holding the DVC pointer to its files and the run's provenance.
    meta = json.loads(git(repo, "show", "coder@v0.0.1:models/coder.json"))
    assert meta["metrics"] == {"test/loss": 0.5, "test/exact_match": 0.5}
    assert meta["config"] == {"seed": 7, "optim": {"lr": 0.5}}
    assert meta["data_fingerprint"] == "fp-run-a"
    assert meta["files"] == ["adapter/weights.bin"]
    assert meta["run"] == "outputs/run-a"
    assert git(repo, "show", "coder@v0.0.2:models/.gitignore").splitlines() == ["/coder"]
    assert "outs:" in git(repo, "show", "coder@v0.0.2:models/coder.dvc")
    assert (repo / "models" / "coder" / "adapter" / "weights.bin").read_bytes() == b"run-b"
    assert yaml.safe_load((repo / "artifacts.yaml").read_text())["coder"]["path"] == "models/coder"
    assert git(repo, "status", "--porcelain") == ""

    main(["deploy", "coder@v0.0.1", "--stage", "prod", "--no-serve"])
    main(["deploy", "coder@v0.0.2", "--stage", "prod", "--no-serve"])
    main(["rollback", "coder", "--stage", "prod", "--no-serve"])
    out = capsys.readouterr().out
    marked = "its training data is marked used: 1 file(s), 10 examples (forge models versions coder --json lists them under used_data)"
    assert out.splitlines() == ["coder v0.0.1 -> prod", marked,
                                "coder v0.0.2 -> prod (was v0.0.1; forge models rollback coder --stage prod undoes it)", marked,
                                "coder prod: v0.0.2 -> v0.0.1"]
    r = registry.Repo()
    assert registry.current(r, "coder", "prod") == "v0.0.1"
    assert [(m["stage"], m["version"], m["tag"]) for m in registry.history(r, "coder")] == [
        ("prod", "v0.0.1", "coder#prod#1"), ("prod", "v0.0.2", "coder#prod#2"), ("prod", "v0.0.1", "coder#prod#3")]

    main(["versions", "coder", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["stages"], v["metrics"]["test/loss"]) for v in shown["versions"]] == [("v0.0.1", ["prod"], 0.5), ("v0.0.2", [], 0.25)]
    assert [m["version"] for m in shown["history"]] == ["v0.0.1", "v0.0.2", "v0.0.1"]
    assert shown["used_data"] == [{"path": "runs/run-a.jsonl", "sha256": "sha-run-a", "version": "v0.0.1"},
                                  {"path": "runs/run-b.jsonl", "sha256": "sha-run-b", "version": "v0.0.2"}]

    main(["ls", "--json"])
    assert json.loads(capsys.readouterr().out) == [{"name": "coder", "latest": "v0.0.2", "versions": 2, "stages": {"prod": "v0.0.1"},
                                                    "metrics": {"test/exact_match": 0.75, "test/loss": 0.25}, "servers": []}]
    main(["versions", "coder"])
    table = capsys.readouterr().out
    assert "v0.0.1" in table and "prod" in table and "test/loss=0.5" in table and "coder#prod#3" in table


def test_rollback_to_a_named_version_and_deploy_of_the_current_one(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, loss in enumerate((0.5, 0.4, 0.3)):
        registry.register(make_run(repo, f"run-{i}", loss), "coder")
    registry.deploy("coder@v0.0.3", "prod")
    assert registry.deploy("coder@v0.0.3", "prod") == ("v0.0.3", "v0.0.3")  # no new tag
    assert registry.rollback("coder", "prod", to="v0.0.1") == ("v0.0.3", "v0.0.1")
    registry.deploy("coder@v0.0.2", "staging")
    r = registry.Repo()
    assert registry.assigned(r, "coder") == {"prod": "v0.0.1", "staging": "v0.0.2"}
    assert len(registry.history(r, "coder")) == 3


@pytest.mark.parametrize("argv, message", [
    (["register", "outputs/nope", "--name", "coder"], "models register: outputs/nope is not a forge run (no run.json); give a run directory (forge runs ls lists them)"),
    (["register", "nope", "--name", "coder"], "runs: no run 'nope' under outputs; `forge runs ls` lists them (--root DIR for runs elsewhere)"),
    (["register", "outputs/live", "--name", "coder"], "models register: run outputs/live is still running; register it once it has finished (forge runs status outputs/live)"),
    (["register", "outputs/failed", "--name", "coder"], "models register: run outputs/failed is failed, not finished; only a finished run's model can be registered"),
    (["register", "outputs/bare", "--name", "coder"], "models register: run outputs/bare has no exported model (outputs/bare/model is missing); run its export stage first (stage=export hydra.run.dir=outputs/bare)"),
    (["register", "outputs/good", "--name", "Bad Name"], "models: --name 'Bad Name' is not a model name: lower-case letters, digits, '-' and '_', starting and ending with a letter or digit"),
    (["deploy", "other@v0.0.1", "--stage", "prod"], "models: no model named 'other' (registered: coder); forge models register RUN --name other creates it"),
    (["deploy", "coder@v0.0.9", "--stage", "prod"], "models: coder has no version v0.0.9 (versions: v0.0.1); forge models versions coder lists them"),
    (["deploy", "coder", "--stage", "prod"], "models: 'coder' is not NAME@vX.Y.Z (e.g. coder@v0.0.1); forge models versions NAME lists them"),
    (["versions", "other"], "models: no model named 'other' (registered: coder); forge models register RUN --name other creates it"),
    (["rollback", "coder", "--stage", "prod"], "models rollback: coder is not deployed to 'prod'; deploy a version first (forge models deploy coder@vX.Y.Z --stage prod)"),
])
def test_bad_input_is_one_line(repo: Path, argv: list[str], message: str) -> None:
    registry.register(make_run(repo, "good", 0.5), "coder")
    make_run(repo, "live", 0.5, status="running", host="trainer-7")
    make_run(repo, "failed", 0.5, status="failed")
    make_run(repo, "bare", 0.5, model=False)
    with pytest.raises(ForgeError) as e:
        main(argv)
    assert str(e.value) == message


def test_a_running_record_without_its_process_is_died_not_running(repo: Path) -> None:
    # read_state checks the run's lock: "running" in run.json with no live process reads "died".
    with pytest.raises(ForgeError, match=r"^models register: run outputs/gone is died, not finished"):
        main(["register", str(make_run(repo, "gone", 0.5, status="running").relative_to(repo)), "--name", "coder"])


def test_rollback_without_an_earlier_assignment(repo: Path) -> None:
    registry.register(make_run(repo, "a", 0.5), "coder")
    registry.deploy("coder@v0.0.1", "prod")
    with pytest.raises(ForgeError) as e:
        main(["rollback", "coder", "--stage", "prod"])
    assert str(e.value) == "models rollback: 'prod' of coder has had no version before v0.0.1; give one with --to vX.Y.Z"
    with pytest.raises(ForgeError) as e:
        main(["rollback", "coder", "--to", "v0.0.1"])
    assert str(e.value) == "models rollback: coder v0.0.1 is already in 'prod'; give another version with --to"


def test_outside_git_or_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(ForgeError) as e:
        main(["ls"])
    assert str(e.value) == f"models: {tmp_path.resolve()} is not in a Git repository; run `git init && dvc init` there first"
    git(tmp_path, "init", "-q")
    with pytest.raises(ForgeError) as e:
        main(["ls"])
    assert str(e.value) == f"models: {tmp_path.resolve()} has no DVC repository; run `dvc init` in it (a new project: `git init && dvc init`)"


def test_a_commit_without_its_tag_is_no_version(repo: Path) -> None:
    """What a kill between the commit and the tag leaves: the next registration takes the number."""
    registry.register(make_run(repo, "a", 0.5), "coder")
    git(repo, "tag", "-d", "coder@v0.0.1")
    assert registry.names(registry.Repo()) == []
    assert registry.register(make_run(repo, "b", 0.4), "coder") == "coder@v0.0.1"
    assert json.loads(git(repo, "show", "coder@v0.0.1:models/coder.json"))["data_fingerprint"] == "fp-b"


KILL = """
import os, signal, sys
from pathlib import Path
from forge import registry
point = sys.argv[1]
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(registry, point, killed)
registry.register(Path("outputs/b"), "coder")
"""


@pytest.mark.parametrize("point", ["_store", "_annotate", "_gto"])
def test_a_register_killed_midway_leaves_no_version_and_the_next_one_completes(repo: Path, point: str) -> None:
    """SIGKILL before the files are stored, midway (copied and `dvc add`ed, not annotated nor
    committed), and after the commit (before the tag): the registry still holds v0.0.1 only, and
    registering again gives a whole v0.0.2."""
    registry.register(make_run(repo, "a", 0.5), "coder")
    make_run(repo, "b", 0.4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", KILL, point], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    r = registry.Repo()
    assert [v["version"] for v in registry.versions(r, "coder")] == ["v0.0.1"]
    assert registry.register(repo / "outputs" / "b", "coder") == "coder@v0.0.2"
    assert json.loads(git(repo, "show", "coder@v0.0.2:models/coder.json"))["data_fingerprint"] == "fp-b"
    assert json.loads(git(repo, "show", "coder@v0.0.1:models/coder.json"))["data_fingerprint"] == "fp-a"
    assert git(repo, "status", "--porcelain") == ""


MOVE = """
import os, signal, sys
from forge import registry
point, action = sys.argv[1], sys.argv[2]
real = registry._gto
def killed(*args, **kwargs):
    if point == "after":
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
registry._gto = killed
registry.deploy("coder@v0.0.2", "prod") if action == "deploy" else registry.rollback("coder", "prod")
"""


@pytest.mark.parametrize("action", ["deploy", "rollback"])
@pytest.mark.parametrize("point", ["before", "after"])
def test_a_stage_move_killed_is_before_or_after_never_between(repo: Path, point: str, action: str) -> None:
    """A move is one GTO tag: SIGKILL before it leaves the stage where it was, after it, moved,
    and either way the history reads in order and the next move works."""
    registry.register(make_run(repo, "a", 0.5), "coder")
    registry.register(make_run(repo, "b", 0.4), "coder")
    registry.deploy("coder@v0.0.1", "prod")
    if action == "rollback":
        registry.deploy("coder@v0.0.2", "prod")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", MOVE, point, action], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    r = registry.Repo()
    start = ["v0.0.1"] if action == "deploy" else ["v0.0.1", "v0.0.2"]
    moved = {"deploy": "v0.0.2", "rollback": "v0.0.1"}[action]
    assert [m["version"] for m in registry.history(r, "coder")] == start + ([moved] if point == "after" else [])
    assert registry.current(r, "coder", "prod") == (moved if point == "after" else start[-1])
    registry.deploy("coder@v0.0.1" if registry.current(r, "coder", "prod") == "v0.0.2" else "coder@v0.0.2", "prod")
    assert git(repo, "status", "--porcelain") == ""


def humaneval(run: Path, model: str, passed: list[bool]) -> None:
    (run / "humaneval").mkdir(exist_ok=True)
    (run / "humaneval" / f"{model}.completion.jsonl").write_text(
        "".join(json.dumps({"task_id": f"HumanEval/{i}", "sample": 0, "completion": "", "passed": p, "status": "x"}) + "\n"
                for i, p in enumerate(passed)))


def test_models_test_recommends_deploying_only_a_detectable_gain(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strong, weak = make_run(repo, "strong", 0.3), make_run(repo, "weak", 0.5)
    humaneval(strong, "base", [False] * 60 + [True] * 20)
    humaneval(strong, "fine-tuned", [True] * 60 + [True] * 20)  # 60 problems gained, none lost
    humaneval(weak, "fine-tuned", [False] * 59 + [True] * 21)
    main(["register", str(strong), "--name", "coder"])
    main(["register", str(weak), "--name", "coder"])
    capsys.readouterr()
    main(["test", "coder@v0.0.1", "--json"])
    first = json.loads(capsys.readouterr().out)
    assert first["deploy"] is True and first["against"] == "base" and first["test/loss"] == 0.3
    assert first["decided_by"] == "pass@1" and list(first["comparisons"]) == ["pass@1"]
    assert first["test/perplexity"] == pytest.approx(math.exp(0.3))
    assert first["recommendation"].startswith("deploy: coder@v0.0.1 beats base (pass@1 1.000 vs 0.250, p=")
    main(["test", "coder@v0.0.2", "--against", "coder@v0.0.1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "held-out loss: coder@v0.0.2 0.5, coder@v0.0.1 0.3"
    assert out[-1].startswith("do not deploy: coder@v0.0.2 is not shown better than coder@v0.0.1 (pass@1 0.263 vs 1.000")
    with pytest.raises(ForgeError, match="^models test: coder@v0.0.9 is not a registered version; forge models versions coder$"):
        main(["test", "coder@v0.0.9"])


def heldout(run: Path, model: str, losses: list[float]) -> None:
    (run / "heldout").mkdir(exist_ok=True)
    (run / "heldout" / f"{model}.test.jsonl").write_text("".join(json.dumps({"item": i, "loss": x, "tokens": 8}) + "\n"
                                                                 for i, x in enumerate(losses)))


def test_models_test_without_a_task_score_is_decided_by_the_heldout_losses(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(repo, "lm", 0.3)
    base = [2.0 + (i % 7) / 10 for i in range(60)]
    heldout(run, "base", base)
    heldout(run, "fine-tuned", [x - 0.5 + (i % 3) / 100 for i, x in enumerate(base)])
    main(["register", str(run), "--name", "lm"])
    capsys.readouterr()
    main(["test", "lm@v0.0.1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["decided_by"] == "test/loss" and out["deploy"] is True
    assert out["comparison"]["test"] == "paired permutation" and out["comparison"]["n"] == 60 and out["comparison"]["b_wins"] == 60
    assert out["recommendation"].startswith("deploy: lm@v0.0.1 beats base (held-out loss 1.8 vs 2.29, p=")
    main(["test", "lm@v0.0.1", "--margin", "0.6", "--json"])
    short = json.loads(capsys.readouterr().out)
    assert short["deploy"] is False and short["recommendation"].endswith("; the gain 0.49 is below the required margin 0.6)")
    (run / "heldout" / "base.test.jsonl").unlink()
    with pytest.raises(ForgeError, match=r"^models test: lm@v0.0.1 and base have no per-item outcomes in common"):
        main(["test", "lm@v0.0.1"])


def test_models_test_of_runs_without_a_test_split_is_decided_by_the_task(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(repo, "loop", 0.3)  # trained with data.test_fraction=0, as the learning loop does: no held-out rows
    heldout(run, "base", [])
    heldout(run, "fine-tuned", [])
    humaneval(run, "base", [False] * 40 + [True] * 10)
    humaneval(run, "fine-tuned", [True] * 50)
    main(["register", str(run), "--name", "loop"])
    capsys.readouterr()
    main(["test", "loop@v0.0.1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["decided_by"] == "pass@1" and list(out["comparisons"]) == ["pass@1"] and out["deploy"] is True
