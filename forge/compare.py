"""`forge compare`: is B better than A on the same items, and could this comparison tell?

Two models scored on the same items give paired outcomes, and a paired test is far more sensitive
than comparing two scores: the items both solve or both fail say nothing about which is better.

- Pass/fail per item (HumanEval): the exact McNemar test, which is the two-sided binomial test of
  the discordant items (those exactly one model passes) against a fair coin, `scipy.stats.binomtest`
  (what statsmodels' `mcnemar(exact=True)` computes). The difference in pass rate (B − A) has
  Newcombe's square-and-add interval for paired proportions (Wilson intervals of both rates,
  combined with their estimated correlation; Newcombe 1998, method 10), one of the intervals
  Fagerland, Lydersen and Laake (2014) recommend: unlike a bootstrap it keeps its coverage when few
  items are discordant (a bootstrap gives 3 discordant items of 164, all B's, an interval above 0
  where the exact test's p is 0.25).
- Losses per item (lower is better): the paired permutation test (each item's difference B − A
  flips its sign under the null; `scipy.stats.permutation_test`) and a BCa bootstrap interval of the
  mean difference (`scipy.stats.bootstrap`), both seeded.

Each comparison carries its minimum detectable effect (MDE): the true difference the test detects
with probability POWER (0.8) at this number of items. A verdict names a winner only when the test
rejects (p < alpha) AND the observed difference reaches the MDE; anything else is "no detectable
difference". This makes the verdict stricter than the test: a significant difference smaller than
the MDE is one this sample had little power for, where a significant estimate overstates the true
effect, so it is not enough to declare a winner. At a true difference equal to the MDE the test
rejects 80% of the time and the verdict names the winner about half the time; under no difference
the verdict names one less often than the test's alpha.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from scipy import optimize, stats

from forge.errors import ForgeError
from forge.run_dir import RunPaths, read_json

POWER = 0.8
PASS_FAIL, LOSS = "pass/fail", "loss"
B_BETTER, A_BETTER, NO_DIFFERENCE = "B better", "A better", "no detectable difference"
RESAMPLES = 9999


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of A and B on the same n items; `difference` is B − A (for losses, a
    negative difference means B is better); `mde` is math.inf when no difference is detectable at
    this n; `a_wins`/`b_wins` count the items where each is strictly better."""

    kind: str
    test: str
    n: int
    alpha: float
    a_mean: float
    b_mean: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    mde: float
    a_wins: int
    b_wins: int
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an infinite MDE becomes None."""
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def compare_pass_fail(a: Sequence[bool], b: Sequence[bool], alpha: float = 0.05) -> Comparison:
    """A and B's pass/fail outcomes on the same items, in the same order."""
    x, y = _paired(a, b, bool)
    n = len(x)
    a_only, b_only = int(np.sum(x & ~y)), int(np.sum(~x & y))
    both = int(np.sum(x & y))
    difference = (b_only - a_only) / n
    low, high = newcombe_interval(both, b_only, a_only, n - both - a_only - b_only, alpha)
    p = mcnemar_p(a_only, b_only)
    mde = pass_fail_mde(n, a_only + b_only, alpha)
    return Comparison(PASS_FAIL, "exact McNemar", n, alpha, float(x.mean()), float(y.mean()), difference,
                      low, high, p, mde, a_only, b_only, verdict(difference, p, mde, alpha))


def compare_losses(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, seed: int = 0,
                   n_resamples: int = RESAMPLES) -> Comparison:
    """A and B's losses on the same items, in the same order (lower is better)."""
    x, y = _paired(a, b, float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("losses must be finite numbers")
    d = y - x
    difference = float(d.mean())
    if np.ptp(d) == 0:
        low = high = difference
    else:
        ci = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha,
                             method="BCa", random_state=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    p = float(sign_flip_p(d, n_resamples, seed))
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    mde = float(loss_mde(sd, len(d), alpha))
    return Comparison(LOSS, "paired permutation", len(d), alpha, float(x.mean()), float(y.mean()), difference,
                      low, high, p, mde, int(np.sum(x < y)), int(np.sum(y < x)),
                      verdict(-difference, p, mde, alpha))


def verdict(gain: float, p: float, mde: float, alpha: float) -> str:
    """`gain`: how much better B is than A. A winner only when significant and at least the MDE."""
    if p < alpha and abs(gain) >= mde:
        return B_BETTER if gain > 0 else A_BETTER
    return NO_DIFFERENCE


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact McNemar p-value: two-sided binomial test of the discordant items against 1/2."""
    m = a_only + b_only
    return float(stats.binomtest(b_only, m, 0.5).pvalue) if m else 1.0


def newcombe_interval(both: int, b_only: int, a_only: int, neither: int, alpha: float) -> tuple[float, float]:
    """Newcombe's square-and-add interval of the difference of paired proportions B − A."""
    n = both + b_only + a_only + neither
    b_pass, a_pass = both + b_only, both + a_only
    pb, pa = b_pass / n, a_pass / n
    lb, ub = _wilson(b_pass, n, alpha)
    la, ua = _wilson(a_pass, n, alpha)
    phi = 0.0
    if 0 < b_pass < n and 0 < a_pass < n:
        cross = both * neither - b_only * a_only
        corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
        phi = corrected / math.sqrt(b_pass * (n - b_pass) * a_pass * (n - a_pass))
    low = pb - pa - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * phi * (pb - lb) * (ua - pa))
    high = pb - pa + math.sqrt((pa - la) ** 2 + (ub - pb) ** 2 - 2 * phi * (pa - la) * (ub - pb))
    return max(-1.0, low), min(1.0, high)


