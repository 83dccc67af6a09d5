"""Exact resume: SIGKILL mid-epoch, resume, and match an uninterrupted run bit for bit."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import forge_env, run_forge, run_in_process, tiny
from forge.errors import ForgeError
from forge.run_state import read_state

STEPS = 240
ARGS = [
    "data.n_train=2048",
    "data.batch_size=64",  # 32 batches an epoch; checkpoints every 10 steps land mid-epoch
    "model.d_model=64",
    "model.d_ff=128",
    f"trainer.max_steps={STEPS}",
    "trainer.checkpoint_every_n_steps=10",
    "trainer.val_every_n_steps=50",
    "trainer.log_every_n_steps=1",
    "trainer.deterministic=true",
]


def _losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv") as f:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(f, delimiter="\t")]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_resume_after_sigkill_matches_uninterrupted(tmp_path: Path, cache: Path) -> None:
    args = [*tiny(cache), *ARGS]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_forge(*args, f"hydra.run.dir={straight}", cwd=tmp_path)

    proc = subprocess.Popen(
        [sys.executable, "-m", "forge", *args, f"hydra.run.dir={broken}"],
        cwd=tmp_path, env=forge_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ckpt, log = broken / "checkpoints" / "last.ckpt", broken / "dvclive/plots/metrics/train/loss.tsv"
    deadline = time.time() + 120
    # Kill once the first checkpoint is on disk and the loss of its step is logged (Lightning
    # writes a step's metrics just after that step's checkpoint): the resumed run then redoes
    # the steps after the checkpoint, and they must come out the same.
    while proc.poll() is None and time.time() < deadline:
        if ckpt.exists() and log.exists() and len(log.read_text().splitlines()) > 10:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    if proc.returncode != -9:
        pytest.fail("the run finished before it could be killed; make it longer")
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS and killed_at % 32, "killed mid-epoch, before the end"

    assert read_state(broken)["status"] == "died"
    run_forge(*args, f"hydra.run.dir={broken}", f"resume={broken}", cwd=tmp_path)
    assert read_state(broken)["status"] == "finished"

    expected, got = _weights(straight), _weights(broken)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # The killed run logged a few steps past its checkpoint; the resumed run redoes them (any
    # repeated row must carry the same value), then the rest: the uninterrupted curve.
    want, have = _losses(straight), _losses(broken)
    assert len(want) == STEPS
    assert list(dict.fromkeys(have)) == want


def test_resume_with_a_different_config_is_refused(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    run_in_process(*tiny(cache), "trainer.max_steps=10", run_dir=run)
    with pytest.raises(ForgeError, match=r"resume=.*: the config differs .* in optim.lr \(0.003 -> 0.5\)"):
        run_in_process(*tiny(cache), "trainer.max_steps=10", "optim.lr=0.5", f"resume={run}", run_dir=run)
    assert read_state(run)["status"] == "finished", "a refused resume leaves the run's record alone"
