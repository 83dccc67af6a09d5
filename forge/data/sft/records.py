"""Streaming JSONL with a quarantine: bad lines are counted and kept aside, never dropped."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, TextIO


class Quarantine:
    """Malformed records, one JSON line each: file, line number, error and the raw text."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()

    def add(self, file: Path | str, line: int, error: str, text: str) -> None:
        self.counts[str(file)] += 1
        self.out.write(json.dumps({"file": str(file), "line": line, "error": error, "text": text[:2000]}) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_jsonl(path: Path, quarantine: Quarantine) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for every well-formed line; blank lines are skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                quarantine.add(path, number, f"invalid JSON: {e.msg} at column {e.colno}", line)