def pass_fail_power(effect: float, n: int, discordance: float, alpha: float) -> float:
    """Probability that the exact McNemar test rejects at level `alpha` on n items when B's pass
    rate exceeds A's by `effect` and a share `discordance` of items is discordant (at least
    `effect`). Exact: a sum over the number of discordant items m ~ Binomial(n, discordance) of the
    binomial test's rejection probability given m."""
    psi = max(discordance, effect)
    if psi == 0:
        return 0.0
    # only the numbers of discordant items that can occur count (the rest add below 1e-12)
    m = np.arange(int(stats.binom.ppf(1e-13, n, psi)), int(stats.binom.isf(1e-13, n, psi)) + 1)
    # the test rejects k <= c or k >= m - c, where c is the largest k with 2 * cdf(k) < alpha
    c = stats.binom.ppf(alpha / 2, m, 0.5) - 1
    share = (psi + effect) / (2 * psi)  # of discordant items, the share B passes
    reject = stats.binom.cdf(c, m, share) + stats.binom.sf(m - c - 1, m, share)
    return float(np.sum(stats.binom.pmf(m, n, psi) * reject))


@lru_cache(maxsize=4096)
def pass_fail_mde(n: int, discordant: int, alpha: float) -> float:
    """The difference in pass rate the exact McNemar test detects with probability POWER on n
    items, at the observed share of discordant items (pass_fail_power solved for the effect);
    math.inf when even B passing every item A fails is not detected that often."""
    psi = discordant / n
    if pass_fail_power(1.0, n, psi, alpha) < POWER:
        return math.inf
    return float(optimize.brentq(lambda e: pass_fail_power(e, n, psi, alpha) - POWER, 0.0, 1.0, xtol=1e-9))


