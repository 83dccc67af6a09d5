"""Every run knows its state: run.json says running, finished, failed or stopped, with the stages
done; a run killed with SIGKILL reads "died", not "running"; a resume reclaims the temporaries
that writes killed midway left behind."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from omegaconf import DictConfig

from conftest import forge_env, kill_at_first_checkpoint, tiny
from forge.config.compose import compose
from forge.config.validate import validate
from forge.errors import ForgeError
from forge.run_state import read_state
from forge.runner import run
from forge.stages import ORDER


def _cfg(*overrides: str) -> DictConfig:
    cfg, origin = compose(list(overrides))
    return validate(cfg, origin.where)


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    assert when.utcoffset() == timedelta(0), text
    return when


def test_a_finished_run_records_its_stages_times_pid_and_host(tmp_path: Path, cache: Path) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    run(_cfg(*tiny(cache)), tmp_path / "run")
    state = _record(tmp_path / "run")
    assert state["status"] == "finished" and state["error"] is None
    assert state["stages_done"] == list(ORDER) == ["prepare", "train", "compress", "evaluate", "export"]
    assert before <= _time(state["started"]) <= _time(state["ended"]) <= datetime.now(timezone.utc)
    assert state["pid"] == os.getpid() and state["host"] == socket.gethostname()
    assert state["objective"] == json.loads((tmp_path / "run" / "metrics.json").read_text())["test/exact_match"]
    assert read_state(tmp_path / "run") == state, "the lock is released: nothing to correct"
    assert not list((tmp_path / "run").rglob(".*.tmp"))


def test_stages_run_one_by_one_add_up_and_a_failing_stage_records_its_error(tmp_path: Path, cache: Path) -> None:
    run_dir = tmp_path / "pipeline"
    for stage in ("prepare", "compress"):  # as DVC runs them: one process each, no config record
        run(_cfg(*tiny(cache), f"stage={stage}"), run_dir, record=False)
    started = _record(run_dir)["started"]
    assert _record(run_dir)["stages_done"] == ["prepare", "compress"]
    with pytest.raises(ForgeError, match="no checkpoint in"):
        run(_cfg(*tiny(cache), "stage=evaluate"), run_dir, record=False)
    state = read_state(run_dir)
    assert state["status"] == "failed" and state["stage"] == "evaluate"
    assert state["error"] == f"no checkpoint in {run_dir / 'checkpoints'}: run stage=train first (or stage=all)"
    assert "Traceback" in state["traceback"] and "\n" not in state["error"]
    assert state["stages_done"] == ["prepare", "compress"] and state["started"] == started
    assert not (run_dir / "config.yaml").exists()


def test_a_killed_run_reads_died_and_its_resume_reclaims_partial_writes(tmp_path: Path, cache: Path, caplog) -> None:
    killed = tmp_path / "killed"
    kill_at_first_checkpoint(*tiny(cache), run_dir=killed, cwd=tmp_path)
    assert _record(killed)["status"] == "running", "a SIGKILL leaves no chance to record an end"
    assert read_state(killed)["status"] == "died"

    partial = [killed / "checkpoints" / ".last.ckpt.k3j9x_0a.tmp", killed / ".metrics.json.ab12cd34.tmp"]
    for p in partial:
        p.write_bytes(b"x" * 1000)
    kept = [killed / "checkpoints" / "notes.tmp", killed / ".last.ckpt.tmp", killed / "fold_0" / ".x.abcdefgh.tmp"]
    for p in kept:  # not forge's temporaries, or another run directory's (a fold reclaims its own)
        p.parent.mkdir(exist_ok=True)
        p.write_text("keep")
    (killed / "fold_0" / "run.json").write_text("{}")
    with caplog.at_level(logging.INFO, logger="forge"):
        run(_cfg(*tiny(cache), f"resume={killed}"), killed)
    assert not any(p.exists() for p in partial) and all(p.read_text() == "keep" for p in kept)
    assert "reclaimed 2,000 bytes in 2 partial file(s)" in caplog.text
    assert read_state(killed)["status"] == "finished"


def test_a_live_run_reads_running_holds_its_directory_and_sigterm_stops_it(tmp_path: Path, cache: Path) -> None:
    live = tmp_path / "live"
    args = [*tiny(cache), "trainer.max_steps=100000", f"hydra.run.dir={live}"]
    proc = subprocess.Popen([sys.executable, "-m", "forge", *args], cwd=tmp_path, env=forge_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and not (live / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.05)
        state = read_state(live)
        assert state["status"] == "running" and state["pid"] == proc.pid and state["stage"] == "train"
        with pytest.raises(ForgeError, match=f"in use by a running forge \\(pid {proc.pid} on"):
            run(_cfg(*tiny(cache)), live)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    state = read_state(live)
    assert state["status"] == "stopped" and state["error"] == "stopped by SIGTERM"
    assert state["stages_done"] == ["prepare"] and state["ended"] is not None
    assert not list(live.rglob(".*.tmp")), "nothing half-written"


def test_a_run_on_another_host_is_alive_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    def record(age: timedelta) -> None:
        beat = (datetime.now(timezone.utc) - age).isoformat(timespec="seconds")
        (tmp_path / "run.json").write_text(json.dumps({"status": "running", "host": "another-host", "heartbeat": beat}))

    record(timedelta(seconds=5))
    assert read_state(tmp_path)["status"] == "running"
    record(timedelta(minutes=10))
    assert read_state(tmp_path)["status"] == "died"
    assert read_state(tmp_path / "nothing") is None


def test_a_stop_during_a_write_stays_a_stop_and_leaves_nothing(tmp_path: Path) -> None:
    """torch.save's zip writer raises its own error while unwinding from a signal that arrived
    mid-save; the run must still read "stopped", not "failed"."""
    from forge.atomic import atomic_open

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as f:
            f.write(b"half")
            try:
                raise KeyboardInterrupt
            finally:
                raise RuntimeError("unexpected pos 14720 vs 14672")  # the writer's cleanup
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
