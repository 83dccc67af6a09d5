"""The secret scan of SFT data: no API key, token, private key or password reaches a training row.

Every example's text (each message of a chat, prompt and completion of a pair) is scanned with
forge.secrets before it is tokenized. With `data.secrets: quarantine` (the default) an example
that holds a secret goes to the quarantine, with its file, line and the kinds found; with
`redact` each secret is replaced by `[REDACTED:<kind>]` and the example is kept. The quarantine
never shows a secret: every text it is given is redacted first, whatever the reason it is there.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from forge import secrets
from forge.data.sft.examples import Chat, Example
from forge.data.sft.records import Quarantine


class SecretScan:
    """Each distinct text is scanned once per group (session or file): the examples of an agent
    session repeat its whole context, and scanning each again made preparing long sessions
    quadratic in their length."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.scanned = 0
        self.found: Counter[str] = Counter()  # examples holding each kind of secret
        self.group: str | None = None
        self.memo: dict[str, list[secrets.Secret]] = {}

    def check(self, example: Example) -> tuple[Example, list[str]]:
        """The example with its secrets redacted, and the kinds of secret found (none: the
        example itself)."""
        self.scanned += 1
        if example.group != self.group:
            self.group, self.memo = example.group, {}
        if isinstance(example, Chat):
            texts = [v for m in example.messages for v in m.values() if isinstance(v, str)]
        else:
            texts = [example.prompt, example.completion]
        found = list(dict.fromkeys(s for text in texts for s in self._find(text)))
        if not found:
            return example, []
        kinds = list(dict.fromkeys(s.kind for s in found))
        self.found.update(kinds)
        if isinstance(example, Chat):
            messages = [{k: secrets.redact(v, found) if isinstance(v, str) else v for k, v in m.items()} for m in example.messages]
            return dataclasses.replace(example, messages=messages), kinds
        prompt, completion = secrets.redact(example.prompt, found), secrets.redact(example.completion, found)
        return dataclasses.replace(example, prompt=prompt, completion=completion), kinds

    def _find(self, text: str) -> list[secrets.Secret]:
        if text not in self.memo:
            self.memo[text] = secrets.find_escaped(text)
        return self.memo[text]

    def meta(self) -> dict[str, Any]:
        return {"action": self.action, "examples_scanned": self.scanned, "found": dict(self.found)}


class RedactingQuarantine(Quarantine):
    """A quarantine whose lines show every secret as `[REDACTED:<kind>]`: a malformed record is
    shown as it was read, and it may hold one."""

    def add(self, file: Path | str, line: int, error: str, text: str) -> None:
        super().add(file, line, secrets.redact(error, secrets.find_escaped(error)), secrets.redact(text, secrets.find_escaped(text)))
