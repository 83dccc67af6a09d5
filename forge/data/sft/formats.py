"""JSONL record formats: prompt/completion, chat `messages`, alpaca, and agent run records.

Each parser takes one parsed line and returns its examples, or raises BadRecord naming the field
that is wrong (the line then goes to the quarantine with its file and line number).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from forge.data.sft.examples import BadRecord, Chat, Completion, Example

ROLES = ("system", "user", "assistant", "tool")


def _text(record: dict, key: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRecord(f"field {key!r} must be a non-empty string")
    return value


def _mapping(record: Any) -> dict:
    if not isinstance(record, dict):
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    return record


def prompt_completion(record: Any, group: str) -> list[Example]:
    r = _mapping(record)
    return [Completion(_text(r, "prompt"), _text(r, "completion"), group)]


def messages(record: Any, group: str) -> list[Example]:
    msgs = _mapping(record).get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRecord("field 'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadRecord(f"messages[{i}] needs a role in {ROLES} and a string content")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise BadRecord("no assistant message to train on")
    return [Chat(out, group)]


def alpaca(record: Any, group: str) -> list[Example]:
    r = _mapping(record)
    instruction, extra = _text(r, "instruction"), _text(r, "input", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [Chat([{"role": "user", "content": user}, {"role": "assistant", "content": _text(r, "output")}], group)]


def agent_run(weights: dict[str, float], min_reward: Optional[float]) -> Callable[[Any, str], list[Example]]:
    """Agent run records: a task, the agent's answer (text or messages) and reward signals.

    `{"task": ..., "response": ... | "messages": [...], "signals": {"compiled": true,
    "tests_passed": 7, "tests_total": 8, "errors": 1, "human_rating": 4}}`. The reward is the
    weighted sum of the signals (booleans count 0/1; tests_passed is the passed fraction when
    tests_total is given); runs below `min_reward` are skipped and counted, not quarantined.
    """

    def parse(record: Any, group: str) -> list[Example]:
        r = _mapping(record)
        signals = r.get("signals")
        if not isinstance(signals, dict):
            raise BadRecord("field 'signals' must be an object of reward signals")
        reward = run_reward(signals, weights)
        if min_reward is not None and reward < min_reward:
            raise BelowThreshold(reward)
        if "messages" in r:
            return messages({"messages": [{"role": "user", "content": _text(r, "task")}, *r["messages"]]}, group)
        return [Chat([{"role": "user", "content": _text(r, "task")}, {"role": "assistant", "content": _text(r, "response")}], group)]

    return parse


class BelowThreshold(Exception):
    """An agent run whose reward is under the threshold: filtered by choice, not malformed."""

    def __init__(self, reward: float) -> None:
        super().__init__(f"reward {reward:.3g} below threshold")
        self.reward = reward


def run_reward(signals: dict[str, Any], weights: dict[str, float]) -> float:
    total = 0.0
    for name, weight in weights.items():
        value = signals.get(name)
        if value is None:
            continue
        if name == "tests_passed" and signals.get("tests_total"):
            value = value / signals["tests_total"]
        if not isinstance(value, (int, float)):
            raise BadRecord(f"signals.{name} must be a number or boolean, got {value!r}")
        total += weight * float(value)
    return total


PARSERS: dict[str, Callable[[Any, str], list[Example]]] = {
    "prompt_completion": prompt_completion,
    "messages": messages,
    "alpaca": alpaca,
}
