"""`forge runs start`: a run validated here, then started detached under a supervisor.

The supervisor (`python -m forge.runs.launch DIR -- ARGS`) is a process of its own session that
starts the run, waits for it and writes its exit code to `DIR/exit.json`, so a run that dies
without writing its end (SIGKILL, out of memory) is still told apart from one that is running:
the run itself keeps `run.json` with its pid and heartbeat (forge.run_state). Each run gets a
new directory under `outputs/runs/`, made with an exclusive create, so two starts never share one.
`--launcher slurm` submits the same supervisor as a SLURM job through submitit instead.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from forge import atomic
from forge.run_state import now

RUNS_DIR = Path("outputs") / "runs"
LAUNCH_FILE = "launch.json"
EXIT_FILE = "exit.json"
LOG_FILE = "console.log"


def new_run_dir(root: Path = RUNS_DIR) -> Path:
    """A fresh directory: a time-ordered name with a random suffix, created exclusively."""
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue


def start(overrides: list[str], root: Path = RUNS_DIR) -> Path:
    """Start `forge OVERRIDES` detached in a new run directory; returns at once."""
    run = new_run_dir(root)
    argv = [*overrides, f"hydra.run.dir={run.resolve()}"]
    atomic.write_json(run / LAUNCH_FILE, {"argv": argv, "started": now(), "cwd": os.getcwd()})
    with open(run / LOG_FILE, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "forge.runs.launch", str(run.resolve()), "--", *argv],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    return run


def submit(overrides: list[str], cluster: str, root: Path = RUNS_DIR) -> Path:
    """Submit `forge OVERRIDES` as a job through submitit: `slurm` on a cluster (the job runs the
    same supervisor, so the run records its exit code the same way), `local` on this machine
    (submitit's local executor, which runs the job the way a cluster node would)."""
    import submitit

    run = new_run_dir(root)
    argv = [*overrides, f"hydra.run.dir={run.resolve()}"]
    atomic.write_json(run / LAUNCH_FILE, {"argv": argv, "started": now(), "cwd": os.getcwd(), "launcher": cluster})
    executor = submitit.AutoExecutor(folder=run / "submitit", cluster=cluster)
    executor.update_parameters(name=f"forge-{run.name}", timeout_min=60 * 24 * 7)
    job = executor.submit(supervise, run.resolve(), argv)
    atomic.write_json(run / LAUNCH_FILE, {**json.loads((run / LAUNCH_FILE).read_text()), "job_id": str(job.job_id)})
    return run


def exit_code(run: Path) -> Optional[int]:
    """The run's exit code as its supervisor saw it; None while it runs (or without one)."""
    try:
        return int(json.loads((run / EXIT_FILE).read_text())["code"])
    except (OSError, ValueError, KeyError):
        return None


def supervise(run: Path, argv: list[str]) -> int:
    with open(run / LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "forge", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        atomic.write_json(run / LAUNCH_FILE, {**json.loads((run / LAUNCH_FILE).read_text()), "supervisor": os.getpid(), "pid": proc.pid})
        code = proc.wait()
    atomic.write_json(run / EXIT_FILE, {"code": code if code >= 0 else 128 - code, "signal": -code if code < 0 else None, "ended": now()})
    return code


if __name__ == "__main__":
    folder, _, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.exit(supervise(Path(folder), rest) and 0)
