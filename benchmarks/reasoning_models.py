"""Reasoning models at an equal wall-clock budget: transformer vs cogment vs HRRM (hrm, trm).

Each model trains through the real `forge +recipe=<model>_<task>` command for the same
`trainer.max_minutes`, one torch thread each, two runs side by side on the 2-core machine (so
every run gets one core), three seeds. The data is prepared once per task before any timing
starts. Test exact match and cell accuracy (token accuracy over the scored cells: the blanks of
a Sudoku, the open cells of a maze) come from each run's metrics.json. Writes
benchmarks/results/reasoning_models.{json,md}.

    python benchmarks/reasoning_models.py [--tasks sudoku maze] [--minutes 8] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = {"transformer": "transformer", "cogment": "cogment", "hrrm-hrm": "hrrm", "hrrm-trm": "trm"}


def forge(*args: str, cwd: Path, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, "-m", "forge", *args], cwd=cwd, env=env, capture_output=True, text=True)


def one_run(task: str, model: str, seed: int, minutes: float, workdir: Path) -> dict:
    run = workdir / f"{task}-{model}-{seed}"
    proc = forge(f"+recipe={MODELS[model]}_{task}", f"seed={seed}", f"trainer.max_minutes={minutes}",
                 "trainer.threads=1", "logger=csv", f"cache_dir={workdir / 'cache'}", f"hydra.run.dir={run}",
                 cwd=workdir, threads=1)
    if proc.returncode != 0:
        return {"task": task, "model": model, "seed": seed, "error": proc.stderr[-2000:]}
    metrics = json.loads((run / "metrics.json").read_text())
    train = json.loads((run / "train.json").read_text())
    return {
        "task": task, "model": model, "seed": seed,
        "exact_match": metrics["test/exact_match"], "cell_accuracy": metrics["test/token_accuracy"],
        "parameters": train["parameters"], "steps": train["steps"], "train_seconds": train["train_seconds"],
        "checkpoint": metrics["checkpoint"],
    }


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for model in MODELS:
            ok = [r for r in rows if r["task"] == task and r["model"] == model and "error" not in r]
            if not ok:
                continue
            entry = {"task": task, "model": model, "runs": len(ok), "parameters": ok[0]["parameters"],
                     "steps": statistics.mean(r["steps"] for r in ok)}
            for key in ("exact_match", "cell_accuracy"):
                values = [100 * r[key] for r in ok]
                entry[key] = statistics.mean(values)
                entry[f"{key}_spread"] = (max(values) - min(values)) / 2
            out.append(entry)
    return out


def markdown(summary: list[dict], meta: dict) -> str:
    lines = [
        f"# Reasoning models at an equal budget ({meta['date']})",
        "",
        f"{meta['machine']}; torch {meta['torch']}. Each run: `trainer.max_minutes={meta['minutes']}` of training "
        "(validation included) on one core (`trainer.threads=1`, two runs side by side), "
        f"seeds {meta['seeds']}; mean ± half the min-max spread over seeds. Cell accuracy counts the scored "
        "cells only (Sudoku blanks, maze open cells).",
        "",
        "| task | model | parameters | steps | test exact match % | test cell accuracy % |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['task']} | {s['model']} | {s['parameters']:,} | {s['steps']:.0f} | "
            f"{s['exact_match']:.1f} ± {s['exact_match_spread']:.1f} | {s['cell_accuracy']:.1f} ± {s['cell_accuracy_spread']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sudoku", "maze"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "reasoning_models"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="forge-reasoning-"))
    for task in args.tasks:  # data generation is not part of any budget
        proc = forge(f"+recipe={MODELS[args.models[0]]}_{task}", "stage=prepare", f"cache_dir={workdir / 'cache'}",
                     f"hydra.run.dir={workdir / ('prepare-' + task)}", cwd=workdir, threads=2)
        if proc.returncode:
            sys.exit(proc.stderr)
    jobs = [(t, m, s) for t in args.tasks for s in args.seeds for m in args.models]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: one_run(*job, args.minutes, workdir), jobs))
    for row in rows:
        print(json.dumps(row))
    meta = {"date": str(date.today()), "machine": f"{os.cpu_count()}-core {platform.machine()} ({platform.processor() or 'cpu'})",
            "torch": torch.__version__, "minutes": args.minutes, "seeds": args.seeds}
    summary = summarize(rows)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
