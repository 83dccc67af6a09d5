"""Forgetting: task A (two-digit addition), then task B (two-digit subtraction) continued from A,
with forge's transformer (recipes/continual_arithmetic.yaml: one data=mixture holds both tasks,
each run's curriculum trains one).

Task B is trained four ways from the same A run, same steps, same seed:
- naive: fine-tuning on B alone;
- rehearsal: callbacks=[default,rehearsal] at its default share (5% of each step's gradient from
  A's training rows) and at 20%;
- EWC: callbacks=[default,ewc], its strength chosen on the validation split (seed 0) from a grid;
- mix: 5% and 20% of B's batches' rows drawn from A (the staged curriculum's mix), the data-level
  replay the learning loop's incremental mode uses, with the same re-warmed learning rate.

Reported per method (mean over seeds): test exact match on A and B after B, forgetting on A
(after A minus after B) and its ratio to naive forgetting, and B's gap to naive.
Target (issue): forgetting with rehearsal or EWC at most half of naive, B within 2 points.
Writes benchmarks/results/continual.json.

    python benchmarks/continual.py            # 3 seeds, sized for 2 CPU cores (about 10 minutes)
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
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
SIZES = {
    "smoke": {"seeds": 1, "steps_a": 30, "steps_b": 20, "strengths": [1e5, 1e6], "extra": ["data.sources.add.n_train=500",
              "data.sources.sub.n_train=500", "data.sources.add.n_test=100", "data.sources.sub.n_test=100"]},
    "cpu": {"seeds": 3, "steps_a": 1000, "steps_b": 600, "strengths": [1e5, 1e6, 1e7, 1e8], "extra": []},
}
SHARES = (0.05, 0.2)  # rehearsal: its default, and a larger share


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
    sa, sb, seeds = size["steps_a"], size["steps_b"], range(size["seeds"])
    # Two runs at a time, one thread each: the same work per run as one after the other.
    pool = ThreadPoolExecutor(2)
    one = [*size["extra"], "trainer.threads=1"]

    def task_a(seed: int) -> Path:
        run = work / f"A_{seed}"
        forge(run, *one, f"seed={seed}", f"trainer.max_steps={sa}", f"trainer.val_every_n_steps={sa}", stages({"add": 1.0}, sa))
        return run

    def task_b(seed: int, name: str, method: tuple[dict[str, float], list[str]]) -> Path:
        mix, overrides = method
        run = work / f"B_{name}_{seed}"
        forge(run, *one, f"seed={seed}", f"trainer.max_steps={sb}", f"trainer.val_every_n_steps={sb}", stages(mix, sb),
              f"init_from={work / f'A_{seed}'}", *overrides)
        return run

    b_only = {"sub": 1.0}
    methods: dict[str, tuple[dict[str, float], list[str]]] = {
        "naive": (b_only, []),
        **{f"rehearsal_{share:g}": (b_only, ["callbacks=[default,rehearsal]", "callbacks.rehearsal.sources=[add]",
                                            f"callbacks.rehearsal.share={share}"]) for share in SHARES},
        **{f"mix_{share:g}": ({"sub": 1 - share, "add": share}, []) for share in SHARES},
    }
    ewc = {f"ewc_{s:g}": (b_only, ["callbacks=[default,ewc]", "callbacks.ewc.sources=[add]", f"callbacks.ewc.strength={s}"])
           for s in size["strengths"]}
    list(pool.map(task_a, seeds))
    print(f"task A trained ({len(seeds)} seeds)", flush=True)
    # EWC's strength is chosen on the validation split of seed 0 (the best mean of A and B); the
    # other methods take their defaults.
    grid = dict(zip(ewc, pool.map(lambda name: task_b(0, name, ewc[name]), ewc)))
    selection = {name: val_scores(run) for name, run in grid.items()}
    chosen = max(selection, key=lambda name: sum(selection[name].values()))
    print(f"EWC on validation: {selection}; chosen {chosen}", flush=True)
    methods[chosen] = ewc[chosen]
    jobs = [(seed, name) for seed in seeds for name in methods if not (seed == 0 and name == chosen)]
    runs = dict(zip(jobs, pool.map(lambda job: task_b(job[0], job[1], methods[job[1]]), jobs)))
    runs[(0, chosen)] = grid[chosen]

    per_seed: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for seed in seeds:
        after_a = json.loads((work / f"A_{seed}" / "metrics.json").read_text())["test/add/exact_match"]
        for name in methods:
            m = json.loads((runs[(seed, name)] / "metrics.json").read_text())
            per_seed[name].append({"A_after_A": after_a, "A_after_B": m["test/add/exact_match"], "B": m["test/sub/exact_match"]})

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
    met = {name: s["forgetting_vs_naive"] is not None and s["forgetting_vs_naive"] <= 0.5 and s["B_minus_naive"] >= -0.02
           for name, s in summary.items() if name != "naive"}
    result = {
        "benchmark": "forgetting of task A (2-digit addition) after task B (2-digit subtraction), forge transformer",
        "size": "smoke" if args.smoke else "cpu", "seeds": size["seeds"], "steps_a": sa, "steps_b": sb,
        "optim": "recipe default: AdamW lr 3e-3, 100 warmup steps, cosine; every B run re-warms from A's weights",
        "ewc_strength": {"validation": selection, "chosen": chosen},
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
        print(f"{name:16s} A {s['A_after_A']:.3f} -> {s['A_after_B']:.3f} (forgetting {s['forgetting']:.3f}, "
              f"{s['forgetting_vs_naive']} x naive)  B {s['B']:.3f} ({s['B_minus_naive']:+.3f} vs naive)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
