"""End to end on CPU: a shrunken quickstart writes a complete, self-describing run directory."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_forge, run_in_process, tiny
from forge.config.errors import ConfigError


def test_quickstart_run_directory(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    proc = run_forge(*tiny(cache), f"hydra.run.dir={run}", cwd=tmp_path)
    for name in ("config.yaml", "command.txt", "git.json", "git.diff", "metrics.json", "train.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "model/model.safetensors", "model/config.json",
                 "dvclive/plots/metrics/train/loss.tsv", "data/meta.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/exact_match"] <= 1.0 and metrics["test/examples"] == 64
    assert json.loads((run / "train.json").read_text())["steps"] == 20
    assert "test/exact_match" in proc.stdout, "the summary table is printed"
    assert "+recipe=quickstart" in (run / "command.txt").read_text()

    from forge.export.safetensors import load_exported
    from forge.run_dir import RunPaths
    from forge.train.checkpoints import best_or_last
    from forge.train.module import load_checkpoint

    exported, trained = load_exported(run / "model"), load_checkpoint(str(best_or_last(RunPaths(run)))).evaluated
    probe = torch.randint(0, 12, (3, 12))
    assert torch.equal(exported(probe), trained(probe))
    assert not list(run.rglob(".*.tmp")), "no temporary files left behind"


def test_stages_one_at_a_time_share_the_run_directory(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    for stage in ("prepare", "train", "compress", "evaluate", "export"):
        run_in_process(*tiny(cache), f"stage={stage}", run_dir=run)
    assert (run / "metrics.json").is_file() and (run / "model" / "model.safetensors").is_file()


def test_a_stage_without_its_inputs_says_what_to_run(tmp_path: Path, cache: Path) -> None:
    proc = run_forge(*tiny(cache), "stage=evaluate", f"hydra.run.dir={tmp_path / 'empty'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "run stage=train first" in proc.stderr and "Traceback" not in proc.stderr


def test_csv_logger_and_missing_logger_packages(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    run_in_process(*tiny(cache), "logger=csv", "trainer.max_steps=5", run_dir=run)
    assert (run / "csv" / "metrics.csv").is_file()
    for logger in ("tensorboard", "mlflow", "wandb"):  # a ConfigError: the CLI prints it in one line, exit 2
        if importlib.util.find_spec(logger) is None:
            with pytest.raises(ConfigError, match=f"pip install {logger}"):
                run_in_process(*tiny(cache), f"logger={logger}", run_dir=tmp_path / f"run-{logger}")


def test_the_dvc_command_runs_a_stage_from_params_yaml(tmp_path: Path, cache: Path) -> None:
    """dvc.yaml's `forge --params params.yaml --run-dir pipeline stage=NAME`: no Hydra, no run record."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    overrides = [o for o in tiny(cache) if not o.startswith("+")]
    run_forge("--params", "params.yaml", "--run-dir", "pipeline", "stage=prepare", *overrides, cwd=tmp_path)
    assert (tmp_path / "pipeline" / "data" / "meta.json").is_file()
    assert not (tmp_path / "pipeline" / "command.txt").exists(), "DVC records the run, not forge"
