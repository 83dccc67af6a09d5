"""CLI latency: median wall time of `forge --help` and `forge validate +recipe=quickstart`.

Each command is started fresh (a new Python process, as a user types it), 10 times, after one
untimed warm-up run. `python -c pass` and `python -c "import lightning"` are timed the same way
for scale. Writes benchmarks/results/cli_latency.json.

    python benchmarks/cli_latency.py [--repeats 10]
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


def timed(cmd: list[str], repeats: int) -> list[float]:
    subprocess.run(cmd, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    forge = shutil.which("forge") or str(Path(sys.executable).parent / "forge")
    commands = {
        "forge --help": [forge, "--help"],
        "forge validate +recipe=quickstart": [forge, "validate", "+recipe=quickstart"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import lightning'": [sys.executable, "-c", "import lightning"],
    }
    rows = {name: timed(cmd, args.repeats) for name, cmd in commands.items()}
    result = {
        "benchmark": "CLI latency (fresh process each time)",
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "repeats": args.repeats,
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in rows.items()},
        "all_seconds": {k: [round(t, 3) for t in v] for k, v in rows.items()},
    }
    (HERE / "results" / "cli_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_seconds"], indent=2))


if __name__ == "__main__":
    main()
