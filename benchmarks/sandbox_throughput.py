"""Sandbox throughput: programs per second behind bubblewrap against a plain subprocess.

The same programs, the 164 HumanEval problems each with its canonical solution and tests, are
run in turn, A B C A B C: by forge's sandbox (`forge.eval.sandbox.run_programs`) behind
`bubblewrap` (namespaces, a private file system, limits; a pids cgroup when run as root) and at
level `none` (its unisolated mode: the same limits, no namespaces), and as a `plain` subprocess
(`python -I -c PROGRAM`, no limits: what a user without a sandbox would run, the peer) and the
same with `-S` (`plain_S`: no `site` import, as forge starts its programs, to separate the cost of
the boundary from that of the interpreter's start). Each
round runs all programs with `--workers` parallel workers (a thread pool, as forge does), and
once more with one worker for the per-program latency. Reports programs/s, seconds per program
and the ratios of the medians against `plain`; writes benchmarks/results/sandbox_throughput.json.

    python benchmarks/sandbox_throughput.py [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from forge.eval import isolation
from forge.eval.humaneval import problems, program
from forge.eval.sandbox import run_programs

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
PLAIN, PLAIN_S = "plain", "plain_S"
LEVELS = (isolation.BUBBLEWRAP, isolation.NONE, PLAIN, PLAIN_S)
FLAGS = {PLAIN: ["-I"], PLAIN_S: ["-I", "-S"]}


def plain(code: str, level: str) -> bool:
    return subprocess.run([sys.executable, *FLAGS[level], "-c", code], capture_output=True, timeout=10).returncode == 0


def timed(programs: list[str], level: str, workers: int) -> float:
    start = time.perf_counter()
    if level in FLAGS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            passed = list(pool.map(lambda code: plain(code, level), programs))
    else:
        passed = [o.passed for o in run_programs(programs, timeout_s=10, memory_mb=1024, workers=workers, level=level)]
    seconds = time.perf_counter() - start
    assert all(passed), f"{passed.count(False)} programs failed at level {level}"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    found = isolation.level()
    if found.name != isolation.BUBBLEWRAP:
        raise SystemExit(f"no bubblewrap boundary here ({found.why}): nothing to measure")
    programs = [program(p, p["canonical_solution"]) for p in problems()]
    timed(programs[:8], isolation.BUBBLEWRAP, 1)  # warm caches: the interpreter's files, bwrap's
    rounds: dict[str, dict[str, list[float]]] = {lv: {"parallel": [], "one": []} for lv in LEVELS}
    for _ in range(args.rounds):
        for lv in LEVELS:
            rounds[lv]["parallel"].append(timed(programs, lv, args.workers))
            rounds[lv]["one"].append(timed(programs, lv, 1))
    result = {}
    for lv in LEVELS:
        parallel, one = statistics.median(rounds[lv]["parallel"]), statistics.median(rounds[lv]["one"])
        result[lv] = {"programs_per_second": round(len(programs) / parallel, 2), "seconds_per_program": round(one / len(programs), 4),
                      "rounds_parallel_s": [round(x, 3) for x in rounds[lv]["parallel"]], "rounds_one_worker_s": [round(x, 3) for x in rounds[lv]["one"]]}
    ratio = {f"{lv}/{peer}": {"throughput": round(result[peer]["programs_per_second"] / result[lv]["programs_per_second"], 3),
                              "per_program": round(result[lv]["seconds_per_program"] / result[peer]["seconds_per_program"], 3)}
             for lv in (isolation.BUBBLEWRAP, isolation.NONE) for peer in (PLAIN, PLAIN_S)}
    report = {
        "benchmark": "sandbox throughput: HumanEval canonical solutions behind bubblewrap vs a plain subprocess",
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "root": os.geteuid() == 0},
        "programs": len(programs), "workers": args.workers, "rounds": args.rounds,
        "results": result, "overhead": ratio, "target": "per-program overhead <= 1.5x",
    }
    out = HERE / "results" / "sandbox_throughput.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"results": {lv: {k: v for k, v in r.items() if not k.startswith("rounds")} for lv, r in result.items()},
                      "overhead": ratio}, indent=2))


if __name__ == "__main__":
    main()
