"""The model router: which model (a local version, a base model, a paid one) serves the next run,
learnt from run rewards under a cap on the mean cost per run, on river's bandit policies.

A budget-paced bandit. Each call, the river policy (Thompson, UCB or epsilon-greedy) picks among
the models that two budgets allow:

- the window guard, which holds the cap: a model may be picked only if its cost plus the costs of
  the last `window - 1` picks is at most `cost_cap * window`, counting picks not made yet (the
  start of the first window) at the cheapest model's cost. Every full window of `window`
  consecutive picks then costs at most `cost_cap * window`, exactly: the check at its last pick
  says so. The cheapest model always passes (by induction: the window it closes drops a pick
  that cost at least as much as it does, or a placeholder at its cost), and the cap is at least
  its cost, so there is always a model to pick and the guard never has to break the cap.
- a token bucket, which paces the spending: it refills by `cost_cap - max_cost / window` per call
  and holds at most the dearest model's cost, and a model is allowed while its cost fits in it.
  Without it the guard alone would spend a window's budget on the dear model at the window's
  start and leave only the cheapest model for the rest (at a cap of 1.5 with models costing
  0.1, 1 and 5, a mixture of the weakest and the strongest instead of mostly the middle one).
  The bucket holds at least `cost_cap - max_cost / window` at every call, so a model whose own
  cost fits under the cap is (all but) always allowed: the policy's choice is then at least as
  good as the best affordable model by its estimates, and the dear model is mixed in at the rate
  the savings pay for. When no model fits in the bucket the cheapest one is picked.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import Optional

from forge.errors import ForgeError
from forge.learn import blob
from forge.learn.bandit import check_policy, check_reward, feed, make_policy

_SLACK = 1e-9  # float sums of costs: a pick that lands exactly on the budget fits


class Router:
    """Routes runs among `models` ([(name, cost per call)]) under `cost_cap` (mean cost per run
    over any `window` consecutive runs; None: no cap)."""

    KIND = "model router"

    def __init__(self, models: Sequence[tuple[str, float]], cost_cap: Optional[float] = None, window: int = 500,
                 policy: str = "thompson", epsilon: float = 0.1, seed: int = 0):
        self.models = [(str(name), float(cost)) for name, cost in models]
        names = [name for name, _ in self.models]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ForgeError(f"router models {names!r}: give one or more models, each with its own non-empty name")
        if any(cost < 0 for _, cost in self.models):
            raise ForgeError("router models: a cost per call cannot be negative")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ForgeError(f"router window={window!r}: a number of runs, at least 1")
        cheapest = min(cost for _, cost in self.models)
        if cost_cap is not None and cost_cap < cheapest:
            raise ForgeError(f"router cost_cap={cost_cap:g}: below the cheapest model's cost ({cheapest:g}); no model fits under it")
        check_policy(policy, epsilon)
        self.cost_cap, self.window, self.policy, self.epsilon, self.seed = cost_cap, window, policy, epsilon, seed
        self._costs = dict(self.models)
        self._policy = make_policy(policy, epsilon, seed)
        self._coin = random.Random(seed + 1)
        self._recent: deque[float] = deque(maxlen=window - 1)
        self._bucket = 0.0

    def select(self, max_cost: Optional[float] = None) -> str:
        """The model for the next run, among those costing at most `max_cost` per call."""
        names = [name for name, cost in self.models if max_cost is None or cost <= max_cost]
        if not names:
            raise ForgeError(f"max_cost={max_cost:g}: no router model costs that little (the cheapest costs "
                             f"{min(self._costs.values()):g}); raise it or add a cheaper model")
        if self.cost_cap is None:
            return self._policy.pull(names)
        dearest = max(self._costs.values())
        cheapest = min(self._costs.values())
        self._bucket = min(self._bucket + self.cost_cap - dearest / self.window, dearest)
        spent = sum(self._recent) + (self.window - 1 - len(self._recent)) * cheapest
        budget = self.cost_cap * self.window - spent
        allowed = [n for n in names if self._costs[n] <= min(self._bucket, budget) + _SLACK]
        name = self._policy.pull(allowed) if allowed else min(names, key=self._costs.__getitem__)
        self._bucket = max(self._bucket - self._costs[name], 0.0)
        self._recent.append(self._costs[name])
        return name

    def update(self, name: str, reward: float) -> None:
        """Learn from the reward of a run that `name` served."""
        if name not in self._costs:
            raise ForgeError(f"router model {name!r}: not one of {', '.join(self._costs)}; add it to learn.router.models")
        feed(self._policy, self._coin, name, check_reward(reward, f"router model {name!r}"))

    def dumps(self) -> bytes:
        return blob.dumps(self.KIND, {"models": self.models, "cost_cap": self.cost_cap, "window": self.window, "policy": self.policy,
                                      "epsilon": self.epsilon, "seed": self.seed, "learner": self._policy, "coin": self._coin,
                                      "recent": self._recent, "bucket": self._bucket})

    @classmethod
    def loads(cls, data: bytes) -> Router:
        s = blob.loads(cls.KIND, data)
        out = cls(s["models"], s["cost_cap"], s["window"], s["policy"], s["epsilon"], s["seed"])
        out._policy, out._coin, out._recent, out._bucket = s["learner"], s["coin"], s["recent"], s["bucket"]
        return out
