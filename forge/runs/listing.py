"""Finding runs and describing one: what `forge runs ls` and `forge runs status` show.

A run is any directory holding `run.json` (every forge run keeps one: plain runs, sweep points,
cv folds, the DVC pipeline's folder) or `launch.json` (a run `forge runs start` launched that
has not started yet). Its state comes from forge.run_state, which tells a live run from one that
died, and from the exit code its supervisor recorded. In a DVC repository the list also holds the
experiments DVC recorded (forge.runs.dvc_experiments), whose outputs no folder keeps.
"""

from __future__ import annotations

import math
import operator
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from forge.errors import ForgeError
from forge.run_dir import read_json
from forge.run_state import STATE_FILE, read_state
from forge.runs.dvc_experiments import dvc_root, experiments
from forge.runs.launch import LAUNCH_FILE, LOG_FILE, RUNS_DIR, exit_code

SKIP = {"checkpoints", "data", "csv", "dvclive", ".hydra", "model", "compressed", "humaneval", "tensorboard", "mlruns", "wandb"}
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}


def find_runs(roots: list[Path]) -> Iterator[Path]:
    """Every run directory under `roots` (a run's own subfolders are not searched)."""
    stack = [r for r in roots if r.is_dir()]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = {e.name for e in entries}
        if STATE_FILE in names or LAUNCH_FILE in names:
            yield folder
        stack += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and e.name not in SKIP and not e.name.startswith(".")]


def list_runs(roots: list[Path], project: Optional[Path] = None) -> list[dict[str, Any]]:
    """Every run directory under `roots` (kind "run"), and the experiments DVC knows when
    `project` is in a DVC repository (kind "dvc-exp")."""
    rows = [{"kind": "run", **describe(run)} for run in find_runs(roots)]
    repo = dvc_root(project) if project else None
    return rows + experiments(repo) if repo else rows


def resolve(name: str, roots: list[Path]) -> Path:
    """A run given as a path, or as its name (the last part of its path) under the roots."""
    path = Path(name)
    if path.is_dir() and ((path / STATE_FILE).exists() or (path / LAUNCH_FILE).exists()):
        return path
    matches = [r for r in find_runs(roots) if r.name == name or str(r).endswith(name)]
    if len(matches) == 1:
        return matches[0]
    where = ", ".join(str(r) for r in roots)
    if not matches:
        raise ForgeError(f"runs: no run {name!r} under {where}; `forge runs ls` lists them (--root DIR for runs elsewhere)")
    raise ForgeError(f"runs: {name!r} names {len(matches)} runs ({', '.join(str(m) for m in matches[:3])}, ...); give its path")


def describe(run: Path) -> dict[str, Any]:
    """The run's state and what it has recorded so far (a launched run before it starts included)."""
    state = read_state(run) or {}
    launch = read_json(run / LAUNCH_FILE)
    code = exit_code(run)
    status = state.get("status")
    if status is None:
        status = "starting" if code is None and launch else "failed" if launch else "unknown"
        if code is not None:
            state["error"] = _last_line(run / LOG_FILE) or f"exited with code {code} before the run started"
    metrics = {k: v for k, v in (read_json(run / "metrics.json") or {}).items() if isinstance(v, (int, float))}
    train = read_json(run / "train.json") or {}
    argv = launch.get("argv") if launch else _command(run)
    return {
        "run": str(run), "status": status, "stage": state.get("stage"), "stages_done": state.get("stages_done", []),
        "started": state.get("started") or (launch or {}).get("started"), "ended": state.get("ended"),
        "pid": state.get("pid"), "exit_code": code, "error": state.get("error"),
        "recipe": next((a.split("=", 1)[1] for a in argv or [] if a.startswith("+recipe=")), None),
        "metrics": {**{k: v for k, v in train.items() if isinstance(v, (int, float))}, **metrics},
    }


def since(text: str) -> datetime:
    """`2h`, `3d`, `45m` ago, or an ISO date or time."""
    unit = re.fullmatch(r"(\d+)([mhd])", text)
    if unit:
        span = {"m": "minutes", "h": "hours", "d": "days"}[unit.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{span: int(unit.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ForgeError(f"runs ls --since {text!r}: give a duration (45m, 2h, 3d) or an ISO date (2026-11-30)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def condition(text: str) -> tuple[str, Any, float]:
    """`test/exact_match>0.9` -> (metric, comparison, value)."""
    match = re.fullmatch(r"\s*([^<>=!\s]+)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*", text)
    if not match:
        raise ForgeError(f"runs ls --where {text!r}: write METRIC OP VALUE, e.g. 'test/exact_match>0.9' (OP: {' '.join(OPS)})")
    return match.group(1), OPS[match.group(2)], float(match.group(3))


def select(rows: list[dict[str, Any]], status: Optional[str] = None, recipe: Optional[str] = None, after: Optional[datetime] = None,
           where: Optional[list[str]] = None, sort_by: Optional[str] = None) -> list[dict[str, Any]]:
    """Filtered, newest first (or by a metric, highest first; runs without it last)."""
    conditions = [condition(w) for w in where or []]
    kept = [
        r for r in rows
        if (status is None or r["status"] == status) and (recipe is None or r["recipe"] == recipe)
        and (after is None or (r["started"] and datetime.fromisoformat(r["started"]) >= after))
        and all(name in r["metrics"] and op(r["metrics"][name], value) for name, op, value in conditions)
    ]
    if sort_by:
        return sorted(kept, key=lambda r: -r["metrics"].get(sort_by, -math.inf))
    return sorted(kept, key=lambda r: r["started"] or "", reverse=True)


def default_roots() -> list[Path]:
    return [p for p in (Path("outputs"), Path("multirun"), Path("pipeline")) if p.is_dir()] or [RUNS_DIR]


def _command(run: Path) -> Optional[list[str]]:
    try:
        return (run / "command.txt").read_text().split()[1:]
    except OSError:
        return None


def _last_line(path: Path) -> Optional[str]:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None
