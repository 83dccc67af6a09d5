"""`forge runs`: a run started detached is listed and watched, a stop saves a checkpoint from
which resume continues exactly, a SIGKILLed run reads "died", and `ls` filters and pages."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from conftest import run_forge, run_in_process, tiny
from forge.run_state import read_state
from forge.runs.launch import exit_code, start
from forge.runs.listing import describe, find_runs, select

STEPS = 600
ARGS = ["data.n_train=2048", "data.batch_size=64", "model.d_model=64", "model.d_ff=128", f"trainer.max_steps={STEPS}",
        "trainer.checkpoint_every_n_steps=50", "trainer.val_every_n_steps=100", "trainer.log_every_n_steps=10",
        "trainer.deterministic=true", "logger=csv"]


def wait(run: Path, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = describe(run)
        if until(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"{run}: still {describe(run)}")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_start_returns_at_once_and_two_starts_never_share_a_directory(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    began = time.monotonic()
    first, second = start([*tiny(cache)]), start([*tiny(cache)])
    assert time.monotonic() - began < 1.0 and first != second
    for run in (first, second):
        info = wait(run, lambda i: i["status"] == "finished" and i["exit_code"] is not None)
        assert info["exit_code"] == 0 and info["recipe"] == "quickstart" and "test/exact_match" in info["metrics"]
    assert sorted(find_runs([Path("outputs")])) == sorted([first, second])
    status = run_forge("runs", "status", first.name, cwd=tmp_path).stdout.splitlines()
    assert status[0] == f"{first}: finished (exit code 0)" and status[1] == "  step       19 / 20"
    curves = json.loads(run_forge("runs", "metrics", first.name, "train/loss", "--json", cwd=tmp_path).stdout)
    assert list(curves) == ["train/loss"] and curves["train/loss"]["summary"]["count"] == 4


def test_cli_start_validates_before_it_starts_anything(tmp_path: Path) -> None:
    proc = run_forge("runs", "start", "+recipe=quickstart", "data.batch_size=0", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "forge: error: data.batch_size=0: must be >= 1 (command line: 'data.batch_size=0')."]
    assert not (tmp_path / "outputs").exists()


def test_stop_saves_a_checkpoint_and_resume_continues_exactly(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [*tiny(cache), *ARGS]
    run_in_process(*args, run_dir=tmp_path / "straight")
    monkeypatch.chdir(tmp_path)
    run = start(args)
    wait(run, lambda i: i["status"] == "running" and i["stage"] == "train" and (run / "checkpoints" / "last.ckpt").exists())
    proc = run_forge("runs", "stop", run.name, cwd=tmp_path)
    assert proc.stdout.strip() == f"{Path('outputs/runs') / run.name}: stopped (exit code 143)"
    state = read_state(run)
    assert state["status"] == "stopped" and state["error"] == "stopped by SIGTERM" and exit_code(run) == 143
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped_at < STEPS, "a checkpoint was saved where it stopped"
    run_in_process(*args, f"resume={run}", run_dir=run)
    straight, resumed = _weights(tmp_path / "straight"), _weights(run)
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_killed_run_reads_died_with_its_exit_code(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = start([*tiny(cache), *ARGS])
    info = wait(run, lambda i: i["status"] == "running" and i["stage"] == "train")
    os.kill(info["pid"], signal.SIGKILL)
    info = wait(run, lambda i: i["exit_code"] is not None, timeout=30)
    assert info["status"] == "died" and info["exit_code"] == 137


def fake_run(root: Path, name: str, status: str, started: str, recipe: str, metrics: dict) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": status, "stages_done": ["prepare", "train"], "stage": None, "started": started,
                                              "ended": started, "pid": 1, "host": "h", "error": None}))
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "command.txt").write_text(f"forge +recipe={recipe} seed=0\n")
    return run


def test_ls_filters_sorts_and_pages(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    fake_run(root, "a", "finished", "2026-11-28T10:00:00+00:00", "quickstart", {"test/exact_match": 0.95})
    fake_run(root, "b", "failed", "2026-11-29T10:00:00+00:00", "quickstart", {})
    fake_run(root / "sweep", "0", "finished", "2026-11-30T09:00:00+00:00", "coder_lora", {"test/exact_match": 0.5})
    fake_run(root / "sweep", "1", "finished", "2026-11-30T10:00:00+00:00", "coder_lora", {"test/exact_match": 0.99})
    (root / "a" / "checkpoints" / "x").mkdir(parents=True)  # a run's own folders are not searched
    rows = [describe(r) for r in find_runs([root])]
    names = lambda rs: [Path(r["run"]).relative_to(root).as_posix() for r in rs]  # noqa: E731
    assert names(select(rows)) == ["sweep/1", "sweep/0", "b", "a"], "newest first"
    assert names(select(rows, status="finished", recipe="coder_lora")) == ["sweep/1", "sweep/0"]
    assert names(select(rows, where=["test/exact_match>0.9"])) == ["sweep/1", "a"]
    assert names(select(rows, sort_by="test/exact_match")) == ["sweep/1", "a", "sweep/0", "b"]
    from forge.runs.listing import since

    assert names(select(rows, after=since("2026-11-30"))) == ["sweep/1", "sweep/0"]
    proc = run_forge("runs", "ls", "--root", str(root), "--json", "--limit", "2", "--offset", "1", cwd=tmp_path)
    assert names(json.loads(proc.stdout)) == ["sweep/0", "b"]
    bad = run_forge("runs", "ls", "--root", str(root), "--where", "exact_match=>1", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "forge: error: runs ls --where 'exact_match=>1': write METRIC OP VALUE, e.g. 'test/exact_match>0.9' (OP: >= <= == != > <)")
    missing = run_forge("runs", "status", "nope", "--root", str(root), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_a_run_submitted_through_submitit_runs_and_records_its_exit_code(tmp_path: Path, cache: Path) -> None:
    """submitit's local executor runs the job as a SLURM node would (`--launcher slurm` on a cluster)."""
    proc = run_forge("runs", "start", "--launcher", "local", *tiny(cache), cwd=tmp_path)
    run = tmp_path / "outputs" / "runs" / proc.stdout.splitlines()[1]
    info = wait(run, lambda i: i["exit_code"] is not None, timeout=180)
    assert info["status"] == "finished" and info["exit_code"] == 0 and json.loads((run / "launch.json").read_text())["job_id"]
