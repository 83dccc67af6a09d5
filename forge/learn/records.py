"""One recorded agent run, and its validation from what an agent wrote.

A record is the `agent_runs` SFT record (`task`, `response` or `messages`, `signals`) plus who
produced it (role, prompt variant, model, version) and when, so that a stored run exported back
to JSONL is training data as it stands. The reward is always computed here from the signals and
the configured weights: a reward an agent wrote is ignored, so changing the weights cannot mix
two scales in one store.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from forge.errors import ForgeError
from forge.learn.config import SIGNALS

RECORD_SIGNALS = (*SIGNALS, "tests_total")  # tests_total: the denominator of tests_passed, never weighed alone
REQUIRED = ("task", "role", "model", "signals")
OPTIONAL = ("response", "messages", "id", "time", "task_id", "prompt_variant", "version", "heldout", "latency", "cost")
IGNORED = ("reward",)  # written by exports; recomputed, never trusted
TEXT_FIELDS = ("id", "task_id", "prompt_variant", "version")


@dataclass
class Run:
    task: str
    role: str
    model: str
    signals: dict[str, Any]
    reward: float
    response: Optional[str] = None
    messages: Optional[list[dict[str, Any]]] = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: now())
    task_id: Optional[str] = None
    prompt_variant: Optional[str] = None
    version: Optional[str] = None
    heldout: bool = False  # an evaluation task: never exported for training
    latency: Optional[float] = None  # seconds
    cost: Optional[float] = None  # per run, in the unit of the router's costs

    @property
    def passed(self) -> Optional[bool]:
        """All tests passed; None when the run reports no tests."""
        return passed(self.signals)

    def record(self) -> dict[str, Any]:
        """The JSONL record: the `agent_runs` SFT format with this run's other fields beside it."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def utc(value: Any, where: str) -> str:
    """An ISO 8601 time as one fixed-width UTC form, so that times compare as strings in any database."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ForgeError(f"{where}: time {value!r} is not an ISO 8601 time; write e.g. 2025-01-31T12:00:00+00:00") from None
    else:
        raise ForgeError(f"{where}: time must be an ISO 8601 string, got {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def passed(signals: Mapping[str, Any]) -> Optional[bool]:
    value = signals.get("tests_passed")
    if value is None:
        return None
    total = signals.get("tests_total")
    return value >= total if total else value >= 1


def parse(record: Any, weights: Mapping[str, float], where: str = "record") -> Run:
    """A Run from a parsed JSON record, or a one-line ForgeError naming `where` and the field."""
    if not isinstance(record, dict):
        raise ForgeError(f"{where}: expected a JSON object, got {type(record).__name__}")
    known = (*REQUIRED, *OPTIONAL, *IGNORED)
    unknown = [k for k in record if k not in known]
    if unknown:
        raise ForgeError(f"{where}: unknown field {unknown[0]!r}; a run has {', '.join(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if record.get(k) is None]
    if missing:
        raise ForgeError(f"{where}: field {missing[0]!r} is missing; a run needs {', '.join(REQUIRED)} and response or messages")
    for key in ("task", "role", "model"):
        _text(record, key, where, required=True)
    for key in TEXT_FIELDS:
        _text(record, key, where, required=False)
    if record.get("response") is None and record.get("messages") is None:
        raise ForgeError(f"{where}: give the agent's answer as 'response' (text) or 'messages' (a list of chat messages)")
    if record.get("response") is not None:
        _text(record, "response", where, required=False)
    if record.get("messages") is not None:
        _messages(record, where)
    heldout = record.get("heldout", False)
    if not isinstance(heldout, bool):
        raise ForgeError(f"{where}: field 'heldout' must be true or false, got {heldout!r}")
    signals = _signals(record["signals"], where)
    measures = {key: _measure(record, signals, key, where) for key in ("latency", "cost")}
    for key, value in measures.items():
        if value is not None:
            signals[key] = value  # one value in both places, so reward weights on it apply
    run = Run(task=record["task"], role=record["role"], model=record["model"], signals=signals,
              reward=_reward(signals, weights, where), response=record.get("response"), messages=record.get("messages"),
              task_id=record.get("task_id"), prompt_variant=record.get("prompt_variant"), version=record.get("version"),
              heldout=heldout, **measures)
    if record.get("id") is not None:
        run.id = record["id"]
    if record.get("time") is not None:
        run.time = utc(record["time"], where)
    _check_trainable(run, weights, where)
    return run


def _text(record: dict, key: str, where: str, required: bool) -> None:
    value = record.get(key)
    if value is None:
        return
    if not isinstance(value, str) or (required and not value.strip()) or (key in TEXT_FIELDS and not value):
        raise ForgeError(f"{where}: field {key!r} must be a {'non-empty ' if required or key in TEXT_FIELDS else ''}string, "
                         f"got {value!r}"[:300])


def _messages(record: dict, where: str) -> None:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ForgeError(f"{where}: field 'messages' must be a non-empty list of chat messages ({{'role': ..., 'content': ...}})")


def _signals(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ForgeError(f"{where}: field 'signals' must be an object of reward signals ({', '.join(RECORD_SIGNALS)})")
    for name, v in value.items():
        if name not in RECORD_SIGNALS:
            raise ForgeError(f"{where}: signals.{name} is not a signal; use {', '.join(RECORD_SIGNALS)}")
        if not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            raise ForgeError(f"{where}: signals.{name} must be a number or true/false, got {v!r}"[:300])
        if v < 0:
            raise ForgeError(f"{where}: signals.{name}={v} cannot be negative")
    total = value.get("tests_total")
    if total is not None and (isinstance(total, bool) or total != int(total)):
        raise ForgeError(f"{where}: signals.tests_total must be a whole number of tests, got {total!r}")
    if total and value.get("tests_passed", 0) > total:
        raise ForgeError(f"{where}: signals.tests_passed={value['tests_passed']} is more than signals.tests_total={total}")
    return dict(value)


def _measure(record: dict, signals: dict, key: str, where: str) -> Optional[float]:
    """latency or cost, given at the top level or in signals (the same value if in both)."""
    top, inner = record.get(key), signals.get(key)
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, float)) or not math.isfinite(top) or top < 0):
        raise ForgeError(f"{where}: field {key!r} must be a non-negative number, got {top!r}"[:300])
    if top is not None and inner is not None and top != inner:
        raise ForgeError(f"{where}: {key}={top} and signals.{key}={inner} differ; give it once")
    value = top if top is not None else inner
    return None if value is None else float(value)


def _reward(signals: dict, weights: Mapping[str, float], where: str) -> float:
    from forge.data.sft.examples import BadRecord
    from forge.data.sft.formats import run_reward

    try:
        return run_reward(signals, dict(weights))
    except BadRecord as e:
        raise ForgeError(f"{where}: {e}") from None


def _check_trainable(run: Run, weights: Mapping[str, float], where: str) -> None:
    """The record as an export will write it must read as `agent_runs` training data."""
    from forge.data.sft.examples import BadRecord
    from forge.data.sft.formats import agent_run

    try:
        agent_run(dict(weights), None)(run.record(), "learn")
    except BadRecord as e:
        raise ForgeError(f"{where}: {e}; the run would not read back as agent_runs training data") from None
