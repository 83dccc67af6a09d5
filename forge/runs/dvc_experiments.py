"""DVC experiments as rows of `forge runs ls`: what `dvc exp run` recorded (a Git ref per
experiment, with its params and metrics) and the run folders do not hold, since only the last
experiment's outputs stay in the pipeline folder.

Read with DVC's own `Repo.experiments.show()`, the call whose result `dvc exp show --json`
prints, so both list the same experiments with the same values. `dvc.api.exp_show()` flattens
that into display cells whose "Created" is a clock time without its date, which `--since` cannot
compare. The workspace is not read: its outputs are the pipeline folder, already a run directory.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from forge.errors import ForgeError

if TYPE_CHECKING:
    from dvc.repo.experiments.serialize import ExpExecutor, ExpState

KIND = "dvc-exp"
STATES = {"success": "finished", "running": "running", "queued": "starting", "failed": "failed"}


def dvc_root(start: Path) -> Optional[Path]:
    """The DVC repository holding `start` (the nearest folder above it with `.dvc/`), if any."""
    here = start.resolve()
    return next((folder for folder in (here, *here.parents) if (folder / ".dvc").is_dir()), None)


def experiments(root: Path) -> list[dict[str, Any]]:
    """Every experiment DVC knows from the repository's HEAD (what `dvc exp show` lists), as runs.

    DVC is imported here, not at the top: importing it and opening the repository cost a few
    tenths of a second that `forge runs ls` must not pay in a project that does not use DVC.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import Git

    try:
        with Repo(str(root)) as repo:
            if not isinstance(repo.scm, Git):
                return []  # DVC keeps experiments in Git: without Git there are none
            baselines = repo.experiments.show(hide_workspace=True)
    except DvcException as exc:
        raise ForgeError(f"runs ls: DVC cannot list the experiments of {root}: {exc}; `dvc exp show` says more") from None
    return [
        _row(exp_range.revs[0], exp_range.executor, baseline.rev)
        for baseline in baselines for exp_range in baseline.experiments or [] if exp_range.revs
    ]


def _row(exp: "ExpState", executor: Optional["ExpExecutor"], baseline: str) -> dict[str, Any]:
    """The run-directory row's fields (forge.runs.listing.describe), filled from DVC's record."""
    from dvc.utils.flatten import flatten

    data = exp.data
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for found, into in ((data.metrics, metrics), (data.params, params)) if data else ():
        for path, result in found.items():
            values = result.get("data", {})  # a file that holds one value is named by its path, as in `dvc exp show`
            into.update(flatten(values) if isinstance(values, dict) else {path: values})
    name = exp.name or exp.rev[:7]
    state = executor.state if executor else "success"
    local = executor.local if executor else None
    error = exp.error.msg if exp.error else f"`dvc queue logs {name}` says why" if state == "failed" else None
    return {
        "run": name, "kind": KIND, "name": name, "rev": exp.rev, "baseline": baseline, "status": STATES[state],
        "stage": None, "stages_done": [], "started": _utc(data.timestamp) if data else None, "ended": None,
        "pid": local.pid if local else None, "exit_code": local.returncode if local else None, "error": error,
        "recipe": None, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, "params": params,
    }


def _utc(moment: Optional[datetime]) -> Optional[str]:
    """DVC's commit time (local, naive) as the run records write theirs: ISO, UTC, seconds."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None
