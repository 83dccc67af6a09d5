"""`forge compare A B`: two runs' HumanEval outcomes, item by item, and whether B beats A
(forge.compare: exact McNemar test, interval, minimum detectable effect, verdict)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forge.compare import compare_pass_fail, format_table, humaneval_outcomes, paired


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="forge compare", description=__doc__)
    parser.add_argument("a", type=Path, help="run directory A")
    parser.add_argument("b", type=Path, help="run directory B")
    parser.add_argument("--model", default="fine-tuned", choices=("fine-tuned", "base"),
                        help="which of each run's evaluated models (default: fine-tuned)")
    parser.add_argument("--prompt", choices=("completion", "chat"), help="the HumanEval prompt, when a run has both")
    parser.add_argument("--alpha", type=float, default=0.05, help="the test's level (default: 0.05)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be between 0 and 1, not {args.alpha:g}")
    from forge.runs.listing import default_roots, resolve

    args.a, args.b = (run if run.is_dir() or "/" in str(run) else resolve(str(run), default_roots()) for run in (args.a, args.b))
    file_a, a = humaneval_outcomes(args.a, args.model, args.prompt)
    file_b, b = humaneval_outcomes(args.b, args.model, args.prompt)
    comparison = compare_pass_fail(*paired(a, b, (str(args.a), str(args.b))), alpha=args.alpha)
    if args.json:
        print(json.dumps({"a": str(file_a), "b": str(file_b), **comparison.to_dict()}, indent=2))
    else:
        print(format_table(comparison, (str(file_a), str(file_b))))
