"""A forge-trained algorithmic model compressed three ways: float, BitNet b1.58 trained in from
scratch with the same budget, and RTN int2 (group 64) of the float model.

The model is the quickstart recipe's (3-digit addition, a 2-layer width-128 transformer, 1,500
steps); every run goes through the real `forge` command. The BitNet run is the same command
with `compressor=bitnet` (BitLinear layers from step 0, packed at 1.6 bits/weight); RTN int2 is
`stage=compress` then `stage=evaluate` with `compressor=rtn compressor.bits=2` on the float run.
Test exact match is on the 2,000 held-out problems. Writes
benchmarks/results/compression_algorithmic.json.

    python benchmarks/compression_algorithmic.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def forge(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "forge", "+recipe=quickstart", "logger=csv", *args], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"forge {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def row(run: Path, name: str, seed: int) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    train = json.loads((run / "train.json").read_text())
    out = {"method": name, "seed": seed, "exact_match": metrics["test/exact_match"], "train_seconds": train["train_seconds"]}
    if "compressed/bits_per_weight" in metrics:
        out.update({"exact_match": metrics["compressed/test/exact_match"], "float_exact_match": metrics["test/exact_match"],
                    "bits_per_weight": metrics["compressed/bits_per_weight"],
                    "file_bits_per_parameter": metrics["compressed/file_bits_per_parameter"],
                    "kl": metrics["compressed/kl"], "top1_agreement": metrics["compressed/top1_agreement"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compression_algorithmic.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in args.seeds:
            common = [f"seed={seed}", f"cache_dir={work / 'cache'}"]
            float_run, bit_run = work / f"float-{seed}", work / f"bitnet-{seed}"
            forge(*common, f"hydra.run.dir={float_run}", cwd=work)
            rows.append(row(float_run, "float32", seed))
            forge(*common, "compressor=bitnet", f"hydra.run.dir={bit_run}", cwd=work)
            rows.append(row(bit_run, "bitnet_qat_from_scratch", seed))
            for stage in ("compress", "evaluate"):
                forge(*common, "compressor=rtn", "compressor.bits=2", "compressor.group=64", f"stage={stage}",
                      f"hydra.run.dir={float_run}", cwd=work)
            rows.append(row(float_run, "rtn_int2_g64", seed))
            print(json.dumps(rows[-3:]), flush=True)
    summary = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == name]
        em = [r["exact_match"] for r in ok]
        summary[name] = {"exact_match_mean": statistics.mean(em), "exact_match_min": min(em),
                         **({"bits_per_weight": ok[0]["bits_per_weight"], "file_bits_per_parameter": ok[0]["file_bits_per_parameter"]}
                            if "bits_per_weight" in ok[0] else {})}
    float_em = summary["float32"]["exact_match_mean"]
    for s in summary.values():
        s["retention"] = s["exact_match_mean"] / float_em if float_em else None
    out = {"date": date.today().isoformat(),
           "machine": f"{platform.machine()}, torch {torch.__version__}, Python {sys.version.split()[0]}",
           "job": "forge +recipe=quickstart (3-digit addition, 2-layer width-128 transformer, 1,500 steps), test exact match on 2,000 problems",
           "summary": summary, "runs": rows}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
