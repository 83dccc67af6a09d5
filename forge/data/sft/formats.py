"""Record formats: prompt/completion, chat `messages` (OpenAI), ShareGPT, alpaca, Dolly and agent run records.

Each parser takes one parsed line and returns its examples, or raises BadRecord naming the field
that is wrong (the line then goes to the quarantine with its file and line number).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Optional

from forge.data.sft.examples import BadRecord, Chat, Completion, Example

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MEDIA = ("images", "videos", "audios")  # LLaMA-Factory's multimodal keys
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "function_call": "function_call", "observation": "tool", "tool": "tool"}


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


def tool_call_text(name: Any, arguments: Any, where: str) -> str:
    """A tool call as every source writes it: <tool_call>{"name", "arguments"}</tool_call>.
    Arguments given as a JSON string (OpenAI's way) are parsed, so every source renders the same."""
    if not isinstance(name, str) or not name:
        raise BadRecord(f"{where} needs a function name")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise BadRecord(f"{where} arguments are not valid JSON") from None
    call = json.dumps({"name": name, "arguments": {} if arguments is None else arguments}, ensure_ascii=False)
    return f"<tool_call>\n{call}\n</tool_call>"


def _json_object(value: Any, where: str) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadRecord(f"{where} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRecord(f"{where} must be a JSON object")
    return value


def tool_response_text(body: str, error: bool = False) -> str:
    """A tool result as every source writes it, to come back in a user turn (a failed call's
    result is marked, so the model can learn to recover from it)."""
    return f"<tool_response{' error' if error else ''}>\n{body.strip()}\n</tool_response>"


def tools_text(tools: Any, where: str) -> str:
    """Declared tools for the system turn: one JSON definition (name, description, parameters) a
    line, so the model learns the calls against the schemas it was shown."""
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            raise BadRecord(f"field {where!r} is a string that is not JSON") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRecord(f"field {where!r} must be a list of tool definitions")
    lines = [json.dumps(t.get("function", t) if t.get("type") == "function" else t, ensure_ascii=False) for t in tools]
    return "Tools:\n" + "\n".join(lines)


def _content(content: Any, where: str) -> str:
    """A message's content: a string, or a list of parts (OpenAI `{"type": "text", "text"}`,
    LLaMA-Factory v1 `{"type": "text" | "reasoning" | "tool_call", "value"}`) joined in order."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRecord(f"{where}.content must be a string or a list of parts")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get("text", part.get("value")) if isinstance(part, dict) else None
        if kind == "text" and isinstance(value, str):
            parts.append(value)
        elif kind == "reasoning" and isinstance(value, str):
            parts.append(f"<think>\n{value.strip()}\n</think>")
        elif kind == "tool_call" and isinstance(value, (str, dict)):
            call = _json_object(value, f"{where}.content[{j}].value")
            parts.append(tool_call_text(call.get("name"), call.get("arguments"), f"{where}.content[{j}]"))
        else:
            raise BadRecord(f"{where}.content[{j}]: part type {kind!r} is not supported (text, reasoning, tool_call); "
                            "images and audio cannot be trained on by a text model")
    return "\n".join(parts)


def _weight(m: dict, role: str, where: str) -> bool:
    """Whether a turn is scored: OpenAI's `weight` and LLaMA-Factory's `loss_weight` are 0 (context
    only) or 1; only assistant turns can be scored, and a loss is either taken or not."""
    for key in ("weight", "loss_weight"):
        if key in m:
            w = m[key]
            if w not in (0, 1):
                raise BadRecord(f"{where}.{key}={w!r}: forge takes the loss on a turn or not; use 0 or 1")
            if w == 1 and role != "assistant":
                raise BadRecord(f"{where}.{key}=1 on a {role} turn: only assistant turns are scored")
            return role == "assistant" and w == 1
    return role == "assistant"


class _Builder:
    """Turns in order, merged the way the claude_code format merges them: an assistant's text and
    its tool calls are one turn, and consecutive tool results come back as one user turn."""

    def __init__(self) -> None:
        self.turns: list[dict[str, str]] = []
        self.scored: list[bool] = []
        self.tool_results = False  # the last turn is a user turn of tool results

    def add(self, role: str, text: str, scored: bool, where: str, tool_result: bool = False) -> None:
        last = self.turns[-1] if self.turns else None
        merge = last is not None and (
            (role == "assistant" and last["role"] == "assistant") or (tool_result and self.tool_results)
        )
        if merge:
            if role == "assistant" and self.scored[-1] != scored:
                raise BadRecord(f"{where}: consecutive assistant messages with different weights")
            last["content"] = "\n".join(x for x in (last["content"], text) if x)
        else:
            self.turns.append({"role": role, "content": text})
            self.scored.append(scored)
        self.tool_results = tool_result

    def chat(self, system: str, group: str) -> Chat:
        turns = self.turns
        if system:
            if turns and turns[0]["role"] == "system":
                turns[0]["content"] = f"{turns[0]['content']}\n\n{system}" if turns[0]["content"] else system
            else:
                turns, self.scored = [{"role": "system", "content": system}, *turns], [False, *self.scored]
        if not any(t["role"] == "assistant" for t in turns):
            raise BadRecord("no assistant message to train on")
        scored = tuple(i for i, s in enumerate(self.scored) if s)
        if not scored:
            raise BadRecord("every assistant message has weight 0: nothing to train on")
        return Chat(turns, group, scored=scored)


def _turns(record: Any, key: str) -> tuple[dict, list]:
    """(the record, its non-empty list of turns under `key`), for a text-only chat record."""
    r = _mapping(record)
    for media in MEDIA:
        if r.get(media):
            raise BadRecord(f"field {media!r}: a text model cannot train on media; leave these records out")
    turns = r.get(key)
    if not isinstance(turns, list) or not turns:
        raise BadRecord(f"field '{key}' must be a non-empty list")
    return r, turns


def messages(record: Any, group: str) -> list[Example]:
    """OpenAI chat fine-tuning records (also LLaMA-Factory's `messages` files): see the README
    table for what each field becomes."""
    r, msgs = _turns(record, "messages")
    chat = _Builder()
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRecord(f"{where} needs a role in {ROLES}")
        role = m["role"]
        text = _content(m.get("content"), where)
        scored = _weight(m, role, where)
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            raise BadRecord(f"{where}.name must be a string")
        if role in ("tool", "function"):
            chat.add("user", tool_response_text(text), False, where, tool_result=True)
            continue
        calls = m.get("tool_calls") or []
        legacy = m.get("function_call")
        if role != "assistant" and (calls or legacy):
            raise BadRecord(f"{where}: only assistant messages make tool calls")
        if name and role == "assistant":
            raise BadRecord(f"{where}.name={name!r} on an assistant turn: chat templates cannot show it and "
                            "dropping it would change who speaks; remove it or split the speakers into files")
        if name:
            text = f"{name}: {text}"
        if not isinstance(calls, list):
            raise BadRecord(f"{where}.tool_calls must be a list")
        pieces = [text] if text else []
        for j, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                raise BadRecord(f"{where}.tool_calls[{j}] needs a 'function' object")
            pieces.append(tool_call_text(fn.get("name"), fn.get("arguments"), f"{where}.tool_calls[{j}]"))
        if legacy is not None:
            legacy = _json_object(legacy, f"{where}.function_call")
            pieces.append(tool_call_text(legacy.get("name"), legacy.get("arguments"), f"{where}.function_call"))
        if not pieces and role == "assistant":
            raise BadRecord(f"{where} is an assistant message with neither content nor tool calls")
        chat.add("system" if role == "developer" else role, "\n".join(pieces), scored, where)
    tools = r.get("tools", r.get("functions"))
    system = tools_text(tools, "tools" if "tools" in r else "functions") if tools else ""
    return [chat.chat(system, group)]


def sharegpt(record: Any, group: str) -> list[Example]:
    """ShareGPT records: `conversations` of `from`/`value` (human, gpt, system, function_call,
    observation), with an optional top-level `system` prompt and `tools`."""
    r, convo = _turns(record, "conversations")
    chat = _Builder()
    for i, m in enumerate(convo):
        where = f"conversations[{i}]"
        if not isinstance(m, dict) or m.get("from") not in SHAREGPT_ROLES or not isinstance(m.get("value"), str):
            raise BadRecord(f"{where} needs 'from' in {tuple(SHAREGPT_ROLES)} and a string 'value'")
        role = SHAREGPT_ROLES[m["from"]]
        if role == "function_call":
            try:
                call = json.loads(m["value"])
            except json.JSONDecodeError:
                raise BadRecord(f"{where}.value of a function_call is not JSON") from None
            calls = call if isinstance(call, list) else [call]  # parallel calls come as a list
            if not all(isinstance(c, dict) for c in calls):
                raise BadRecord(f"{where}.value of a function_call must be a JSON object with name and arguments")
            text = "\n".join(tool_call_text(c.get("name"), c.get("arguments"), where) for c in calls)
            chat.add("assistant", text, _weight(m, "assistant", where), where)
        elif role == "tool":
            chat.add("user", tool_response_text(m["value"]), False, where, tool_result=True)
        else:
            chat.add(role, m["value"], _weight(m, role, where), where)
    system = _text(r, "system", required=False)
    tools = r.get("tools")
    if tools:
        system = "\n\n".join(x for x in (system, tools_text(tools, "tools")) if x)
    return [chat.chat(system, group)]


def alpaca(record: Any, group: str) -> list[Example]:
    r = _mapping(record)
    instruction, extra = _text(r, "instruction"), _text(r, "input", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [Chat([{"role": "user", "content": user}, {"role": "assistant", "content": _text(r, "output")}], group)]


def dolly(record: Any, group: str) -> list[Example]:
    """Databricks Dolly: `instruction`, optional `context` (the passage to answer from), `response`;
    `category` labels the task and is not shown."""
    r = _mapping(record)
    instruction, context = _text(r, "instruction"), _text(r, "context", required=False)
    user = f"{instruction}\n\n{context}" if context.strip() else instruction
    return [Chat([{"role": "user", "content": user}, {"role": "assistant", "content": _text(r, "response")}], group)]


def agent_run(weights: dict[str, float], min_reward: Optional[float]) -> Callable[[Any, str], list[Example]]:
    """Agent run records: a task, the agent's answer (text or messages) and reward signals.

    `{"task": ..., "response": ... | "messages": [...], "signals": {"compiled": true,
    "tests_passed": 7, "tests_total": 8, "errors": 1, "human_rating": 4}}`. The reward is the
    weighted sum of the signals (booleans count 0/1; tests_passed is the passed fraction when
    tests_total is given); runs below `min_reward` are skipped and counted, not quarantined. Each
    example keeps its run's reward: the prepared rows carry it (data.replay.priority=reward_surprise).
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
            chats = messages({"messages": [{"role": "user", "content": _text(r, "task")}, *r["messages"]]}, group)
            return [dataclasses.replace(c, reward=reward) for c in chats]
        return [Chat([{"role": "user", "content": _text(r, "task")}, {"role": "assistant", "content": _text(r, "response")}], group,
                     reward=reward)]

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
    "sharegpt": sharegpt,
    "alpaca": alpaca,
    "dolly": dolly,
}
