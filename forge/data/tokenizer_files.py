"""A tokenizer's identity from its files, without loading it.

Loading a Hugging Face tokenizer imports transformers (and torch), seconds that a command such as
`forge runs start` cannot spend to find out whether text data was already prepared with this
model's tokenizer. The files a tokenizer is built from decide what it does, so their digest,
recorded when the data is prepared, identifies it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
         "chat_template.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model")


def digest(folder: Path) -> Optional[str]:
    """SHA-256 over the tokenizer files present in a model folder; None when it holds none."""
    present = [folder / name for name in FILES if (folder / name).is_file()]
    if not present:
        return None
    h = hashlib.sha256()
    for f in present:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()
