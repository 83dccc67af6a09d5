"""Claude Code session logs turned into SFT examples.

Two kinds of log are read. A stream-json log is what `claude -p --output-format stream-json
--verbose` prints: a `system` init line (tools, model), `assistant` lines whose content blocks are
`thinking`, `text` and `tool_use`, `user` lines carrying the prompt or `tool_result` blocks
(`is_error` on failures), and a `result` line closing each user turn. The prompt is in the log
only when it was recorded with `--input-format stream-json` and `--replay-user-messages`
together; for a log without it (the default `claude -p "..."`, claude-code-action) the source
gives the prompt (`prompt` or `prompt_file`), which opens every session that has none. An
on-disk transcript (`~/.claude/projects/*/*.jsonl`) has the same message lines with camelCase
keys (`sessionId`, `isSidechain`, `parentUuid`) and no init or result line: its tools are not
listed and its sessions carry no verdict, so `successful_only` leaves them out
(`filtered.unjudged_sessions`) unless it is false.

What the log says is what the model saw, in order:

- a session runs until its `session_id` changes or the file ends: a multi-turn session writes an
  init and a result per user turn, and a later turn is trained with the earlier ones as context;
  the session succeeded when its last `result` says so;
- the CLI writes each content block of one API message as its own line, and may write a tool
  result between two `tool_use` blocks of that message: the blocks of one `message.id` are one
  assistant turn and the results of its calls come back together after it (a line of the same id
  that follows results joins only if it calls a tool, since the model wrote it without seeing
  them; text after results is a new turn);
- subagent lines (`parent_tool_use_id` set, or `isSidechain`) are the subagent's conversation,
  not the main agent's: they are left out and counted (`skipped.subagent_lines`); the parent
  sees only the Task tool's result;
- a user turn the log does not hold (a later turn of a session recorded without its prompts)
  cannot be guessed: the lines that answer it are left out (`skipped.lines_without_prompt`);
- in a transcript, a prompt whose `parentUuid` is an earlier line than the last is a rewind (the
  user edited an earlier message): the turns after that line were abandoned and are dropped from
  the context (`skipped.rewound_turns`); `isMeta` user lines (harness notices) are not prompts
  (`skipped.meta_messages`);
- an image or other non-text block in a prompt or a tool result becomes a placeholder such as
  `[image]`, counted as `placeholders.image`; text sent beside tool results follows them;
- a message typed while the agent was mid-turn (a transcript's `queued_command` attachment) is a
  user turn; other attachments are counted as `skipped.attachment.<type>`;
- an assistant block repeated on a later line adds nothing (`skipped.repeated_blocks`); blocks
  that are not text, thinking or tool calls (redacted thinking) are counted as `skipped.blocks.<type>`;
- only the `system` line with `subtype: init` declares the tools; `compact_boundary` marks a
  compaction, after which the context restarts at the summary (`isCompactSummary`) or the next
  user prompt (assistant and tool-result lines before either are left out, counted
  `skipped.uncompacted_lines`); other system subtypes (hooks, status) are skipped and counted as
  `skipped.system.<subtype>`;
- `<synthetic>` assistant messages (local slash-command output, API-error notices) are not the
  model's: left out and counted (`skipped.synthetic_messages`);
- `stream_event`, `rate_limit_event`, `control_request`/`control_response`, `tool_progress`,
  `auth_status` and the transcript's `summary` and `file-history-snapshot` lines are known
  events, and so is any line of another type with a session id and no message (transcripts add
  titles, modes, queue operations): skipped and counted as `skipped.<type>`. Only what is not
  JSON, not an event or contradicts itself is quarantined.

The session becomes a chat: the system line lists the tools (when the log declares them); an
assistant turn is its thinking in <think> tags, its text, then each tool call as <tool_call>{"name", "arguments"}</tool_call>;
tool results come back as a user turn of <tool_response> blocks. Examples, by kind:

- `reasoning_action`: every assistant turn that calls a tool, given the context so far;
- `error_recovery`: every assistant turn that answers a failed tool call (counted here, not
  twice, when it also calls a tool);
- `tool_selection`: the name of the tool called next, given the current user prompt and the
  calls made since it;
- `answer`: every assistant turn that calls no tool (the reply that closes a user turn).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from forge.data.configs import CLAUDE_CODE_KINDS
from forge.data.sft.examples import BadRecord, Chat, Example
from forge.data.sft.formats import tool_call_text, tool_response_text
from forge.data.sft.records import Quarantine, read_jsonl

KINDS = CLAUDE_CODE_KINDS  # the kinds of example a session gives (the schema validates them)
EVENTS = ("system", "assistant", "user", "result", "attachment")
SKIPPED = ("stream_event", "rate_limit_event", "control_request", "control_response", "tool_progress", "auth_status",
           "summary", "file-history-snapshot")


@dataclass
class Turn:
    role: str  # "assistant" or "user"
    text: str
    tools: list[str] = field(default_factory=list)  # assistant: tool names called
    error: bool = False  # user: a tool result came back as an error
    message_id: str = ""  # assistant: the API message its blocks came from
    blocks: set[int] = field(default_factory=set)  # assistant: hashes of its blocks, so a repeated line adds nothing
    results: bool = False  # user: tool results, not a prompt
    starts_context: bool = False  # user: the first turn the model saw (the prompt or a compaction summary)


@dataclass
class Session:
    id: str
    file: Path
    tools: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    result: Optional[dict] = None
    first_line: int = 0
    compacted: bool = False  # a compaction boundary is waiting for the turn that restarts the context
    answered: bool = False  # a `result` closed the last user turn; the next one needs a prompt
    marks: dict[str, int] = field(default_factory=dict)  # transcript line uuid -> turns held after it

    @property
    def prompt(self) -> Optional[str]:
        first = self.turns[0] if self.turns else None
        return first.text if first and first.role == "user" and not first.results else None


def read_sessions(path: Path, quarantine: Quarantine, counts: Optional[Counter[str]] = None) -> Iterator[Session]:
    """Sessions in file order; a line that fits no event shape is quarantined with its number,
    known non-message lines are counted in `counts` and skipped."""
    counts = Counter() if counts is None else counts
    current: Optional[Session] = None
    for number, event in read_jsonl(path, quarantine):
        counts["read.records"] += 1
        try:
            kind, sid = _event_kind(event)
        except BadRecord as e:
            quarantine.add(path, number, str(e), json.dumps(event))
            continue
        if kind not in EVENTS:
            counts[f"skipped.{kind}"] += 1
            continue
        if event.get("parent_tool_use_id") or event.get("isSidechain"):
            counts["skipped.subagent_lines"] += 1
            continue
        if current is None or (sid and current.id and sid != current.id):
            if current is not None:
                yield current
            current = Session(id=sid, file=path, first_line=number)
        current.id = current.id or sid
        try:
            _apply(current, kind, event, counts)
        except BadRecord as e:
            quarantine.add(path, number, str(e), json.dumps(event))
        if isinstance(event.get("uuid"), str):
            current.marks[event["uuid"]] = len(current.turns)
    if current is not None:
        yield current


def session_examples(session: Session, kinds: tuple[str, ...], counts: Counter[str], prompt: Optional[str] = None) -> list[Example]:
    """The examples of one session; `prompt` opens it when the log holds no prompt of its own
    (None: such a session has none and gives no examples, counted `skipped.sessions_without_prompt`)."""
    if session.prompt is None:
        if prompt is None or not any(t.role == "assistant" for t in session.turns):
            counts["skipped.sessions_without_prompt"] += 1
            return []
        session.turns.insert(0, Turn("user", prompt, starts_context=True))
        counts["prompts_from_source"] += 1
    tools = f" Tools: {', '.join(session.tools)}." if session.tools else ""
    system = {"role": "system", "content": f"You are a coding agent.{tools}"}
    group = f"{session.file.name}#{session.id or session.first_line}"
    messages = [{"role": t.role, "content": t.text} for t in session.turns]
    out: list[Example] = []
    start, task, calls, failed_since = 0, session.prompt, [], False  # a failed result came in since the last assistant turn
    for i, turn in enumerate(session.turns):
        if turn.starts_context:
            start = i
        if turn.role == "user":
            if not turn.results:
                task, calls = turn.text, []
            failed_since = failed_since or turn.error
            continue
        chat = [system, *messages[start : i + 1]]
        after_error, failed_since = failed_since, False
        if turn.tools and "tool_selection" in kinds:
            history = "\n".join(f"- {c}" for c in calls) or "- (none yet)"
            ask = f"Task: {task}\n\nTool calls so far:\n{history}\n\nWhich tool should be called next?"
            out.append(Chat([system, {"role": "user", "content": ask}, {"role": "assistant", "content": turn.tools[0]}], group))
            counts["tool_selection"] += 1
        kind = None
        if after_error and "error_recovery" in kinds:
            kind = "error_recovery"
        elif turn.tools and "reasoning_action" in kinds:
            kind = "reasoning_action"
        elif not turn.tools and "answer" in kinds:
            kind = "answer"
        if kind:
            out.append(Chat(chat, group, scored=(len(chat) - 1,)))
            counts[kind] += 1
        failed = i + 1 < len(session.turns) and session.turns[i + 1].error
        calls += [f"{name}{' (failed)' if failed else ''}" for name in turn.tools]
    return out


def succeeded(session: Session) -> Optional[bool]:
    """The verdict of the session's last `result`; None when it has none (a transcript)."""
    if session.result is None:
        return None
    return session.result.get("subtype") == "success" and not session.result.get("is_error", False)


