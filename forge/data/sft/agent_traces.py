"""Claude Code `stream-json` session logs turned into SFT examples.

A log is the JSONL that `claude -p --output-format stream-json --verbose` prints (recorded with
`--input-format stream-json` or `--replay-user-messages` so the user's prompt is in it): a
`system` init line (tools, model), `assistant` lines whose content blocks are `thinking`, `text`
and `tool_use`, `user` lines carrying the prompt or `tool_result` blocks (`is_error` on
failures), and a closing `result` line. Consecutive assistant lines are one turn.

The session becomes a chat: the system line lists the tools; an assistant turn is its thinking
in <think> tags, its text, then each tool call as <tool_call>{"name", "arguments"}</tool_call>;
tool results come back as a user turn of <tool_response> blocks. Examples, by kind:

- `reasoning_action`: every assistant turn that calls a tool, given the session so far;
- `error_recovery`: every assistant turn that answers a failed tool call (counted here, not
  twice, when it also calls a tool);
- `tool_selection`: the name of the tool called next, given the task and the calls so far;
- `answer`: the closing assistant turn that calls no tool.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from forge.data.sft.examples import BadRecord, Chat, Example
from forge.data.sft.records import Quarantine, read_jsonl

KINDS = ("reasoning_action", "error_recovery", "tool_selection", "answer")


@dataclass
class Turn:
    role: str  # "assistant" or "user"
    text: str
    tools: list[str] = field(default_factory=list)  # assistant: tool names called
    error: bool = False  # user: a tool result came back as an error


@dataclass
class Session:
    id: str
    file: Path
    tools: list[str] = field(default_factory=list)
    prompt: Optional[str] = None
    turns: list[Turn] = field(default_factory=list)
    result: Optional[dict] = None
    first_line: int = 0


def read_sessions(path: Path, quarantine: Quarantine) -> Iterator[Session]:
    """Sessions in file order; a line that fits no event shape is quarantined with its number."""
    current: Optional[Session] = None
    for number, event in read_jsonl(path, quarantine):
        try:
            kind, sid = _event_kind(event)
        except BadRecord as e:
            quarantine.add(path, number, str(e), json.dumps(event))
            continue
        if current is None or (sid and current.id and sid != current.id):
            if current is not None:
                yield current
            current = Session(id=sid, file=path, first_line=number)
        try:
            _apply(current, kind, event)
        except BadRecord as e:
            quarantine.add(path, number, str(e), json.dumps(event))
        if kind == "result":
            yield current
            current = None
    if current is not None:
        yield current


def session_examples(session: Session, kinds: tuple[str, ...], counts: Counter[str]) -> list[Example]:
    if session.prompt is None:
        raise BadRecord(
            "session has no user prompt; record it with --input-format stream-json or --replay-user-messages"
        )
    system = {"role": "system", "content": "You are a coding agent. Tools: " + ", ".join(session.tools or ["none listed"]) + "."}
    chat = [system, {"role": "user", "content": session.prompt}]
    chat += [{"role": t.role, "content": t.text} for t in session.turns]
    group = f"{session.file.name}#{session.id or session.first_line}"
    out: list[Example] = []
    calls: list[str] = []
    for i, turn in enumerate(session.turns):
        at = i + 2  # index in chat
        if turn.role != "assistant":
            continue
        after_error = i > 0 and session.turns[i - 1].error
        if turn.tools and "tool_selection" in kinds:
            history = "\n".join(f"- {c}" for c in calls) or "- (none yet)"
            ask = f"Task: {session.prompt}\n\nTool calls so far:\n{history}\n\nWhich tool should be called next?"
            out.append(Chat([system, {"role": "user", "content": ask}, {"role": "assistant", "content": turn.tools[0]}], group))
            counts["tool_selection"] += 1
        kind = None
        if after_error and "error_recovery" in kinds:
            kind = "error_recovery"
        elif turn.tools and "reasoning_action" in kinds:
            kind = "reasoning_action"
        elif not turn.tools and i == len(session.turns) - 1 and "answer" in kinds:
            kind = "answer"
        if kind:
            out.append(Chat(chat[: at + 1], group, scored=(at,)))
            counts[kind] += 1
        failed = i + 1 < len(session.turns) and session.turns[i + 1].error
        calls += [f"{name}{' (failed)' if failed else ''}" for name in turn.tools]
    return out


def succeeded(session: Session) -> bool:
    r = session.result or {}
    return r.get("subtype") == "success" and not r.get("is_error", False)


def _event_kind(event: Any) -> tuple[str, str]:
    if not isinstance(event, dict) or event.get("type") not in ("system", "assistant", "user", "result"):
        raise BadRecord("not a stream-json event: needs type system|assistant|user|result")
    return event["type"], str(event.get("session_id") or "")


def _apply(session: Session, kind: str, event: dict) -> None:
    if kind == "system":
        tools = event.get("tools") or []
        session.tools = [t if isinstance(t, str) else str(t.get("name")) for t in tools]
        return
    if kind == "result":
        session.result = event
        return
    message = event.get("message")
    if not isinstance(message, dict) or "content" not in message:
        raise BadRecord(f"{kind} event without message.content")
    content = message["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise BadRecord(f"{kind} message.content must be a string or a list of blocks")
    if kind == "assistant":
        _assistant(session, blocks)
    else:
        _user(session, blocks)


def _assistant(session: Session, blocks: list[dict]) -> None:
    if session.turns and session.turns[-1].role == "assistant":
        turn = session.turns[-1]
    else:
        turn = Turn("assistant", "")
        session.turns.append(turn)
    parts = [turn.text] if turn.text else []
    for b in blocks:
        if b.get("type") == "thinking" and b.get("thinking"):
            parts.append(f"<think>\n{b['thinking'].strip()}\n</think>")
        elif b.get("type") == "text" and b.get("text"):
            parts.append(b["text"].strip())
        elif b.get("type") == "tool_use":
            if not isinstance(b.get("name"), str):
                raise BadRecord("tool_use block without a name")
            call = json.dumps({"name": b["name"], "arguments": b.get("input", {})}, ensure_ascii=False)
            parts.append(f"<tool_call>\n{call}\n</tool_call>")
            turn.tools.append(b["name"])
    turn.text = "\n".join(parts)


def _user(session: Session, blocks: list[dict]) -> None:
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if not results:
        text = "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text").strip()
        if session.prompt is None and not session.turns:
            session.prompt = text
        elif text:
            session.turns.append(Turn("user", text))
        return
    parts, error = [], False
    for b in results:
        body = b.get("content", "")
        if isinstance(body, list):
            body = "\n".join(str(x.get("text", "")) for x in body if isinstance(x, dict))
        error = error or bool(b.get("is_error"))
        parts.append(f"<tool_response{' error' if b.get('is_error') else ''}>\n{str(body).strip()}\n</tool_response>")
    if session.turns and session.turns[-1].role == "user":
        session.turns[-1].text += "\n" + "\n".join(parts)
        session.turns[-1].error = session.turns[-1].error or error
    else:
        session.turns.append(Turn("user", "\n".join(parts), error=error))
