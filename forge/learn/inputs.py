"""Watching the incoming work for a change: the features of each recorded run (its prompt's
length, its role) in a recent window tested against a reference window.

A change in what agents are asked to do is a reason to look at the loop before the reward falls:
the deployed version was trained and gated on the old mix of tasks. The reward watch
(forge.learn.drift) sees only the outcome; this watch sees the input.

Features: `prompt_length`, the task text's length in characters (characters, not tokens, so the
measure does not change with the model), and `role`, the record's role (coder, fixer, ...).
Records have no task-type field, and their other categorical fields do not measure the incoming
work: model, version and prompt variant are chosen by the router, the loop and the bandit, and a
task id names one task, not a kind of task.

Each feature keeps a reference window (its first `window` values) and a recent window (the last
`window`), and every `window // 4` runs tests one against the other: a two-sample
Kolmogorov-Smirnov test (scipy) for the length, which sees a change of any part of its
distribution, and a chi-square test of the role counts (scipy.stats.chi2_contingency), with the
roles seen fewer than `RARE` times in both windows pooled, so that a role seen once or twice does
not decide the test. A p-value below `alpha` is a report. After a report the feature's next
`window` values become its reference: one change is reported once, and the new mix is what later
changes are measured from. (The recent window that showed the change is no reference: it may
straddle the change, and as that mix of old and new it reported a new role a second time in 95%
of 300 simulated streams.)

The defaults (window 200, alpha 0.001) are tuned on simulated streams (benchmarks/
learn_input_drift.py, 1,000 streams each): prompt lengths log-normal (median 400 characters,
sigma 0.8, rounded to whole characters), four roles at 60/25/13/2%. Without a change, 0.9% of
1,000-run streams have a report (5.5% of 5,000-run streams). From run 400, prompts 1.5 times as
long are reported a median of 200 runs after the change (91% within 300 runs, 97% within 500), a
new role on 30% of the runs a median of 50 runs after it (99.9% within 200); a change is
reported twice in 1% of streams. Windows of 100 runs keep false alarms as rare only at alpha
0.0003 (0.6%), and then report the longer prompts within 300 runs in 55% of streams.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

from scipy.stats import chi2_contingency, ks_2samp

from forge.errors import ForgeError
from forge.learn import blob
from forge.learn.config import INPUTS_MIN_WINDOW, InputsCfg
from forge.learn.records import Run

DEFAULT_WINDOW = InputsCfg.window
DEFAULT_ALPHA = InputsCfg.alpha
MIN_WINDOW = INPUTS_MIN_WINDOW
STATE = "inputs"  # the watch's key in the experience store
CHECKS = 4  # tests per window of new runs: every window // CHECKS runs
RARE = 10  # a category seen fewer times than this in both windows together is pooled with the other rare ones
NUMERIC = ("prompt_length",)
CATEGORICAL = ("role",)
FEATURES = NUMERIC + CATEGORICAL


class Shift(NamedTuple):
    """A reported change of one feature."""

    feature: str
    test: str
    p: float
    alpha: float
    reference: str  # a summary of the reference window
    recent: str  # and of the recent one
    window: int  # runs in each
    runs: int  # runs watched when the change was seen

    def reason(self) -> str:
        return (f"the incoming {self.feature.replace('_', ' ')} changed: {self.recent} over the last {self.window} runs against "
                f"{self.reference} over the {self.window} before ({self.test}, p={self.p:.3g} < {self.alpha:g}, at run {self.runs})")


def features(run: Run) -> dict[str, Any]:
    """The watched features of a run."""
    return {"prompt_length": len(run.task), "role": run.role}


def check(window: Any, alpha: Any, where: str = "input watch") -> None:
    """One-line errors for settings the watch cannot use."""
    if isinstance(window, bool) or not isinstance(window, int) or window < MIN_WINDOW:
        raise ForgeError(f"{where}: window={window!r}: must be a whole number of runs, at least {MIN_WINDOW} (e.g. {DEFAULT_WINDOW})")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ForgeError(f"{where}: alpha={alpha!r}: a significance level in (0, 1), e.g. {DEFAULT_ALPHA:g}")


class InputWatch:
    """A reference and a recent window per feature, tested against each other every few runs."""

    KIND = "input watch"

    def __init__(self, window: int = DEFAULT_WINDOW, alpha: float = DEFAULT_ALPHA) -> None:
        check(window, alpha)
        self.window, self.alpha = window, float(alpha)
        self.every = max(1, window // CHECKS)
        self.seen = 0
        self.last: Optional[tuple[str, str]] = None  # (time, id) of the latest run watched: the loop's cursor
        self._features = {name: _empty(window) for name in FEATURES}

    def update(self, run: Run) -> list[Shift]:
        """Watch one run; the changes it makes visible."""
        self.last = max(self.last, (run.time, run.id)) if self.last else (run.time, run.id)
        return self.add(features(run))

    def add(self, values: Mapping[str, Any]) -> list[Shift]:
        """Watch one run's features (`features(run)`); the changes they make visible."""
        self.seen += 1
        found = []
        for name, state in self._features.items():
            if len(state["reference"]) < self.window:
                state["reference"].append(values[name])
                continue
            state["recent"].append(values[name])
            state["pending"] += 1
            if len(state["recent"]) < self.window or state["pending"] < self.every:
                continue
            state["pending"] = 0
            shift = self._test(name, state["reference"], list(state["recent"]))
            if shift.p < self.alpha:
                found.append(shift)
                self._features[name] = _empty(self.window)
        return found

    def summary(self) -> dict[str, str]:
        """Each feature's windows as a line, for `forge learn status`."""
        out = {}
        for name, state in self._features.items():
            reference, recent = state["reference"], list(state["recent"])
            if len(reference) < self.window:
                out[name] = f"filling the reference: {len(reference)}/{self.window} runs"
            else:
                shown = _numeric if name in NUMERIC else _shares
                out[name] = f"reference {shown(reference)}; recent {shown(recent) if recent else '-'} ({len(recent)}/{self.window} runs)"
        return out

    def _test(self, name: str, reference: list[Any], recent: list[Any]) -> Shift:
        if name in NUMERIC:
            p = float(ks_2samp(reference, recent).pvalue)
            return Shift(name, "Kolmogorov-Smirnov", p, self.alpha, _numeric(reference), _numeric(recent), self.window, self.seen)
        p = _chi_square(Counter(reference), Counter(recent))
        return Shift(name, "chi-square", p, self.alpha, _shares(reference), _shares(recent), self.window, self.seen)

    def dumps(self) -> bytes:
        return blob.dumps(self.KIND, {"window": self.window, "alpha": self.alpha, "seen": self.seen, "last": self.last,
                                      "features": self._features})

    @classmethod
    def loads(cls, data: bytes) -> InputWatch:
        state = blob.loads(cls.KIND, data)
        out = cls(state["window"], state["alpha"])
        out.seen, out.last, out._features = state["seen"], state["last"], state["features"]
        return out

    @classmethod
    def restore(cls, data: Optional[bytes], window: int, alpha: float) -> InputWatch:
        """The saved watch under the current settings: a new alpha applies to the next test; a new
        window size starts the windows afresh from the next run (the runs watched stay watched)."""
        fresh = cls(window, alpha)
        if data is None:
            return fresh
        saved = cls.loads(data)
        if saved.window != window:
            fresh.seen, fresh.last = saved.seen, saved.last
            return fresh
        saved.alpha = fresh.alpha
        return saved


def _empty(window: int) -> dict[str, Any]:
    return {"reference": [], "recent": deque(maxlen=window), "pending": 0}


def _chi_square(reference: Counter, recent: Counter) -> float:
    """p-value of "both windows have the same category shares"; rare categories pooled."""
    columns: dict[str, list[int]] = {}
    for category in reference.keys() | recent.keys():
        key = category if reference[category] + recent[category] >= RARE else "\0rare"
        counts = columns.setdefault(key, [0, 0])
        counts[0] += reference[category]
        counts[1] += recent[category]
    if len(columns) < 2:
        return 1.0
    return float(chi2_contingency([[c[0] for c in columns.values()], [c[1] for c in columns.values()]]).pvalue)


def _numeric(values: list[float]) -> str:
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered)
    return f"mean {mean:.4g}, median {_median(ordered):.4g}"


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _shares(values: list[Any]) -> str:
    counts = Counter(values).most_common()
    shown = [f"{k} {n / len(values):.0%}" for k, n in counts[:4]]
    if len(counts) > 4:
        shown.append(f"{len(counts) - 4} others {sum(n for _, n in counts[4:]) / len(values):.0%}")
    return ", ".join(shown)

