"""Shared helpers: run the real `forge` command in a subprocess, on a shrunken quickstart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tiny(cache: Path) -> list[str]:
    """The quickstart recipe shrunk to a couple of seconds of training."""
    return [
        "+recipe=quickstart",
        "data.n_train=512",
        "data.n_val=64",
        "data.n_test=64",
        "data.batch_size=32",
        "model.d_model=32",
        "model.d_ff=64",
        "model.n_layers=1",
        "trainer.max_steps=20",
        "trainer.val_every_n_steps=10",
        "trainer.checkpoint_every_n_steps=10",
        "trainer.log_every_n_steps=5",
        "eval.batch_size=64",
        f"cache_dir={cache}",
    ]


def forge_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_forge(*args: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "forge", *args],
        cwd=cwd,
        env=forge_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"forge {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"
