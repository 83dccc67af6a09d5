"""`forge runs start`'s pre-flight estimate against what the run then did, on three recipes.

For each recipe (shrunk by overrides to fit a few minutes on 2 CPU cores) in a temporary
project: its data is prepared once (`stage=prepare`, outside the project's runs, as a user's
earlier work would have left it in the data cache); a first `forge runs start --yes` records
this machine's pace; a second one prints the estimate (`--json`), and once it has ended the
estimate is compared with what it recorded:

- duration: the estimated run (training + time outside it) against the wall time from
  `runs start` to the exit its supervisor recorded; training alone against the loop's time
  (train.json steps / steps_per_second). Target: within +-20%.
- tokens: the estimate against the tokens the run trained on (train.json `train_tokens`, the
  non-padding tokens the causal-LM step counted) or, for token tasks, the positions it read
  (train.json steps x batch x the prepared sequence length). Target: within +-2%.

Also kept: how long `runs start` took to return, the estimated and recorded peak memory, and the
machine's load average as each run started (the pace of a run on a machine shared with other work
moves with that work).
Writes benchmarks/results/runs_estimate.json.

    python benchmarks/runs_estimate.py [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
FORGE = [sys.executable, "-m", "forge"]
RECIPES = {
    "quickstart": ["+recipe=quickstart", "trainer.max_steps=300", "trainer.val_every_n_steps=100", "logger=csv"],
    "transformer_maze": ["+recipe=transformer_maze", "data.n_train=300", "trainer.max_steps=150", "trainer.val_every_n_steps=50",
                         "logger=csv"],
    "coder_lora": ["+recipe=coder_lora", "data.seq_len=128", "data.batch_size=8", "trainer.max_steps=25",
                   "trainer.val_every_n_steps=1000", "trainer.checkpoint_every_n_steps=1000", "eval=perplexity", "eval.batch_size=8",
                   "export=none", "logger=csv"],
}


def start(project: Path, overrides: list[str]) -> tuple[dict, float]:
    began = time.perf_counter()
    proc = subprocess.run([*FORGE, "runs", "start", "--yes", "--json", *overrides], cwd=project, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout), time.perf_counter() - began


def wait(run: Path, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "exit.json").exists():
            return json.loads((run / "exit.json").read_text())
        time.sleep(0.5)
    raise TimeoutError(f"{run} did not end in {timeout} s")


def measure(project: Path, name: str, overrides: list[str]) -> dict:
    overrides = [*overrides, f"cache_dir={project / 'cache'}"]  # a new project's data cache, as prepared by this forge
    subprocess.run([*FORGE, *overrides, "stage=prepare", f"hydra.run.dir={project / 'prepared' / name}"], cwd=project, check=True,
                   capture_output=True)
    first, _ = start(project, overrides)
    load_first = os.getloadavg()[0]
    if wait(project / first["run_dir"])["code"]:
        raise RuntimeError(f"{name}: the first run failed: {project / first['run_dir'] / 'console.log'}")
    second, returned = start(project, overrides)
    load_second = os.getloadavg()[0]
    run = project / second["run_dir"]
    ended = wait(run)
    if ended["code"]:
        raise RuntimeError(f"{name}: the second run failed: {run / 'console.log'}")
    train = json.loads((run / "train.json").read_text())
    launched = json.loads((run / "launch.json").read_text())["started"]
    wall = (datetime.fromisoformat(ended["ended"]) - datetime.fromisoformat(launched)).total_seconds()
    loop = train["steps"] / train["steps_per_second"]
    estimate = second["estimate"]
    if "train_tokens" in train:
        tokens, tokens_from = train["train_tokens"], "train.json train_tokens (non-padding tokens the training step counted)"
    else:
        seq_len = json.loads((run / "data" / "meta.json").read_text())["seq_len"]
        tokens, tokens_from = train["steps"] * estimate["examples_per_step"] * seq_len, "train.json steps x batch x prepared seq_len"
    return {
        "overrides": overrides[:-1],
        "estimate_text": second["estimate_text"],
        "runs_start_returned_seconds": round(returned, 2),
        "duration": {"estimated_seconds": estimate["seconds"], "actual_seconds": wall,
                     "ratio": round(estimate["seconds"] / wall, 3) if estimate["seconds"] else None,
                     "actual_from": "launch.json started -> exit.json ended (1 s resolution)"},
        "training": {"estimated_seconds": estimate.get("train_seconds"), "actual_seconds": round(loop, 1),
                     "ratio": round(estimate["train_seconds"] / loop, 3) if estimate.get("train_seconds") else None,
                     "actual_from": "train.json steps / steps_per_second"},
        "tokens": {"estimated": estimate["tokens"], "estimate_from": estimate["tokens_from"], "actual": tokens, "actual_from": tokens_from,
                   "ratio": round(estimate["tokens"] / tokens, 4) if estimate["tokens"] else None},
        "peak_rss_mb": {"estimated": estimate.get("peak_rss_mb"), "actual": train.get("peak_rss_mb")},
        "load_average_at_start": {"first_run": load_first, "second_run": load_second},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES))
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="forge-estimate-"))
    began = time.perf_counter()
    try:
        results = {name: measure(project, name, overrides) for name, overrides in RECIPES.items() if args.only in (None, name)}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    import torch

    report = {"benchmark": "forge runs start estimate against the run's actual duration and tokens", "date": date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
              "targets": {"duration": "within +-20%", "tokens": "within +-2%"}, "benchmark_seconds": round(time.perf_counter() - began),
              "results": results}
    (HERE / "results" / "runs_estimate.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: {m: v[m]["ratio"] for m in ("duration", "training", "tokens")} for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
