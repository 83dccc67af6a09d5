"""The prompt bandit: which prompt variant a role (coder, fixer, judge...) gets next, learnt from
the rewards of the runs that used each variant, on river's bandit policies.

One river policy per role, so that roles learn apart; variants are arm ids, so a variant joins by
being offered and starts with no history. Rewards are in [0, 1] (the loop's weighted reward of a
run); one outside is refused rather than clipped, since it means the reward weights are wrong.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence

from river import bandit, proba, stats

from forge.errors import ForgeError
from forge.learn import blob
from forge.learn.config import POLICIES

# UCB's exploration bonus is delta * sqrt(2 ln n / n_arm); rewards in [0, 1] have a standard
# deviation of at most 0.5, so 0.5 is the Hoeffding width of such a mean (delta=1 would explore
# twice as wide as the rewards need and settle slower).
UCB_DELTA = 0.5


def check_policy(policy: str, epsilon: float) -> None:
    if policy not in POLICIES:
        raise ForgeError(f"bandit policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if not 0 <= epsilon <= 1:
        raise ForgeError(f"bandit epsilon={epsilon:g}: must be in [0, 1]")


def make_policy(policy: str, epsilon: float, seed: int) -> bandit.base.Policy:
    """A river policy that tries each arm once (burn-in) before weighing it.

    Thompson sampling keeps a Beta(1, 1) posterior per arm; UCB and epsilon-greedy a running mean.
    """
    check_policy(policy, epsilon)
    if policy == "thompson":
        return bandit.ThompsonSampling(reward_obj=proba.Beta(1, 1), burn_in=1, seed=seed)
    if policy == "ucb":
        return bandit.UCB(delta=UCB_DELTA, reward_obj=stats.Mean(), burn_in=1, seed=seed)
    return bandit.EpsilonGreedy(epsilon=epsilon, reward_obj=stats.Mean(), burn_in=1, seed=seed)


def check_reward(reward: float, what: str) -> float:
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward) or not 0 <= reward <= 1:
        raise ForgeError(f"reward {reward!r} for {what}: rewards must be numbers in [0, 1]; "
                         f"check learn.reward_weights (their weighted sum is the reward)")
    return float(reward)


def feed(policy: bandit.base.Policy, coin: random.Random, arm: str, reward: float) -> None:
    """Update `policy` with `reward`; a Beta posterior counts a fractional reward r as a success
    with probability r (Agrawal & Goyal's Bernoulli trick): river's Beta would count any r > 0 as
    a whole success, so 0.1 and 1.0 would look alike."""
    if isinstance(policy.reward_obj, proba.Beta):
        policy.update(arm, reward == 1 or (0 < reward < 1 and coin.random() < reward))
    else:
        policy.update(arm, reward)


def sub_seed(seed: int, name: str) -> int:
    """A seed per role, stable across processes (str hashes are salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**32


class PromptBandit:
    """Prompt variants per role, chosen by `policy` (epsilon_greedy, ucb or thompson)."""

    KIND = "prompt bandit"

    def __init__(self, policy: str = "thompson", epsilon: float = 0.1, seed: int = 0):
        check_policy(policy, epsilon)
        self.policy, self.epsilon, self.seed = policy, epsilon, seed
        self._roles: dict[str, tuple[bandit.base.Policy, random.Random]] = {}

    def _role(self, role: str) -> tuple[bandit.base.Policy, random.Random]:
        if not isinstance(role, str) or not role:
            raise ForgeError(f"role {role!r}: give a non-empty name (e.g. coder)")
        if role not in self._roles:
            seed = sub_seed(self.seed, role)
            self._roles[role] = (make_policy(self.policy, self.epsilon, seed), random.Random(seed + 1))
        return self._roles[role]

    def select(self, role: str, variants: Sequence[str]) -> str:
        """The variant to use next; variants never seen are tried first, once each, in order."""
        arms = list(variants)
        if not arms or len(set(arms)) != len(arms) or not all(isinstance(v, str) and v for v in arms):
            raise ForgeError(f"prompt variants of role {role!r}: give one or more distinct non-empty names, got {arms!r}")
        return self._role(role)[0].pull(arms)

    def update(self, role: str, variant: str, reward: float) -> None:
        reward = check_reward(reward, f"prompt variant {variant!r} of role {role!r}")
        policy, coin = self._role(role)
        feed(policy, coin, variant, reward)

    def dumps(self) -> bytes:
        return blob.dumps(self.KIND, {"policy": self.policy, "epsilon": self.epsilon, "seed": self.seed, "roles": self._roles})

    @classmethod
    def loads(cls, data: bytes) -> PromptBandit:
        state = blob.loads(cls.KIND, data)
        out = cls(state["policy"], state["epsilon"], state["seed"])
        out._roles = state["roles"]
        return out
