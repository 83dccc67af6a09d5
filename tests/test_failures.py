"""Failures leave things usable: a NaN loss stops with the step named; a save killed halfway
leaves the previous checkpoint loadable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from conftest import REPO, forge_env, run_forge, tiny
from forge.atomic import is_partial
from forge.run_dir import RunPaths
from forge.run_state import read_state
from forge.train.loggers import build_loggers


def test_nan_loss_stops_naming_the_step(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    proc = run_forge(
        *tiny(cache), "optim.lr=1e30", "optim.warmup_steps=1", "trainer.gradient_clip_val=null",
        "trainer.checkpoint_every_n_steps=1", f"hydra.run.dir={run}", cwd=tmp_path, check=False,
    )
    assert proc.returncode == 1
    assert "training loss is nan at step" in proc.stderr and "last good checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] >= 1
    assert not (run / "metrics.json").exists()
    state = read_state(run)
    assert state["status"] == "failed" and "training loss is nan at step" in state["error"]
    assert state["stages_done"] == ["prepare"]


SLOW_SAVE = textwrap.dedent(
    """
    import sys, time, torch
    from forge.train.checkpoint_io import AtomicCheckpointIO

    class Slow:  # pickling it stalls the save halfway through the file
        def __reduce__(self):
            print("writing", flush=True)
            time.sleep(60)
            return (Slow, ())

    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1000), "slow": Slow()}, sys.argv[1])
    """
)


def test_checkpoint_save_killed_halfway_keeps_the_previous_one(tmp_path: Path) -> None:
    from forge.train.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1000), "step": 1}, path)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)], env=forge_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    partial = list(tmp_path.glob(".last.ckpt.*.tmp"))
    assert partial, "the new checkpoint was being written"
    proc.kill()
    proc.wait()
    assert [is_partial(p) for p in partial] == [True], "a later run recognizes it as its own leftover"
    assert not is_partial(path)
    old = torch.load(path, weights_only=True)
    assert old["step"] == 1 and torch.equal(old["w"], torch.zeros(1000))


def test_resume_survives_a_dvclive_summary_torn_by_a_kill(tmp_path: Path) -> None:
    summary = tmp_path / "dvclive" / "metrics.json"
    summary.parent.mkdir()
    summary.write_text("")  # what a SIGKILL during DVCLive's in-place write leaves
    cfg = OmegaConf.load(REPO / "conf" / "logger" / "dvclive.yaml")
    logger = build_loggers(cfg, RunPaths(tmp_path), resume=True)[0]
    assert logger.experiment.summary == {}