def _event_kind(event: Any) -> tuple[str, str]:
    """(type, session id). A line of another type is a metadata line (a title, a mode, a queue
    operation: transcripts gain such types often) when it carries a session id and no message."""
    kind = event.get("type") if isinstance(event, dict) else None
    sid = str(event.get("session_id") or event.get("sessionId") or "") if isinstance(event, dict) else ""
    metadata = isinstance(kind, str) and bool(sid) and "message" not in event
    if kind not in EVENTS + SKIPPED and not metadata:
        raise BadRecord(f"not a Claude Code event: needs type {'|'.join(EVENTS)}, a known event ({', '.join(SKIPPED)}) "
                        "or a metadata line with a session id")
    return kind, sid


def _apply(session: Session, kind: str, event: dict, counts: Counter[str]) -> None:
    if kind == "system":
        subtype = event.get("subtype")
        if subtype == "init":
            tools = event.get("tools") or []
            session.tools = [t if isinstance(t, str) else str(t.get("name")) for t in tools]
        elif subtype == "compact_boundary":
            session.compacted = True
            counts["compactions"] += 1
        else:
            counts[f"skipped.system.{subtype}"] += 1
        return
    if kind == "result":
        session.result, session.answered = event, True
        return
    if kind == "attachment":
        _attachment(session, event, counts)
        return
    message = event.get("message")
    if not isinstance(message, dict) or "content" not in message:
        raise BadRecord(f"{kind} event without message.content")
    content = message["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise BadRecord(f"{kind} message.content must be a string or a list of blocks")
    if kind == "assistant" and message.get("model") == "<synthetic>":
        counts["skipped.synthetic_messages"] += 1
    elif kind == "user" and event.get("isMeta"):
        counts["skipped.meta_messages"] += 1
    elif kind == "assistant":
        _assistant(session, blocks, str(message.get("id") or ""), counts)
    else:
        _user(session, blocks, event, counts)


def _assistant_turn(session: Session, message_id: str, calls: bool) -> Turn:
    """The turn these blocks belong to: the open assistant turn, the turn of the same message
    whose call results came in between (only for more calls), or a new one."""
    turns = session.turns
    if turns and turns[-1].role == "assistant":
        return turns[-1]
    if calls and message_id and len(turns) > 1 and turns[-1].results and turns[-2].message_id == message_id:
        return turns[-2]
    turn = Turn("assistant", "", message_id=message_id)
    turns.append(turn)
    return turn


def _assistant(session: Session, blocks: list[dict], message_id: str, counts: Counter[str]) -> None:
    if session.compacted:
        counts["skipped.uncompacted_lines"] += 1
        return
    if session.answered:
        counts["skipped.lines_without_prompt"] += 1
        return
    turn = _assistant_turn(session, message_id, any(b.get("type") == "tool_use" for b in blocks))
    parts = [turn.text] if turn.text else []
    for b in blocks:
        kind = b.get("type")
        key = hash(json.dumps(b, sort_keys=True))
        if key in turn.blocks:
            counts["skipped.repeated_blocks"] += 1
            continue
        turn.blocks.add(key)
        if kind == "thinking" and b.get("thinking"):
            parts.append(f"<think>\n{b['thinking'].strip()}\n</think>")
        elif kind == "text" and b.get("text"):
            parts.append(b["text"].strip())
        elif kind == "tool_use":
            parts.append(tool_call_text(b.get("name"), b.get("input", {}), "tool_use block"))
            turn.tools.append(b["name"])
        elif kind not in ("thinking", "text"):
            counts[f"skipped.blocks.{kind}"] += 1  # redacted thinking, server-side tool blocks: not text the model can learn
    turn.text = "\n".join(parts)


def _attachment(session: Session, event: dict, counts: Counter[str]) -> None:
    """A message typed while the agent was mid-turn is journaled as a `queued_command` attachment
    (there is no user line): the model read it, so it is a user turn. Other attachments are
    harness context (dates, file snapshots, reminders), counted by type."""
    attachment = event.get("attachment") if isinstance(event.get("attachment"), dict) else {}
    prompt = attachment.get("prompt")
    if attachment.get("type") == "queued_command" and isinstance(prompt, str) and prompt.strip():
        _user(session, [{"type": "text", "text": prompt}], event, counts)
    else:
        counts[f"skipped.attachment.{attachment.get('type')}"] += 1


def _block_text(block: dict, counts: Counter[str]) -> str:
    """A text block's text; any other block (an image, a document) as a counted placeholder."""
    kind = str(block.get("type"))
    if kind == "text":
        return str(block.get("text", ""))
    counts[f"placeholders.{kind}"] += 1
    return f"[{kind}]"


def _rewind(session: Session, event: dict, counts: Counter[str]) -> None:
    """A transcript prompt whose parent line is not the last one: the turns after the parent
    were abandoned when the user went back and edited an earlier message."""
    held = session.marks.get(str(event.get("parentUuid")))
    if held is not None and held < len(session.turns):
        counts["skipped.rewound_turns"] += len(session.turns) - held
        del session.turns[held:]


def _user(session: Session, blocks: list[dict], event: dict, counts: Counter[str]) -> None:
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if not results:
        text = "\n".join(_block_text(b, counts) for b in blocks).strip()
        if text:
            _rewind(session, event, counts)
            starts = not session.turns or session.compacted or bool(event.get("isCompactSummary"))
            session.turns.append(Turn("user", text, starts_context=starts))
            session.compacted = session.answered = False
        return
    if session.compacted or session.answered:
        counts["skipped.uncompacted_lines" if session.compacted else "skipped.lines_without_prompt"] += 1
        return
    parts, error = [], False
    for b in results:
        body = b.get("content", "")
        if isinstance(body, list):
            body = "\n".join(_block_text(x, counts) for x in body if isinstance(x, dict))
        error = error or bool(b.get("is_error"))
        parts.append(tool_response_text(str(body), bool(b.get("is_error"))))
    parts += [_block_text(b, counts) for b in blocks if b.get("type") != "tool_result"]  # e.g. "[Request interrupted by user]"
    if session.turns and session.turns[-1].results:
        session.turns[-1].text += "\n" + "\n".join(parts)
        session.turns[-1].error = session.turns[-1].error or error
    else:
        session.turns.append(Turn("user", "\n".join(parts), error=error, results=True))
