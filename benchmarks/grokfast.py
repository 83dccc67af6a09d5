"""Steps to 95% validation accuracy on x·y mod 97: the plain baseline against GrokFast-EMA and
GrokFast-MA, three seeds each, every run the real `forge +recipe=grokfast_modular` command.

Settings as in the GrokFast paper (its Table: baseline and GrokFast rows): Adam lr 1e-3, betas
(0.9, 0.98), batch 512, 10-step warmup, 50% of the pairs trained on; baseline without weight
decay, EMA (α 0.98, λ 2) with 0.005, MA (window 100, λ 5) with 0.01. A run stops at 95% or at its
cap; a baseline that hits the cap makes the speed-up a lower bound. Writes
results/grokfast_modular.json, .md and .png (validation accuracy against steps).

    python benchmarks/grokfast.py --baseline-cap 15000 --grokfast-cap 5000 --parallel 5 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
METRIC = "val/exact_match"
METHODS = {
    "baseline": ["~optim/grokfast", "optim.weight_decay=0"],
    "grokfast_ema": ["optim/grokfast=ema", "optim.weight_decay=0.005"],
    "grokfast_ma": ["optim/grokfast=ma", "optim.weight_decay=0.01"],
}


def run(method: str, seed: int, cap: int, val_every: int, threads: int, out: Path, cache: Path) -> dict:
    run_dir = out / f"{method}_seed{seed}"
    args = ["+recipe=grokfast_modular", *METHODS[method], f"seed={seed}", f"trainer.max_steps={cap}",
            f"trainer.val_every_n_steps={val_every}", f"trainer.checkpoint_every_n_steps={cap}", f"trainer.threads={threads}",
            "logger=csv", "export=none", f"cache_dir={cache}", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forge", *args], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    train = json.loads((run_dir / "train.json").read_text())
    curve = [(int(row["step"]) + 1, float(row[METRIC])) for row in csv.DictReader(open(run_dir / "csv" / "metrics.csv"))
             if row.get(METRIC)]  # validation is logged at the step before the one it follows
    reached = train.get(f"steps_to/{METRIC}")
    return {"method": method, "seed": seed, "cap": cap, "val_every_n_steps": val_every, "steps_to_95": reached,
            "reached": reached is not None, "steps_run": train["steps"], "final_val_exact_match": curve[-1][1] if curve else None,
            "wall_seconds": round(seconds, 1), "command": "forge " + " ".join(args[:-2]), "curve": curve}


def summarize(runs: list[dict]) -> dict:
    by = {m: [r for r in runs if r["method"] == m] for m in METHODS}
    base = by["baseline"]
    out = {}
    for method in ("grokfast_ema", "grokfast_ma"):
        if not by[method] or not base:
            continue
        steps = [r["steps_to_95"] if r["reached"] else r["steps_run"] for r in by[method]]
        base_steps = [r["steps_to_95"] if r["reached"] else r["steps_run"] for r in base]
        out[method] = {"mean_steps": statistics.mean(steps), "baseline_mean_steps": statistics.mean(base_steps),
                       "speedup": statistics.mean(base_steps) / statistics.mean(steps),
                       "speedup_is_lower_bound": not all(r["reached"] for r in base),
                       "all_reached": all(r["reached"] for r in by[method])}
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"baseline": "tab:gray", "grokfast_ema": "tab:blue", "grokfast_ma": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        steps, acc = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(steps, acc, color=colors[r["method"]], alpha=0.8, label=r["method"] if r["seed"] == 0 else None)
    ax.axhline(0.95, color="black", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("validation accuracy (x*y mod 97, held-out pairs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(result: dict) -> str:
    lines = [f"# GrokFast on x*y mod 97 ({result['date']}, {result['machine']})", "",
             "| method | seed | steps to 95% val acc | cap | wall s |", "|---|---|---|---|---|"]
    for r in result["runs"]:
        steps = r["steps_to_95"] if r["reached"] else f"not reached ({r['final_val_exact_match']:.3f} at the cap)"
        lines.append(f"| {r['method']} | {r['seed']} | {steps} | {r['cap']} | {r['wall_seconds']} |")
    lines += ["", "| method | mean steps | baseline mean steps | speed-up |", "|---|---|---|---|"]
    for m, s in result["summary"].items():
        bound = " (lower bound: baseline capped)" if s["speedup_is_lower_bound"] else ""
        lines.append(f"| {m} | {s['mean_steps']:.0f} | {s['baseline_mean_steps']:.0f} | {s['speedup']:.1f}x{bound} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--baseline-cap", type=int, default=15000)
    parser.add_argument("--grokfast-cap", type=int, default=5000)
    parser.add_argument("--baseline-val-every", type=int, default=200)
    parser.add_argument("--grokfast-val-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("grokfast_runs"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "grokfast_modular.json")
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (give each --threads 1)")
    args = parser.parse_args()
    cache = args.workdir / "cache"
    subprocess.run([sys.executable, "-m", "forge", "+recipe=grokfast_modular", "stage=prepare", f"cache_dir={cache}",
                    f"hydra.run.dir={args.workdir / 'prepare'}"], check=True, stdout=subprocess.DEVNULL)

    def one(job: tuple[str, int]) -> dict:
        method, seed = job
        baseline = method == "baseline"
        r = run(method, seed, args.baseline_cap if baseline else args.grokfast_cap,
                args.baseline_val_every if baseline else args.grokfast_val_every, args.threads, args.workdir, cache)
        print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
        return r

    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(one, [(m, s) for m in args.methods for s in args.seeds]))
    previous = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    runs += [r for r in previous if r["method"] not in args.methods]  # methods not run now are kept
    result = {"date": dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}, Python {sys.version.split()[0]}",
              "task": "x*y mod 97, 50% of the 9,409 pairs trained on, validation = the other half",
              "paper": {"baseline": 39890, "grokfast_ma_wd0.01": 790, "grokfast_ema_wd0.005": 910},
              "runs": sorted(runs, key=lambda r: (list(METHODS).index(r["method"]), r["seed"])), "summary": {}}
    result["summary"] = summarize(result["runs"])
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    plot(result["runs"], args.out.with_suffix(".png"))
    print(markdown(result))


if __name__ == "__main__":
    main()
