"""The run directory: where every artifact of a run lives, and the record of how it was made."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge import atomic, redact


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def humaneval(self, model: str, prompt: str) -> Path:
        """Every HumanEval completion of `model` (fine-tuned or base) asked with `prompt`
        (completion or chat), with its outcome."""
        return self.root / "humaneval" / f"{model}.{prompt}.jsonl"

    def heldout(self, model: str, split: str) -> Path:
        """The held-out loss and token count of each prepared row of `split` under `model`
        (fine-tuned or base), in row order."""
        return self.root / "heldout" / f"{model}.{split}.jsonl"

    @property
    def compressed(self) -> Path:
        return self.root / "compressed" / "model.safetensors"

    @property
    def compress_report(self) -> Path:
        return self.root / "compressed" / "compress.json"

    @property
    def train_metrics(self) -> Path:
        return self.root / "train.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def read_metrics(self) -> dict[str, Any]:
        """What the run has measured so far: train.json, then metrics.json over it."""
        metrics: dict[str, Any] = {}
        for f in (self.train_metrics, self.metrics):
            if f.exists():
                metrics.update(json.loads(f.read_text()))
        return metrics


def record_run(cfg: DictConfig, paths: RunPaths) -> None:
    """Resolved config, command line, and the git commit plus uncommitted diff of the code; the
    run's secrets masked (forge.redact), value by value in the config so that it stays YAML."""
    atomic.write_text(paths.config, OmegaConf.to_yaml(OmegaConf.create(masked_config(cfg))))
    atomic.write_text(paths.root / "command.txt", " ".join(["forge", *sys.argv[1:]]) + "\n")
    commit, diff = _git("rev-parse", "HEAD"), _git("diff", "HEAD")
    atomic.write_json(
        paths.root / "git.json",
        {"commit": commit.strip() or None, "dirty": bool(diff.strip())},
    )
    atomic.write_text(paths.root / "git.diff", diff)


def masked_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as config.yaml holds it: each value with the run's secrets masked."""
    return redact.tree(OmegaConf.to_container(cfg, resolve=True))


def mask_yaml_files(folder: Path, redactor: redact.Redactor) -> None:
    """Rewrite each YAML file in `folder` (Hydra's record of the run, written before the run
    starts) with the run's secrets masked value by value."""
    for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        data = OmegaConf.to_container(OmegaConf.load(f), resolve=False)
        masked = redactor.tree(data)
        if masked != data:
            atomic.write_text(f, OmegaConf.to_yaml(OmegaConf.create(masked)))


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """A run's JSON record (run.json, metrics.json, train.json, ...) as a dict; None when it is
    missing, unreadable or not an object: readers of many runs skip such a run's field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
