"""Rich tables: the checked config, a finished run, a sweep."""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from forge.config.registry import GROUPS


def print_config_summary(cfg: DictConfig) -> None:
    table = Table(title="forge: config is valid", show_header=True)
    table.add_column("group")
    table.add_column("settings")
    for group in GROUPS:
        node = OmegaConf.to_container(cfg[group])
        table.add_row(group, ", ".join(f"{k}={v}" for k, v in node.items()))
    table.add_row("run", f"stage={cfg.stage}, seed={cfg.seed}, resume={cfg.resume}")
    Console().print(table)


def print_run_summary(run_dir: str, metrics: Mapping[str, Any], artifacts: Mapping[str, str]) -> None:
    table = Table(title=f"forge run: {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, _fmt(value))
    for key, path in artifacts.items():
        table.add_row(key, path)
    Console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
