"""What every SFT source turns its records into: a chat or a prompt/completion pair.

A `Chat` is rendered with the model's own chat template and scored on its assistant turns (all
of them, or the ones in `scored`); a `Completion` is plain text scored on the completion only.
`group` decides the split: examples that share it (one source file, one agent session) always
land in the same split, so near-duplicates never straddle train and test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union


@dataclass
class Chat:
    messages: list[dict[str, str]]
    group: str
    scored: Optional[tuple[int, ...]] = None  # indices into messages; None: every assistant turn
    reward: Optional[float] = None  # an agent run's reward, kept per row for replay by reward surprise


@dataclass
class Completion:
    prompt: str
    completion: str
    group: str
    reward: Optional[float] = None


Example = Union[Chat, Completion]


class BadRecord(ValueError):
    """A record that cannot become an example; its message says which field is wrong."""
