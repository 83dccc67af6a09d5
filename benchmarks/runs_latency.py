"""`forge runs ls` and `forge runs start` latency with 1,000 run directories in the project.

A temporary project gets 1,000 finished runs laid out as forge writes them (run.json,
metrics.json, train.json, command.txt and the run's subfolders), dated over a month. Each
command is started fresh, as a user types it, `--repeats` times after one warm-up; the median
wall time is reported (target: under 1 s each). `runs start` starts a real run of the quickstart
recipe at `stage=prepare` on tiny data; each timing waits until the runs started before it have
ended, so that they do not compete with it for the CPU.
Writes benchmarks/results/runs_latency.json.

    python benchmarks/runs_latency.py [--runs 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
FORGE = [sys.executable, "-m", "forge"]
START = ["runs", "start", "+recipe=quickstart", "stage=prepare", "data.n_train=64", "data.n_val=8", "data.n_test=8"]


def populate(project: Path, n: int) -> None:
    rng = random.Random(0)
    for i in range(n):
        run = project / "outputs" / f"2026-11-{1 + i % 28:02d}" / f"{10 + i // 60 % 14:02d}-{i % 60:02d}-{i:04d}"
        for sub in ("checkpoints", "data", "csv", ".hydra", "model"):
            (run / sub).mkdir(parents=True)
        started = f"2026-11-{1 + i % 28:02d}T{10 + i // 60 % 14:02d}:{i % 60:02d}:00+00:00"
        (run / "run.json").write_text(json.dumps({"status": rng.choice(["finished"] * 8 + ["failed", "stopped"]),
                                                  "stages_done": ["prepare", "train", "compress", "evaluate", "export"], "stage": None,
                                                  "started": started, "ended": started, "pid": 1, "host": "h", "error": None}))
        (run / "metrics.json").write_text(json.dumps({"test/exact_match": rng.random(), "test/loss": rng.random()}))
        (run / "train.json").write_text(json.dumps({"steps": 1500, "train_seconds": 45.0, "final_train_loss": rng.random()}))
        (run / "command.txt").write_text(f"forge +recipe={rng.choice(['quickstart', 'coder_lora', 'sudoku'])}\n")


def median_seconds(cmd: list[str], cwd: Path, repeats: int) -> tuple[float, list[float]]:
    times = []
    for i in range(repeats + 1):
        settle(cwd)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        if i:  # the first run warms the caches
            times.append(time.perf_counter() - start)
    settle(cwd)
    return statistics.median(times), [round(t, 3) for t in times]


def settle(project: Path, timeout: float = 120) -> None:
    """Wait until every run `runs start` launched has ended: each timing starts on a quiet machine."""
    deadline = time.monotonic() + timeout
    launched = project / "outputs" / "runs"
    while time.monotonic() < deadline and launched.is_dir() and any(not (r / "exit.json").exists() for r in launched.iterdir()):
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="forge-runs-"))
    try:
        populate(project, args.runs)
        results = {}
        for name, cmd in {"runs ls": [*FORGE, "runs", "ls"],
                          "runs ls --where --sort-by --json": [*FORGE, "runs", "ls", "--where", "test/exact_match>0.5", "--sort-by", "test/loss", "--json"],
                          "runs start": [*FORGE, *START]}.items():
            median, times = median_seconds(cmd, project, args.repeats)
            results[name] = {"median_seconds": round(median, 3), "times": times}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    report = {"benchmark": "forge runs latency with run directories present", "date": date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
              "run_directories": args.runs, "repeats": args.repeats, "results": results, "target": "< 1 s each"}
    (HERE / "results" / "runs_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
