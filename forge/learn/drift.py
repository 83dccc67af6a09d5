"""Watching reward streams for a drop: a drift detector from river per stream (a model version,
e.g. "agent@v0.0.3"), and a two-sample test of a new version's rewards against the old one's.

Only a fall of the mean is reported: a rise is no reason to roll back. Page-Hinkley is run
one-sided (river's mode="down" accumulates only the deviations below the running mean); ADWIN is
two-sided, so when it cuts its window the mean of the recent part it keeps is compared with the
mean of the whole window it had: lower is a drop, higher a rise, which is ignored.

The defaults are tuned on a Bernoulli reward stream at 0.6 that falls by a fifth, to 0.48, after
200 runs (1,000 simulated streams each), for false alarms in at most 2% of 200-run streams without
a fall: Page-Hinkley (delta 0.04, threshold 12) detects the fall a median of 147 runs after it at
1.8% false alarms; ADWIN (delta 0.9, sub-windows of 20 or more) 167 runs at 1.4%. ADWIN at its
textbook delta of 0.002 does not detect this fall within 600 runs. A median of 100 runs at 2% is
out of any detector's reach on one stream: an exact CUSUM test that knows both means and when the
fall happens needs a median of 94 runs at 6.8% false alarms and 124 runs at 1.8% in the same
simulation. So the loop pairs the watch with `compare_versions`, which tests a new version
against the old one's runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Optional

from river import drift, stats
from scipy.stats import mannwhitneyu

from forge.errors import ForgeError
from forge.learn import blob
from forge.learn.bandit import check_reward
from forge.learn.config import DETECTORS

DEFAULT_DELTA = {"adwin": 0.9, "page_hinkley": 0.04}
PH_THRESHOLD = 12.0  # Page-Hinkley's lambda: the accumulated fall (in reward units) that counts as drift
PH_MIN_RUNS = 30  # Page-Hinkley judges nothing before this many rewards
ADWIN_MIN_WINDOW = 20  # ADWIN compares no sub-window shorter than this (5 raises false alarms on 0/1 rewards)


class RewardWatch:
    """A drift detector per stream key, reporting drops of the mean reward."""

    KIND = "reward watch"

    def __init__(self, detector: str = "page_hinkley", delta: Optional[float] = None):
        if detector not in DETECTORS:
            raise ForgeError(f"drift detector {detector!r}: choose one of {', '.join(DETECTORS)}")
        delta = DEFAULT_DELTA[detector] if delta is None else delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta <= 0 \
                or (detector == "adwin" and delta >= 1):
            want = "a confidence in (0, 1)" if detector == "adwin" else "a positive magnitude, e.g. 0.04"
            raise ForgeError(f"{detector} delta={delta!r}: must be {want}")
        self.detector, self.delta = detector, float(delta)
        self._streams: dict[str, tuple[drift.base.DriftDetector, stats.Mean]] = {}

    def _new_detector(self) -> drift.base.DriftDetector:
        if self.detector == "adwin":
            return drift.ADWIN(delta=self.delta, clock=1, min_window_length=ADWIN_MIN_WINDOW)
        return drift.PageHinkley(min_instances=PH_MIN_RUNS, delta=self.delta, threshold=PH_THRESHOLD, mode="down")

    def update(self, key: str, reward: float) -> bool:
        """Add the reward of one run of `key`; True when the stream's mean reward has dropped.

        After a detection the detector starts afresh on the stream's next reward (river resets
        it), so a drop is reported once."""
        reward = check_reward(reward, f"stream {key!r}")
        if key not in self._streams:
            self._streams[key] = (self._new_detector(), stats.Mean())
        detector, mean = self._streams[key]
        mean.update(reward)
        before = detector.estimation if isinstance(detector, drift.ADWIN) else None
        detector.update(reward)
        if not detector.drift_detected:
            return False
        return before is None or detector.estimation < before

    def mean(self, key: str) -> Optional[float]:
        """The mean of all rewards of `key` (None before the first)."""
        return self._streams[key][1].get() if key in self._streams else None

    def count(self, key: str) -> int:
        return int(self._streams[key][1].n) if key in self._streams else 0

    def dumps(self) -> bytes:
        return blob.dumps(self.KIND, {"detector": self.detector, "delta": self.delta, "streams": self._streams})

    @classmethod
    def loads(cls, data: bytes) -> RewardWatch:
        state = blob.loads(cls.KIND, data)
        out = cls(state["detector"], state["delta"])
        out._streams = state["streams"]
        return out


class VersionTest(NamedTuple):
    dropped: bool  # the new version's rewards are significantly lower than the old one's
    p: float  # one-sided p-value of "new is lower"
    means: tuple[float, float]  # (new, old)


def compare_versions(new_rewards: Sequence[float], old_rewards: Sequence[float], alpha: float = 0.01) -> VersionTest:
    """One-sided Mann-Whitney U test that the new version's rewards are lower than the old one's.

    Rank-based, so it holds for any reward scale without assuming normality; on 0/1 rewards its
    tie-corrected normal approximation is the pooled two-proportion z-test (with a continuity
    correction)."""
    if not 0 < alpha < 1:
        raise ForgeError(f"alpha={alpha:g}: a significance level in (0, 1), e.g. 0.01")
    new, old = [float(r) for r in new_rewards], [float(r) for r in old_rewards]
    if not new or not old:
        raise ForgeError(f"compare_versions: both versions need rewards (new has {len(new)}, old has {len(old)})")
    if not all(math.isfinite(r) for r in new + old):
        raise ForgeError("compare_versions: rewards must be finite numbers")
    means = (sum(new) / len(new), sum(old) / len(old))
    if len(set(new + old)) == 1:  # all equal: no evidence either way (the test's variance is 0)
        return VersionTest(False, 1.0, means)
    p = float(mannwhitneyu(new, old, alternative="less").pvalue)
    return VersionTest(p < alpha, p, means)
