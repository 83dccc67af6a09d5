"""The deploy gate: a registered version against another (or against the base model it was
fine-tuned from) on the same held-out items, with a recommendation to deploy or not and why.

Both are paired on the items each was scored on (forge.compare): the per-row held-out losses
(paired permutation test) and, when the runs were evaluated on a task with a pass/fail score
(HumanEval or generated code tasks), its outcomes (exact McNemar). The task's score decides when
there is one: it is what the model is for; the held-out loss decides otherwise. A version is
recommended only when the deciding comparison names it better (significant, and at least the
minimum detectable effect) by at least `margin`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from forge import registry
from forge.compare import (B_BETTER, SAME_DATA, Comparison, compare_losses, compare_pass_fail, heldout_losses, humaneval_outcomes,
                           paired)
from forge.errors import ForgeError
from forge.run_dir import RunPaths

PASS, LOSS = "pass@1", "test/loss"


@dataclass(frozen=True)
class Verdict:
    candidate: str
    against: str
    loss: Optional[float]
    against_loss: Optional[float]
    decided_by: str
    comparisons: dict[str, Comparison]
    deploy: bool
    recommendation: str

    @property
    def comparison(self) -> Comparison:
        return self.comparisons[self.decided_by]

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "against": self.against, "test/loss": self.loss, "against/test/loss": self.against_loss,
                "test/perplexity": _exp(self.loss), "against/test/perplexity": _exp(self.against_loss), "decided_by": self.decided_by,
                "comparison": self.comparison.to_dict(), "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()},
                "deploy": self.deploy, "recommendation": self.recommendation}


def test_version(repo: registry.Repo, spec: str, against: str = "base", alpha: float = 0.05, margin: float = 0.0) -> Verdict:
    """`spec` (NAME@vX.Y.Z) against `against` (NAME@vX.Y.Z, or base)."""
    candidate = _version(repo, spec)
    run = repo.git / candidate["run"]
    if against == "base":
        other_run, other_model, other_loss = run, "base", candidate["metrics"].get("base/test/loss")
    else:
        found = _version(repo, against)
        other_run, other_model, other_loss = repo.git / found["run"], "fine-tuned", found["metrics"].get("test/loss")
    names = (against, spec)
    sides = ((other_run, other_model), (run, "fine-tuned"))
    comparisons: dict[str, Comparison] = {}
    if all(any(r.glob(f"humaneval/{m}.*.jsonl")) for r, m in sides):
        (_, a), (_, b) = (humaneval_outcomes(r, m) for r, m in sides)
        comparisons[PASS] = compare_pass_fail(*paired(a, b, names), alpha=alpha)
    if all(RunPaths(r).heldout(m, "test").exists() for r, m in sides):
        (_, a), (_, b) = (heldout_losses(r, m) for r, m in sides)
        # a run trained without a test split (the learning loop's, scored on its task) has no
        # rows, and runs on different data have no rows in common: the task's score decides then
        if a and b and (PASS not in comparisons or a.keys() == b.keys()):
            comparisons[LOSS] = compare_losses(*paired(a, b, names, SAME_DATA), alpha=alpha)
    if not comparisons:
        raise ForgeError(f"models test: {spec} and {against} have no per-item outcomes in common (heldout/ losses or humaneval/ "
                         "results); evaluate both runs again (stage=evaluate, eval.compare_base=true for base)")
    deciding = PASS if PASS in comparisons else LOSS
    c = comparisons[deciding]
    gain = c.difference if deciding == PASS else -c.difference
    better = c.verdict == B_BETTER and gain >= margin
    score = "pass@1 {:.3f} vs {:.3f}" if deciding == PASS else "held-out loss {:.4g} vs {:.4g}"
    why = f"{score.format(c.b_mean, c.a_mean)}, p={c.p_value:.3g}, minimum detectable effect {c.mde:.3g}"
    if c.verdict == B_BETTER and not better:
        why += f"; the gain {gain:.3g} is below the required margin {margin:g}"
    recommendation = f"{'deploy' if better else 'do not deploy'}: {spec} {'beats' if better else 'is not shown better than'} {against} ({why})"
    return Verdict(spec, against, candidate["metrics"].get("test/loss"), other_loss, deciding, comparisons, better, recommendation)


def _version(repo: registry.Repo, spec: str) -> dict[str, Any]:
    name, number = registry.parse_spec(spec)
    found = next((v for v in registry.versions(repo, name) if v["version"] == number), None)
    if found is None:
        raise ForgeError(f"models test: {spec} is not a registered version; forge models versions {name}")
    return found


def _exp(loss: Optional[float]) -> Optional[float]:
    return math.exp(loss) if isinstance(loss, (int, float)) else None
