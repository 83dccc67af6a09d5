"""CLI latency: median wall time of `forge --help`, `forge validate +recipe=quickstart` and
`forge --cfg job +recipe=quickstart`.

Each command is started fresh (a new Python process, as a user types it), 10 times, after one
untimed warm-up run. `python -c pass` and `python -c "import lightning"` are timed the same way
for scale. With `--before FORGE`, the same commands of another forge install (e.g. a checkout of
an earlier commit in its own virtual environment) run in turn with these, A B A B, and the
ratio of the medians is reported. Writes benchmarks/results/cli_latency.json.

    python benchmarks/cli_latency.py [--repeats 10] [--before OTHER_VENV/bin/forge]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def timed(cmds: list[list[str]], repeats: int) -> list[list[float]]:
    """Each command once to warm up, then all of them in turn, `repeats` times."""
    for cmd in cmds:
        once(cmd)
    times: list[list[float]] = [[] for _ in cmds]
    for _ in range(repeats):
        for i, cmd in enumerate(cmds):
            times[i].append(once(cmd))
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--before", help="another forge executable to time the same commands against")
    args = ap.parse_args()
    forge = shutil.which("forge") or str(Path(sys.executable).parent / "forge")
    forge_args = {
        "forge --help": ["--help"],
        "forge validate +recipe=quickstart": ["validate", "+recipe=quickstart"],
        "forge --cfg job +recipe=quickstart": ["--cfg", "job", "+recipe=quickstart"],
    }
    rows: dict[str, list[float]] = {}
    before: dict[str, list[float]] = {}
    for name, rest in forge_args.items():
        if args.before:
            rows[name], before[name] = timed([[forge, *rest], [args.before, *rest]], args.repeats)
        else:
            (rows[name],) = timed([[forge, *rest]], args.repeats)
    for name, cmd in {"python -c pass": [sys.executable, "-c", "pass"],
                      "python -c 'import lightning'": [sys.executable, "-c", "import lightning"]}.items():
        (rows[name],) = timed([cmd], args.repeats)
    median = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    result = {
        "benchmark": "CLI latency (fresh process each time)",
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "repeats": args.repeats,
        "median_seconds": median,
        "all_seconds": {k: [round(t, 3) for t in v] for k, v in rows.items()},
    }
    if before:
        result["before"] = {
            "median_seconds": {k: round(statistics.median(v), 3) for k, v in before.items()},
            "ratio_after_over_before": {k: round(median[k] / statistics.median(v), 3) for k, v in before.items()},
        }
    (HERE / "results" / "cli_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k in ("median_seconds", "before")}, indent=2))


if __name__ == "__main__":
    main()
