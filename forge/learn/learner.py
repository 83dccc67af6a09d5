"""`Learner`: what an agent calls to choose its prompt and model and to record its runs (the
loop's Python entry point).

The prompt bandit and the model router learn from every recorded reward; their state is read and
written in the same store transaction as each choice and each record, so agents in several
processes share one bandit, and a restart continues where it left off."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf

from forge.errors import ForgeError
from forge.learn.bandit import PromptBandit
from forge.learn.config import load
from forge.learn.records import Run, parse
from forge.learn.router import Router
from forge.learn.store import Stat, Store

BANDIT = "bandit"
T = TypeVar("T")


@dataclass(frozen=True)
class Choice:
    """The model a run should use: a router model by name, or the loop's own model at a version,
    with the local OpenAI-compatible server answering for it (None for models the agent calls)."""

    model: str
    version: Optional[str] = None
    url: Optional[str] = None
    cost: Optional[float] = None


class Learner:
    """The loop's settings (`learn.yaml` in `project`, then `settings`, then `overrides` as
    `key=value`) and its experience store, opened now so that a bad URL fails at start-up."""

    def __init__(self, project: Path = Path("."), overrides: Optional[list[str]] = None, **settings: Any) -> None:
        self.project = Path(project)
        self.cfg: DictConfig = load(self.project, overrides, settings or None)
        self.store = Store.open(self.cfg.store.url, self.project)
        self._registry_lock = threading.Lock()

    @property
    def weights(self) -> dict[str, float]:
        return OmegaConf.to_container(self.cfg.reward_weights)  # type: ignore[return-value]

    def record_run(self, task: str, role: str, model: str, response: Optional[str] = None,
                   messages: Optional[list[dict[str, Any]]] = None, *, signals: dict[str, Any],
                   prompt_variant: Optional[str] = None, version: Optional[str] = None, task_id: Optional[str] = None,
                   heldout: bool = False, latency: Optional[float] = None, cost: Optional[float] = None,
                   id: Optional[str] = None, time: Optional[str] = None) -> str:
        """Validate and store one run; its id. The reward comes from `signals` and the configured
        `reward_weights`."""
        given = {"task": task, "role": role, "model": model, "response": response, "messages": messages, "signals": signals,
                 "prompt_variant": prompt_variant, "version": version, "task_id": task_id, "heldout": heldout,
                 "latency": latency, "cost": cost, "id": id, "time": time}
        run = parse({k: v for k, v in given.items() if v is not None}, self.weights, "record_run")
        return self.add([run])[0]

    def add(self, runs: Sequence[Run]) -> list[str]:
        """Store validated runs, all or none, and let the prompt bandit and the model router learn
        from their rewards in the same transaction; then, with `auto`, one pass of the loop."""
        with self.store.transaction():
            ids = self.store.add(runs)
            for run in runs:
                if run.prompt_variant is not None and run.prompt_variant in self.cfg.prompts.get(run.role, []):
                    self._update(BANDIT, self._bandit, lambda b, r=run: b.update(r.role, r.prompt_variant, r.reward))
                for tier in self._tiers_of(run.model):
                    self._update(_router_key(tier), lambda t=tier: self._router(t), lambda rt, r=run: rt.update(r.model, r.reward))
        if self.cfg.auto and runs:
            self.step()
        return ids

    def select_prompt(self, role: str, variants: Optional[Sequence[str]] = None) -> str:
        """The prompt variant the role should use next (`variants`, or `learn.prompts.ROLE`)."""
        arms = list(variants) if variants is not None else list(self.cfg.prompts.get(role, []))
        if not arms:
            raise ForgeError(f"select_prompt: role {role!r} has no prompt variants; list them in learn.prompts.{role} or pass variants")
        return self._update(BANDIT, self._bandit, lambda b: b.select(role, arms))

    def select_model(self, tier: Optional[str] = None, max_cost: Optional[float] = None) -> Choice:
        """The model the next run should use: among `learn.router.models` (of `tier`, costing at
        most `max_cost`) by the router under the cost cap; the loop's own model comes with the
        version to ask and its server, the previous version for `watch.previous_share` of runs
        while a new one is watched."""
        costs = {m.name: m.cost for m in self.cfg.router.models if tier is None or m.tier == tier}
        if tier is not None and not costs:
            raise ForgeError(f"select_model: no model of tier {tier!r} in learn.router.models")
        if costs:
            name = self._update(_router_key(tier), lambda: self._router(tier), lambda r: r.select(max_cost))
        else:
            name = self.cfg.deploy.model
        if name != self.cfg.deploy.model:
            return Choice(name, cost=costs[name])
        from forge.learn.loop import Loop

        with self._registry_lock:  # GTO's readers are not safe across threads; an agent may choose from several
            served = Loop(self.cfg, self.store, self.project).endpoints()
        if not served:
            raise ForgeError(f"select_model: {name} is not deployed yet; deploy a version (forge models deploy {name}@vX.Y.Z "
                             f"--stage {self.cfg.deploy.stage}) or let the loop deploy one")
        pick = served[-1] if len(served) > 1 and random.random() < self.cfg.watch.previous_share else served[0]
        return Choice(name, pick["version"], pick["url"], costs.get(name))

    def step(self) -> list[str]:
        """One pass of the loop (forge.learn.loop)."""
        from forge.learn.loop import Loop

        return Loop(self.cfg, self.store, self.project).step()

    def _bandit(self) -> PromptBandit:
        return PromptBandit(self.cfg.bandit.policy, self.cfg.bandit.epsilon, self.cfg.bandit.seed)

    def _router(self, tier: Optional[str]) -> Router:
        models = [(m.name, m.cost) for m in self.cfg.router.models if tier is None or m.tier == tier]
        return Router(models, self.cfg.router.cost_cap, self.cfg.router.window, self.cfg.bandit.policy, self.cfg.bandit.epsilon,
                      self.cfg.bandit.seed)

    def _tiers_of(self, model: str) -> list[Optional[str]]:
        """The routers that may have chosen `model`: the one over every model and its tier's."""
        tiers = {m.tier for m in self.cfg.router.models if m.name == model}
        return [None, *sorted(t for t in tiers if t is not None)] if tiers else []

    def _update(self, key: str, new: Callable[[], Any], use: Callable[[Any], T]) -> T:
        """Read the learner stored under `key` (or make it), use it, store it back: one transaction."""
        kind = PromptBandit if key == BANDIT else Router
        with self.store.transaction():
            blob, fresh = self.store.get_state(key), new()
            learner = kind.loads(blob) if blob else fresh
            if isinstance(learner, Router) and learner.models != fresh.models:
                learner = fresh  # learn.router.models changed: the old router's arms are not these
            out = use(learner)
            self.store.put_state(key, learner.dumps())
        return out

    def stats(self) -> list[Stat]:
        return self.store.stats()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Learner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _router_key(tier: Optional[str]) -> str:
    return f"router:{tier}" if tier else "router"
