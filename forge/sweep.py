"""Multirun: each point runs in isolation (a failure is recorded, not fatal) and the sweep ends
with a summary table plus summary.csv / summary.json in the sweep directory."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from forge import atomic
from forge.run_dir import RunPaths
from forge.run_state import STATE_FILE, mark_failed, read_state

log = logging.getLogger("forge.sweep")
OPTUNA_RESULTS = "optimization_results.yaml"  # written by the Optuna sweeper when the study ends
_NO_ERROR = {"died": "the process died without recording an end (killed?)", "running": "still running"}


def run_point(cfg: DictConfig, run_dir: Path, sweep_dir: Path) -> Optional[Union[float, list[float]]]:
    """Run one point; a failure (an exception, out of memory, a NaN objective) is recorded in
    its run.json and returns None, which an Optuna sweeper records as a failed trial. The sweep's
    summary files are brought up to date after every point, so they exist even if the sweep
    itself stops (e.g. an Optuna study whose every trial failed)."""
    objective = _run(cfg, run_dir)
    write_summary(sweep_dir)
    return objective


def _run(cfg: DictConfig, run_dir: Path) -> Optional[Union[float, list[float]]]:
    from forge.runner import run

    try:
        objective = run(cfg, run_dir).objective
        values = objective if isinstance(objective, list) else [objective]
        if any(v is not None and math.isnan(v) for v in values):
            raise ValueError(f"the objective {cfg.get('objective')} is NaN: {objective}")
    except Exception as e:  # one failed point must not stop the sweep
        log.error("sweep point failed: %s", e)
        state = read_state(run_dir)
        if state is None or state["status"] == "finished":  # failed before its run began, or NaN
            mark_failed(run_dir, f"{type(e).__name__}: {e}")
        return None
    return objective


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per point, from its run.json: status "ok" for a finished run, else its state
    (failed, stopped, died, running) with the error."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = _read_overrides(overrides_file)
        state = read_state(job) or {"status": "failed", "error": f"no {STATE_FILE} written (killed before it started?)"}
        status = "ok" if state["status"] == "finished" else state["status"]
        row: dict[str, Any] = {"job": int(job.name), "overrides": " ".join(overrides), "status": status}
        if status != "ok":
            row["error"] = state.get("error") or _NO_ERROR.get(status, "")
        elif state.get("objective") is not None:
            row["objective"] = state["objective"]
        row.update({k: v for k, v in RunPaths(job).read_metrics().items() if isinstance(v, (int, float))})
        rows.append(row)
    return rows


def _read_overrides(path: Path) -> list[str]:
    if not path.exists():
        return []
    import yaml

    return [str(o) for o in yaml.safe_load(path.read_text()) or []]


def mark_optuna_results(rows: list[dict[str, Any]], sweep_dir: Path) -> Optional[dict[str, Any]]:
    """Optuna's best trial (one objective) or Pareto front (several), from the file the sweeper
    writes: the matching rows get `optuna: best` or `optuna: pareto`."""
    path = sweep_dir / OPTUNA_RESULTS
    if not path.exists():
        return None
    import yaml

    results = yaml.safe_load(path.read_text())
    if "best_params" in results:
        chosen, label = [results["best_params"]], "best"
    else:
        chosen, label = [s["params"] for s in results.get("solutions", [])], "pareto"
    for row in rows:
        given = dict(o.split("=", 1) for o in row["overrides"].split() if "=" in o)
        if row["status"] == "ok" and any(all(_same(given.get(k), v) for k, v in params.items()) for params in chosen):
            row["optuna"] = label
    return results


def _same(text: Optional[str], value: Any) -> bool:
    if text is None:
        return False
    try:
        return math.isclose(float(text), float(value), rel_tol=1e-9)
    except (TypeError, ValueError):
        return text == str(value)


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    mark_optuna_results(rows, sweep_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    atomic.write_json(sweep_dir / "summary.json", rows)
    with atomic.atomic_open(sweep_dir / "summary.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def print_summary(rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = ("objective", "optuna", "test/exact_match", "test/loss", "steps", "train_seconds", "error")
    shown = ["job", "overrides", "status"] + [c for c in metrics if any(c in r for r in rows)]
    table = Table(title=f"forge sweep: {sweep_dir}")
    for c in shown:
        table.add_column(c)
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if rows else set()
    for row in rows:  # the overrides every point shares are the sweep's, not the point's
        row = {**row, "overrides": " ".join(o for o in row["overrides"].split() if o not in common)}
        table.add_row(*[_fmt(row.get(c, "")) for c in shown])
    Console().print(table)
    marked = [r for r in rows if "optuna" in r]
    if marked:
        what = "best trial" if marked[0]["optuna"] == "best" else f"Pareto front ({len(marked)} trials)"
        Console().print(f"optuna {what}: " + "; ".join(f"job {r['job']} -> {_fmt(r['objective'])}" for r in marked))


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class SweepSummary(Callback):
    """Hydra callback: writes and prints the sweep summary when a multirun ends; a sweep with a
    failed point exits 1 (SystemExit passes through Hydra's error handling unchanged)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = write_summary(sweep_dir)
        print_summary(rows, sweep_dir)
        failed = sum(r["status"] != "ok" for r in rows)
        if failed:
            raise SystemExit(f"forge: error: {failed} sweep point(s) failed; see the summary above")
