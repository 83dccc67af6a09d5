"""The loop's input watch (forge.learn.inputs) on simulated streams of runs: how often it reports
on a stream that does not change, and how soon it reports a change of the incoming work.

A stream: prompt lengths log-normal (median 400 characters, sigma 0.8, rounded to whole
characters) and four roles at 60/25/13/2%. Changes at run 400: the prompts 1.5 times as long
(mean +50%), or a new role at 30% of the runs (the others in their old proportions). Each
scenario on `--streams` seeded streams, with the watch's defaults unless --window / --alpha are
given. Writes benchmarks/results/learn_input_drift.json (other settings: ..._window<W>_alpha<A>.json).

    python benchmarks/learn_input_drift.py [--streams 1000] [--window 200] [--alpha 0.001]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Optional

import numpy as np
import scipy

from machine import cpu_model  # benchmarks/machine.py, beside this script

from forge.learn.inputs import DEFAULT_ALPHA, DEFAULT_WINDOW, InputWatch

HERE = Path(__file__).resolve().parent
ROLES, SHARES = ("coder", "fixer", "judge", "planner"), (0.6, 0.25, 0.13, 0.02)
CHANGE_AT = 400
CHANGES = {"prompt_length_x1.5": "prompt_length", "new_role_30pct": "role"}


def stream(seed: int, runs: int, change: Optional[str]) -> list[dict]:
    rng = np.random.default_rng(seed)
    lengths = np.rint(np.exp(rng.normal(np.log(400), 0.8, runs))).astype(int)
    roles = rng.choice(ROLES, runs, p=SHARES).astype(object)
    if change == "prompt_length_x1.5":
        lengths[CHANGE_AT:] = np.rint(lengths[CHANGE_AT:] * 1.5).astype(int)
    elif change == "new_role_30pct":
        roles[CHANGE_AT:][rng.random(runs - CHANGE_AT) < 0.3] = "reviewer"
    return [{"prompt_length": int(n), "role": str(r)} for n, r in zip(lengths, roles)]


def reports(values: list[dict], window: int, alpha: float) -> list[tuple[str, int]]:
    """(feature, run) of each report the watch makes on the stream."""
    watch, found = InputWatch(window, alpha), []
    for i, run in enumerate(values, 1):
        found += [(shift.feature, i) for shift in watch.add(run)]
    return found


def stationary(streams: int, runs: int, window: int, alpha: float) -> dict:
    any_report = [bool(reports(stream(seed, runs, None), window, alpha)) for seed in range(streams)]
    return {"runs_per_stream": runs, "streams_with_any_report": sum(any_report) / streams}


def changed(change: str, streams: int, runs: int, window: int, alpha: float) -> dict:
    feature, delays, again, others = CHANGES[change], [], 0, 0
    for seed in range(streams):
        found = reports(stream(seed, runs, change), window, alpha)
        after = [i - CHANGE_AT for f, i in found if f == feature and i > CHANGE_AT]
        delays.append(after[0] if after else None)
        again += len(after) > 1
        others += any(f != feature for f, _ in found)
    seen = sorted(d for d in delays if d is not None)
    median = statistics.median([math.inf if d is None else d for d in delays])  # over all streams: a miss counts as never
    return {"change_at_run": CHANGE_AT, "runs_per_stream": runs,
            "median_runs_to_report": None if math.isinf(median) else median,
            "reported_within_200": sum(d <= 200 for d in seen) / streams,
            "reported_within_300": sum(d <= 300 for d in seen) / streams,
            "reported_within_500": sum(d <= 500 for d in seen) / streams,
            "reported_more_than_once": again / streams, "other_feature_reported": others / streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    args = parser.parse_args()
    start = time.perf_counter()
    result: dict = {"date": date.today().isoformat(), "streams": args.streams, "window": args.window, "alpha": args.alpha,
                    "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                                "scipy": scipy.__version__}}
    for runs in (1000, 5000):
        result[f"stationary_{runs}"] = stationary(args.streams if runs == 1000 else args.streams // 5, runs, args.window, args.alpha)
        print(f"stationary {runs} runs: {json.dumps(result[f'stationary_{runs}'])}", flush=True)
    for change in CHANGES:
        result[change] = changed(change, args.streams, CHANGE_AT + 1000, args.window, args.alpha)
        print(f"{change}: {json.dumps(result[change])}", flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    tuned = (args.window, args.alpha) == (DEFAULT_WINDOW, DEFAULT_ALPHA)
    out = HERE / "results" / ("learn_input_drift.json" if tuned else f"learn_input_drift_window{args.window}_alpha{args.alpha:g}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
