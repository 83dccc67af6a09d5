"""`forge compare A B`: two runs scored item by item, and whether B beats A: HumanEval outcomes
(exact McNemar test) or per-row held-out losses (paired permutation test), each with its
interval, minimum detectable effect and verdict (forge.compare)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forge.compare import SAME_DATA, compare_losses, compare_pass_fail, format_table, heldout_losses, humaneval_outcomes, paired


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="forge compare", description=__doc__)
    parser.add_argument("a", type=Path, help="run directory A")
    parser.add_argument("b", type=Path, help="run directory B")
    parser.add_argument("--model", default="fine-tuned", choices=("fine-tuned", "base"),
                        help="which of each run's evaluated models (default: fine-tuned)")
    parser.add_argument("--metric", choices=("pass", "loss"), default="pass",
                        help="pass: HumanEval pass/fail per problem (default); loss: held-out loss per prepared row")
    parser.add_argument("--split", default="test", help="the held-out split of --metric loss (default: test)")
    parser.add_argument("--prompt", choices=("completion", "chat"), help="the HumanEval prompt, when a run has both")
    parser.add_argument("--alpha", type=float, default=0.05, help="the test's level (default: 0.05)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be between 0 and 1, not {args.alpha:g}")
    from forge.runs.listing import default_roots, resolve

    args.a, args.b = (run if run.is_dir() or "/" in str(run) else resolve(str(run), default_roots()) for run in (args.a, args.b))
    names = (str(args.a), str(args.b))
    if args.metric == "loss":
        (file_a, a), (file_b, b) = (heldout_losses(run, args.model, args.split) for run in (args.a, args.b))
        comparison = compare_losses(*paired(a, b, names, SAME_DATA), alpha=args.alpha)
    else:
        (file_a, a), (file_b, b) = (humaneval_outcomes(run, args.model, args.prompt) for run in (args.a, args.b))
        comparison = compare_pass_fail(*paired(a, b, names), alpha=args.alpha)
    if args.json:
        print(json.dumps({"a": str(file_a), "b": str(file_b), **comparison.to_dict()}, indent=2))
    else:
        print(format_table(comparison, (str(file_a), str(file_b))))
