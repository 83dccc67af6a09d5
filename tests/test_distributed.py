"""The distributed path without a GPU: trainer=ddp_cpu runs two gloo processes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_forge, tiny


def test_ddp_cpu_trains_with_two_processes(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    proc = run_forge(*tiny(cache), "trainer=ddp_cpu", f"hydra.run.dir={run}", cwd=tmp_path)
    log = (run / "forge.log").read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr + log
    assert proc.stdout.count("== prepare") == 1, "the worker process does not repeat rank 0's lines on the console"
    assert json.loads((run / "train.json").read_text())["steps"] == 20
    assert (run / "metrics.json").is_file() and (run / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "outputs").exists(), "no stray Hydra folders from the child process"
