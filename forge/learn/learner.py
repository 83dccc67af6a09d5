"""`Learner`: what an agent calls to record its runs (the loop's Python entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge.learn.config import load
from forge.learn.records import parse
from forge.learn.store import Stat, Store


class Learner:
    """The loop's settings (`learn.yaml` in `project`, then `settings`, then `overrides` as
    `key=value`) and its experience store, opened now so that a bad URL fails at start-up."""

    def __init__(self, project: Path = Path("."), overrides: Optional[list[str]] = None, **settings: Any) -> None:
        self.project = Path(project)
        self.cfg: DictConfig = load(self.project, overrides, settings or None)
        self.store = Store.open(self.cfg.store.url, self.project)

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
        return self.store.add([run])[0]

    def stats(self) -> list[Stat]:
        return self.store.stats()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Learner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
