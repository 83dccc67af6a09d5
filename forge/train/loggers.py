"""The `logger` group: DVCLive by default; CSV, TensorBoard, MLflow and W&B on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from forge.config.errors import ConfigError
from forge.config.instantiate import instantiate
from forge.run_dir import RunPaths

# Where each logger writes inside the run directory, and the package it needs.
_DIRS = {
    "forge.train.dvclive_logger.DVCLiveLogger": lambda p: {"dir": str(p.root / "dvclive")},
    "lightning.pytorch.loggers.CSVLogger": lambda p: {"save_dir": str(p.root), "name": "csv", "version": ""},
    "lightning.pytorch.loggers.TensorBoardLogger": lambda p: {"save_dir": str(p.root), "name": "tensorboard", "version": ""},
    "lightning.pytorch.loggers.MLFlowLogger": lambda p: {},
    "lightning.pytorch.loggers.WandbLogger": lambda p: {"save_dir": str(p.root)},
}
_PACKAGES = {
    "lightning.pytorch.loggers.TensorBoardLogger": "tensorboard",
    "lightning.pytorch.loggers.MLFlowLogger": "mlflow",
    "lightning.pytorch.loggers.WandbLogger": "wandb",
}


def build_loggers(logger_cfg: DictConfig, paths: RunPaths, resume: bool) -> list[Any]:
    target = logger_cfg.get("_target_")
    if target is None:
        return []
    extra = _DIRS[target](paths)
    if target.endswith("DVCLiveLogger"):
        extra["resume"] = resume
        if resume:
            _drop_torn_summary(Path(extra["dir"]) / "metrics.json")
    try:
        return [instantiate(logger_cfg, **extra)]
    except ImportError as e:  # ModuleNotFoundError, or torch's "requires TensorBoard" ImportError
        package = _PACKAGES.get(target, getattr(e, "name", None) or str(e))
        raise ConfigError(
            f"logger {target} needs the '{package}' package, which is not installed. "
            f"Run `pip install {package}`, or pick another logger (logger=dvclive or logger=csv)."
        ) from None


def _drop_torn_summary(summary: Path) -> None:
    """DVCLive rewrites metrics.json in place at every step, so a run killed mid-write can leave
    it empty, and DVCLive's resume then fails to parse it. It only holds the latest values,
    which the next logged step writes again: a torn one is removed."""
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except ValueError:
        summary.unlink()
