"""User-facing config errors: one short message naming the key, the file and line, the choices."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable, Optional, Sequence

from forge.errors import ForgeError


class ConfigError(ForgeError):
    """A problem with the user's config; the CLI prints it without a traceback."""


def suggest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the nearest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def choices_text(choices: Iterable[str]) -> str:
    return "Valid choices: " + ", ".join(sorted(choices)) + "."


def yaml_line(path: Path, keys: Sequence[str]) -> Optional[int]:
    """1-based line of the mapping key at `keys` (a dotted path split) in a YAML file."""
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        for k, v in node.value:
            if k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            return None
    return line
