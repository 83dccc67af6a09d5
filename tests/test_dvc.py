"""DVC in a fresh repository: dvc.yaml is what the stages declare; the pipeline runs, then has
nothing to do; an experiment reruns exactly the stages whose params changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, forge_env

SHRINK = {
    "data.n_train": 512, "data.n_val": 64, "data.n_test": 64, "data.batch_size": 32,
    "model.d_model": 32, "model.d_ff": 64, "trainer.max_steps": 20,
    "trainer.val_every_n_steps": 10, "trainer.checkpoint_every_n_steps": 10,
}


def test_dvc_yaml_is_what_the_stages_declare() -> None:
    from forge.pipeline import dvc_yaml

    assert (REPO / "dvc.yaml").read_text() == dvc_yaml(), "dvc.yaml is stale: regenerate it with `forge dvc-yaml > dvc.yaml`"


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


def _fresh_repo(repo: Path) -> None:
    _copy_repo(repo)
    _run("git", "init", "-q", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=repo)


def _ran(output: str) -> list[str]:
    return [stage for stage in ("prepare", "train", "compress", "evaluate", "export") if f"Running stage '{stage}'" in output]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_pipeline_in_a_fresh_repo_reruns_exactly_what_changed(tmp_path: Path, cache: Path) -> None:
    """`dvc exp run -S` composes params.yaml with Hydra and runs the pipeline; `dvc repro` then
    has nothing to do; a stage reruns when a key it reads changed, and only then."""
    repo = tmp_path / "repo"
    _fresh_repo(repo)
    shrink = [f"{k}={v}" for k, v in SHRINK.items()] + [f"cache_dir={cache}"]

    def exp(*overrides: str) -> list[str]:
        return _ran(_run("dvc", "exp", "run", *(a for o in (*shrink, *overrides) for a in ("-S", o)), cwd=repo))

    rtn = ("compressor=rtn", "compressor.bits=8", "compressor.group=16")
    assert exp(*rtn) == ["prepare", "train", "compress", "evaluate", "export"]
    metrics = json.loads((repo / "pipeline" / "metrics.json").read_text())
    assert metrics["compressed/method"] == "rtn" and metrics["compressed/top1_agreement"] > 0.9
    assert (repo / "pipeline" / "model" / "model.safetensors").is_file()
    again = _run("dvc", "repro", cwd=repo)
    assert "Running stage" not in again and "up to date" in again
    shown = _run("dvc", "metrics", "show", "--json", cwd=repo)
    assert "test/exact_match" in shown and "final_train_loss" in shown
    assert "train/loss.tsv" in _run("dvc", "plots", "show", "--json", cwd=repo)

    assert exp(*rtn, "eval.split=val") == ["evaluate"]
    assert exp("compressor=bitnet", "compressor.qat=false") == ["train", "compress", "evaluate", "export"]
    assert exp("compressor=bitnet", "compressor.qat=true") == ["train", "compress", "evaluate", "export"]
