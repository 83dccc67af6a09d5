"""`forge runs ls` in a DVC repository agrees with `dvc exp show`: every experiment DVC recorded
is a row with DVC's name and metric values, and the pipeline folder is DVC's workspace."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run_forge
from test_dvc import SHRINK, _fresh_repo, _run

DVC = (sys.executable, "-m", "dvc")  # the DVC installed beside forge, whether or not its script is on PATH


def _flat(results: dict[str, Any]) -> dict[str, Any]:
    """One row's metrics in `dvc exp show --json`: {file: {"data": {name: value}}} -> {name: value}."""
    return {k: v for result in results.values() for k, v in (result.get("data") or {}).items() if isinstance(v, (int, float))}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_runs_ls_agrees_with_dvc_exp_show(tmp_path: Path, cache: Path) -> None:
    repo = tmp_path / "repo"
    _fresh_repo(repo)
    shrink = [f"{k}={v}" for k, v in {**SHRINK, "model.n_layers": 1}.items()] + [f"cache_dir={cache}"]
    for name, split in (("on-test", "test"), ("on-val", "val")):  # the second reruns only the evaluate stage
        _run(*DVC, "exp", "run", "-n", name, *(a for o in (*shrink, f"eval.split={split}") for a in ("-S", o)), cwd=repo)
    _run(*DVC, "exp", "run", "--queue", "-n", "later", "-S", "eval.split=test", cwd=repo)  # recorded, not run

    workspace, head = json.loads(_run(*DVC, "exp", "show", "--json", cwd=repo))
    dvc = {r["revs"][0]["name"]: _flat(r["revs"][0]["data"]["metrics"]) for r in head["experiments"]}
    states = {r["revs"][0]["name"]: (r["executor"] or {}).get("state", "success") for r in head["experiments"]}
    assert states == {"on-test": "success", "on-val": "success", "later": "queued"}
    assert "test/exact_match" in dvc["on-test"] and "val/exact_match" in dvc["on-val"] and dvc["later"] == {}, (
        "DVC recorded no metrics with the experiments: the metrics files in pipeline/ must not be gitignored")

    def ls(*args: str) -> list[dict[str, Any]]:
        return json.loads(run_forge("runs", "ls", "--json", *args, cwd=repo).stdout)

    rows = ls()
    exps = {r["name"]: r for r in rows if r["kind"] == "dvc-exp"}
    assert {name: r["metrics"] for name, r in exps.items()} == dvc
    assert [r["name"] for r in rows if r["kind"] == "dvc-exp"] == ["later", "on-val", "on-test"], "newest first"
    assert {name: r["status"] for name, r in exps.items()} == {"on-test": "finished", "on-val": "finished", "later": "starting"}
    assert exps["on-val"]["params"]["eval.split"] == "val" and exps["later"]["params"]["eval.split"] == "test"
    [pipeline] = [r for r in rows if r["kind"] == "run"]  # DVC's workspace: listed once, as the pipeline folder
    assert pipeline["run"] == "pipeline" and pipeline["metrics"] == _flat(workspace["data"]["metrics"]) == dvc["on-val"]

    assert [r["run"] for r in ls("--where", "test/loss>0")] == ["on-test"]
    assert len(ls("--status", "finished", "--since", "1h")) == 3 and ls("--status", "failed") == ls("--since", "2099-01-01") == []
    assert [r["kind"] for r in ls("--root", "pipeline")] == ["run"], "--root lists those folders only"
    assert "dvc-exp" in run_forge("runs", "ls", cwd=repo).stdout
