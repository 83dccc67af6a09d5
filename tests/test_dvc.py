"""`dvc repro` in a fresh repository: runs the pipeline, then has nothing to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, forge_env

SHRINK = {
    "data.n_train": 512, "data.n_val": 64, "data.n_test": 64, "data.batch_size": 32,
    "model.d_model": 32, "model.d_ff": 64, "trainer.max_steps": 20,
    "trainer.val_every_n_steps": 10, "trainer.checkpoint_every_n_steps": 10,
}


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src, out = REPO / rel, dst / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)


def _run(*cmd: str, cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=forge_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_repro_twice_in_a_fresh_repo(tmp_path: Path, cache: Path) -> None:
    repo = tmp_path / "repo"
    _copy_repo(repo)
    params = OmegaConf.load(repo / "params.yaml")
    for key, value in SHRINK.items():
        OmegaConf.update(params, key, value)
    params.cache_dir = str(cache)
    OmegaConf.save(params, repo / "params.yaml")
    _run("git", "init", "-q", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=repo)

    first = _run("dvc", "repro", cwd=repo)
    for stage in ("prepare", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in first
    assert (repo / "pipeline" / "model" / "model.safetensors").is_file()
    second = _run("dvc", "repro", cwd=repo)
    assert "Running stage" not in second and "up to date" in second

    metrics = _run("dvc", "metrics", "show", "--json", cwd=repo)
    assert "test/exact_match" in metrics and "final_train_loss" in metrics
    plots = _run("dvc", "plots", "show", "--json", cwd=repo)
    assert "train/loss.tsv" in plots
