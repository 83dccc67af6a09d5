"""Multirun: each point runs in isolation (a failure is recorded, not fatal) and the sweep ends
with a summary table plus summary.csv / summary.json in the sweep directory."""

from __future__ import annotations

import csv
import json
import logging
import traceback
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from forge import io

log = logging.getLogger("forge.sweep")
STATUS_FILE = "status.json"


def run_point(cfg: DictConfig, run_dir: Path) -> Optional[float]:
    from forge.stages import execute

    try:
        result = execute(cfg, run_dir)
    except Exception as e:  # one failed point must not stop the sweep
        log.error("sweep point failed: %s", e)
        io.write_json(run_dir / STATUS_FILE, {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return None
    io.write_json(run_dir / STATUS_FILE, {"status": "ok"})
    return result.objective


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = _read_overrides(overrides_file)
        status = json.loads((job / STATUS_FILE).read_text()) if (job / STATUS_FILE).exists() else {"status": "failed", "error": "no status written (killed?)"}
        row: dict[str, Any] = {"job": int(job.name), "overrides": " ".join(overrides), "status": status["status"]}
        if status["status"] != "ok":
            row["error"] = status.get("error", "")
        for name in ("train.json", "metrics.json"):
            f = job / name
            if f.exists():
                row.update({k: v for k, v in json.loads(f.read_text()).items() if isinstance(v, (int, float))})
        rows.append(row)
    return rows


def _read_overrides(path: Path) -> list[str]:
    if not path.exists():
        return []
    import yaml

    return [str(o) for o in yaml.safe_load(path.read_text()) or []]


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    io.write_json(sweep_dir / "summary.json", rows)
    with io.atomic_open(sweep_dir / "summary.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def print_summary(rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = ("test/exact_match", "test/loss", "steps", "train_seconds", "error")
    shown = ["job", "overrides", "status"] + [c for c in metrics if any(c in r for r in rows)]
    table = Table(title=f"forge sweep: {sweep_dir}")
    for c in shown:
        table.add_column(c)
    for row in rows:
        table.add_row(*[_fmt(row.get(c, "")) for c in shown])
    Console().print(table)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class SweepSummary(Callback):
    """Hydra callback: writes and prints the sweep summary when a multirun ends."""

    failed = 0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = write_summary(sweep_dir)
        print_summary(rows, sweep_dir)
        SweepSummary.failed = sum(r["status"] != "ok" for r in rows)
