"""Forgetting: task A (two-digit addition), then task B (two-digit subtraction) continued from A,
with forge's transformer (recipes/continual_arithmetic.yaml: one data=mixture holds both tasks,
each run's curriculum trains one).

Task B is trained four ways from the same A run, same steps, same seed:
- naive: fine-tuning on B alone;
- rehearsal: callbacks=[default,rehearsal] at its default share (5% of each step's gradient from
  A's training rows);
- EWC: callbacks=[default,ewc], its strength chosen on the validation split (seed 0) from a grid;
- mix: 5% of B's batches' rows drawn from A (the staged curriculum's mix), the data-level replay
  the learning loop's incremental mode uses, with the same re-warmed learning rate.

Reported per method (mean over seeds): test exact match on A and B after B, forgetting on A
(after A minus after B) and its ratio to naive forgetting, and B's gap to naive.
Target (issue): forgetting with rehearsal or EWC at most half of naive, B within 2 points.
Writes benchmarks/results/continual.json.

    python benchmarks/continual.py            # 2 seeds, sized for 2 CPU cores (under an hour)
    python benchmarks/continual.py --smoke    # every part once, tiny (a few minutes)
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
import time
from datetime import date
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
SIZES = {
    "smoke": {"seeds": 1, "steps_a": 30, "steps_b": 20, "strengths": [1e6], "extra": ["data.sources.add.n_train=500",
              "data.sources.sub.n_train=500", "data.sources.add.n_test=100", "data.sources.sub.n_test=100"]},
    "cpu": {"seeds": 2, "steps_a": 1000, "steps_b": 500, "strengths": [1e5, 1e6, 1e7], "extra": []},
}
SHARE = 0.05


def forge(run: Path, *overrides: str) -> dict:
    """Run the recipe into `run` and return its metrics.json."""
    cmd = [sys.executable, "-m", "forge", "+recipe=continual_arithmetic", "logger=csv", f"hydra.run.dir={run}", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"forge failed in {run}:\n{proc.stderr[-3000:]}")
    return json.loads((run / "metrics.json").read_text())


def stages(mix: dict[str, float], steps: int) -> str:
    inner = ",".join(f"{k}:{v}" for k, v in mix.items())
    return f"curriculum.stages=[{{name:task,mix:{{{inner}}},steps:{steps},epochs:null,threshold:null}}]"


def val_scores(run: Path) -> dict[str, float]:
    """Exact match per source on the validation split, from the run's trained model."""
    from forge.data.loader import SplitDataset
    from forge.data.prepare import load_meta
    from forge.eval.exact_match import score
    from forge.train.module import load_checkpoint

    model = load_checkpoint(str(run / "checkpoints" / "last.ckpt")).evaluated.eval()
    scores = score(model, SplitDataset(run / "data", "val"), 256, load_meta(run / "data")["sources"])
    return {s: scores[f"{s}/exact_match"] for s in ("add", "sub")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "cpu"]
    work = Path(tempfile.mkdtemp(prefix="forge-continual-"))
    start = time.time()
    sa, sb = size["steps_a"], size["steps_b"]
    common = [*size["extra"], f"trainer.val_every_n_steps={sb}"]
    methods = {
        "naive": [],
        "rehearsal": ["callbacks=[default,rehearsal]", "callbacks.rehearsal.sources=[add]", f"callbacks.rehearsal.share={SHARE}"],
        "mix": [],  # its stage mixes A into B's batches
    }

    def task_b(a_run: Path, seed: int, name: str, overrides: list[str]) -> Path:
        mix = {"sub": 1 - SHARE, "add": SHARE} if name == "mix" else {"sub": 1.0}
        run = work / f"B_{name}_{seed}"
        forge(run, *common, f"seed={seed}", f"trainer.max_steps={sb}", stages(mix, sb), f"init_from={a_run}", *overrides)
        return run

    a_runs = {}
    for seed in range(size["seeds"]):
        a_runs[seed] = work / f"A_{seed}"
        forge(a_runs[seed], *size["extra"], f"seed={seed}", f"trainer.max_steps={sa}", f"trainer.val_every_n_steps={sa}",
              stages({"add": 1.0}, sa))
        print(f"seed {seed}: task A trained", flush=True)

    # EWC's strength, chosen on the validation split of seed 0: the best mean of A and B
    selection = {}
    for strength in size["strengths"]:
        run = task_b(a_runs[0], 0, f"ewc{strength:g}", ["callbacks=[default,ewc]", "callbacks.ewc.sources=[add]",
                                                       f"callbacks.ewc.strength={strength}"])
        selection[f"{strength:g}"] = val_scores(run)
        print(f"ewc strength {strength:g}: validation {selection[f'{strength:g}']}", flush=True)
    best = max(size["strengths"], key=lambda s: sum(selection[f"{s:g}"].values()))
    methods["ewc"] = ["callbacks=[default,ewc]", "callbacks.ewc.sources=[add]", f"callbacks.ewc.strength={best}"]

    per_seed: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for seed, a_run in a_runs.items():
        after_a = json.loads((a_run / "metrics.json").read_text())["test/add/exact_match"]
        for name, overrides in methods.items():
            run = task_b(a_run, seed, name, overrides)
            m = json.loads((run / "metrics.json").read_text())
            per_seed[name].append({"A_after_A": after_a, "A_after_B": m["test/add/exact_match"], "B": m["test/sub/exact_match"]})
            print(f"seed {seed} {name}: {per_seed[name][-1]}", flush=True)

    def mean(name: str, key: str) -> float:
        return round(statistics.fmean(r[key] for r in per_seed[name]), 4)

    forgetting = {name: round(mean(name, "A_after_A") - mean(name, "A_after_B"), 4) for name in methods}
    summary = {
        name: {"A_after_A": mean(name, "A_after_A"), "A_after_B": mean(name, "A_after_B"), "B": mean(name, "B"),
               "forgetting": forgetting[name],
               "forgetting_vs_naive": round(forgetting[name] / forgetting["naive"], 3) if forgetting["naive"] else None,
               "B_minus_naive": round(mean(name, "B") - mean("naive", "B"), 4), "per_seed": per_seed[name]}
        for name in methods
    }
    met = {name: summary[name]["forgetting_vs_naive"] is not None and summary[name]["forgetting_vs_naive"] <= 0.5
           and summary[name]["B_minus_naive"] >= -0.02 for name in ("rehearsal", "ewc")}
    result = {
        "benchmark": "forgetting of task A (2-digit addition) after task B (2-digit subtraction), forge transformer",
        "size": "smoke" if args.smoke else "cpu", "seeds": size["seeds"], "steps_a": sa, "steps_b": sb, "rehearsal_share": SHARE,
        "ewc_strength": {"grid": size["strengths"], "validation": selection, "chosen": best},
        "methods": summary,
        "target": "forgetting with rehearsal or EWC <= 0.5 x naive, B within 2 points of naive",
        "target_met": met,
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "seconds": round(time.time() - start),
    }
    out = work / "continual.json" if args.smoke else HERE / "results" / "continual.json"  # a smoke run is no result
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, s in summary.items():
        print(f"{name:10s} A {s['A_after_A']:.3f} -> {s['A_after_B']:.3f} (forgetting {s['forgetting']:.3f}, "
              f"{s['forgetting_vs_naive']} x naive)  B {s['B']:.3f} ({s['B_minus_naive']:+.3f} vs naive)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
