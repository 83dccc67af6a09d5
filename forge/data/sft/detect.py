"""Which SFT format a file holds, told from its first records.

`format: auto` uses it to choose a parser per file, and a declared format is checked with it, so
that a file of the wrong format fails once, naming the format it looks like, instead of sending
every line to the quarantine. Each format is recognised by the keys only it has.
"""

from __future__ import annotations

import io
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any, Optional

from forge.data.sft.agent_traces import EVENTS, SKIPPED
from forge.data.sft.records import Quarantine, read_jsonl

PEEK = 5  # records looked at


def record_format(record: Any) -> Optional[str]:
    """The format one record is written in, or None when no format forge reads has its keys."""
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if record.get("type") in SKIPPED or (record.get("type") in EVENTS and keys & {"message", "session_id", "sessionId"}):
        return "claude_code"
    if "task" in keys and "signals" in keys:
        return "agent_runs"
    if isinstance(record.get("messages"), list):
        return "messages"
    if isinstance(record.get("conversations"), list):
        return "sharegpt"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "instruction" in keys and "response" in keys:
        return "dolly"
    return None


def first_records(path: Path) -> list[Any]:
    """The first PEEK well-formed records of a file (its faults are reported when it is read)."""
    return [record for _, record in islice(read_jsonl(path, Quarantine(io.StringIO())), PEEK)]


def file_format(records: list[Any]) -> Optional[str]:
    """The format most of `records` are in; None when none is recognised."""
    found = Counter(f for f in map(record_format, records) if f is not None)
    return found.most_common(1)[0][0] if found else None


def keys_text(records: list[Any]) -> str:
    keys = sorted({str(k) for r in records if isinstance(r, dict) for k in r})
    return ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") if keys else "no JSON objects"