def sign_flip_p(d: np.ndarray, n_resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Two-sided paired permutation p-value of mean(d) = 0 along the last axis (each row of a 2-D
    `d` is a comparison of its own): under the null each difference is as likely negative."""
    d = np.asarray(d, dtype=float)
    batch = max(1, 4_000_000 // d.size)  # resamples per vectorised step: bounded memory, fast
    return stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                  vectorized=True, n_resamples=n_resamples, batch=batch, axis=-1,
                                  random_state=np.random.default_rng(seed)).pvalue


@lru_cache(maxsize=1024)
def _noncentrality(n: int, alpha: float) -> float:
    """The shift (in standard errors) at which the two-sided paired t-test has power POWER."""
    t = stats.t.ppf(1 - alpha / 2, n - 1)
    # the far tail underflows to nan at large shifts: it is 0 there
    power = lambda nc: stats.nct.sf(t, n - 1, nc) + np.nan_to_num(stats.nct.cdf(-t, n - 1, nc)) - POWER  # noqa: E731
    return float(optimize.brentq(power, 0.0, t + 6.0, xtol=1e-9))


def loss_mde(sd: Any, n: int, alpha: float) -> Any:
    """The mean loss difference detected with probability POWER on n items whose paired
    differences have standard deviation `sd` (scalar or array): the paired t-test's power under
    normal differences (noncentral t), which the permutation test matches beyond a dozen items or
    so; math.inf when the sign-flip test cannot reject at all at this n."""
    if n < 2 or 2.0 ** (1 - n) >= alpha:
        return np.full_like(np.asarray(sd, dtype=float), math.inf)
    return _noncentrality(n, alpha) * np.asarray(sd, dtype=float) / math.sqrt(n)


def humaneval_outcomes(run: Path, model: str = "fine-tuned", prompt: Optional[str] = None) -> tuple[Path, dict[str, bool]]:
    """The file of a run's HumanEval completions of `model` and the outcome of each problem's first
    sample (the greedy one at temperature 0), by task id."""
    if not run.is_dir():
        raise ForgeError(f"no run directory '{run}': give the path of a run's directory")
    paths = RunPaths(run)
    if prompt is None:
        found = sorted(run.glob(f"humaneval/{model}.*.jsonl"))
        if not found:
            raise ForgeError(
                f"run '{run}' has no per-item outcomes (no humaneval/{model}.*.jsonl): compare runs evaluated "
                "with HumanEval (eval=humaneval)")
        if len(found) > 1:
            prompts = ", ".join(f.name.split(".")[-2] for f in found)
            raise ForgeError(f"run '{run}' has HumanEval outcomes for the prompts {prompts}: choose one with --prompt")
        file = found[0]
    else:
        file = paths.humaneval(model, prompt)
        if not file.exists():
            raise ForgeError(
                f"run '{run}' has no per-item outcomes for the {prompt} prompt (no {file.relative_to(run)}): "
                "compare runs evaluated with HumanEval (eval=humaneval) with that prompt")
    outcomes = {}
    for i, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("sample", 0) == 0:
                outcomes[str(record["task_id"])] = bool(record["passed"])
        except (ValueError, KeyError, AttributeError) as e:
            raise ForgeError(f"{file}, line {i}: not a HumanEval record ({e}); evaluate the run again") from None
    return file, outcomes


SAME_DATA = "per-row losses pair only on the same rows: compare runs evaluated on the same prepared data (data config and inputs)"


def heldout_losses(run: Path, model: str = "fine-tuned", split: str = "test") -> tuple[Path, dict[str, float]]:
    """The file of a run's per-row held-out losses under `model` and each scored row's loss, by
    row; the rows are those of the run's prepared data, named by its fingerprint, so two runs pair
    only on the same rows."""
    if not run.is_dir():
        raise ForgeError(f"no run directory '{run}': give the path of a run's directory")
    file = RunPaths(run).heldout(model, split)
    if not file.exists():
        raise ForgeError(f"run '{run}' has no per-row held-out losses (no {file.relative_to(run)}): evaluate it again "
                         f"(stage=evaluate{' eval.compare_base=true' if model == 'base' else ''})")
    fingerprint = (read_json(run / "data" / "meta.json") or {}).get("fingerprint", "unknown data")
    losses = {}
    for i, line in enumerate(file.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            if record["tokens"]:
                losses[f"{fingerprint}:{record['item']}"] = float(record["loss"])
        except (ValueError, KeyError, TypeError) as e:
            raise ForgeError(f"{file}, line {i}: not a held-out loss record ({e}); evaluate the run again") from None
    return file, losses


def paired(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("A", "B"),
           hint: str = "compare runs evaluated on the same problems (the same eval.humaneval.limit)") -> tuple[list[Any], list[Any]]:
    """The outcomes of A and B in one order of their common items; refused unless the item sets
    are the same, since a paired test of different items compares nothing."""
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        raise ForgeError(
            f"{names[0]} and {names[1]} were not scored on the same items: {_some(only_a)} only in {names[0]}, "
            f"{_some(only_b)} only in {names[1]}; {hint}")
    ids = sorted(a, key=_natural)
    return [a[i] for i in ids], [b[i] for i in ids]


def format_table(c: Comparison, names: tuple[str, str] = ("A", "B")) -> str:
    """One screen of text: the two means, the difference with its interval, the test, the MDE and
    the verdict with its reason."""
    pct = c.kind == PASS_FAIL
    unit = " points" if pct else ""
    value = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.4g}")
    delta = (lambda v: f"{100 * v:+.1f}") if pct else (lambda v: f"{v:+.4g}")
    size = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.4g}")
    mde = f"{size(c.mde)}{unit}" if math.isfinite(c.mde) else f"none: {c.n} items are too few"
    if c.verdict != NO_DIFFERENCE:
        reason = ""
    elif c.p_value >= c.alpha:
        reason = f" (p >= {c.alpha:g})"
    else:
        reason = f" (p < {c.alpha:g}, but the difference is below the detectable {mde})"
    rows = [
        ("A", names[0]), ("B", names[1]),
        ("items", str(c.n)),
        ("pass rate" if pct else "mean loss (lower is better)", f"A {value(c.a_mean)}   B {value(c.b_mean)}"),
        ("difference B - A", f"{delta(c.difference)}{unit}   {100 * (1 - c.alpha):g}% CI [{delta(c.ci_low)}, {delta(c.ci_high)}]"),
        ("items only A passed" if pct else "items A lower", str(c.a_wins)),
        ("items only B passed" if pct else "items B lower", str(c.b_wins)),
        (f"{c.test} p", f"{c.p_value:.3g}"),
        (f"detectable ({100 * POWER:g}% power)", mde),
        ("verdict", c.verdict + reason),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _paired(a: Sequence[Any], b: Sequence[Any], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if x.ndim != 1 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"A and B must be outcomes on the same items, one per item: A has {x.size}, B has {y.size}")
    if len(x) == 0:
        raise ValueError("no items to compare")
    return x, y


def _natural(item: str) -> list[Any]:
    """HumanEval/2 before HumanEval/10, row 2 before row 10: one fixed order, the files' own."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", item)]


def _some(ids: list[str], shown: int = 3) -> str:
    if not ids:
        return "none"
    head = ", ".join(ids[:shown]) + (", …" if len(ids) > shown else "")
    return f"{len(ids)} ({head})"


def _wilson(k: int, n: int, alpha: float) -> tuple[float, float]:
    # the interval does not depend on the tested p; at p = k/n binomtest skips its p-value search
    ci = stats.binomtest(k, n, k / n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return float(ci.low), float(ci.high)
