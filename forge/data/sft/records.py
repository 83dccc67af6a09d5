"""Reading record files with a quarantine: bad lines are counted and kept aside, never dropped.

A file is JSON Lines (`.jsonl`, `.ndjson`), one JSON array of records (how Alpaca, ShareGPT
dumps and `--output-format json` come; the first character other than whitespace decides) or a
`.json` file of one object. A UTF-8 byte-order mark is skipped (Azure OpenAI requires one).
Bytes that are not UTF-8 are never replaced: their line goes to the quarantine, shown with the
bad bytes escaped. Parquet files and saved Hugging Face datasets are tables (`tables`): their
rows are the records, numbered by row.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, TextIO

from forge.data.sft import tables

_GAP = re.compile(r"\s*")

BOM = b"\xef\xbb\xbf"
SUFFIXES = (".jsonl", ".ndjson", ".json", *tables.FOLDER_SUFFIXES)  # what a folder source reads


class Quarantine:
    """Malformed records, one JSON line each: file, line number, error and the raw text."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()
        self.first: list[tuple[str, int, str]] = []  # the first few, for an error message

    def add(self, file: Path | str, line: int, error: str, text: str) -> None:
        self.counts[str(file)] += 1
        if len(self.first) < 3:
            self.first.append((str(file), line, error))
        self.out.write(json.dumps({"file": str(file), "line": line, "error": error, "text": text[:2000]}) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def data_files(path: Path) -> list[Path]:
    """The record files of a source, which are also what its prepared rows are cached by: the
    file itself, a saved dataset's Arrow files, or every SUFFIXES file under a folder (by path;
    a saved dataset inside it counts as its Arrow files, its JSON metadata is not data)."""
    if not path.is_dir():
        return [path]
    if tables.is_dataset(path):
        return tables.dataset_files(path)
    files = []
    for p in sorted(path.iterdir()):
        if p.is_dir() and not p.is_symlink():
            files += data_files(p)
        elif p.suffix in SUFFIXES and p.is_file():
            files.append(p)
    return files


def read_jsonl(path: Path, quarantine: Quarantine) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for every well-formed record; blank lines are skipped. In a
    JSON array file the number is the line the record starts on; in a table, the row."""
    if path.suffix in tables.SUFFIXES:
        yield from tables.read_rows(path, lambda line, error, text: quarantine.add(path, line, error, text))
        return
    with open(path, "rb") as f:
        head = f.read(len(BOM))
        if head != BOM:
            f.seek(0)
        first = f.read(4096).lstrip()
        f.seek(len(BOM) if head == BOM else 0)
        if first.startswith(b"["):
            yield from _array(path, f.read(), quarantine)
            return
        if path.suffix == ".json" and first.startswith(b"{"):
            record = _whole(f.read())
            if record is not None:
                yield 1, record
                return
            f.seek(len(BOM) if head == BOM else 0)
        for number, raw in enumerate(f, start=1):
            line = _decode(path, number, raw, quarantine)
            if line is None or not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                quarantine.add(path, number, f"invalid JSON: {e.msg} at column {e.colno}", line)


def _whole(data: bytes) -> Any:
    """A `.json` file holding one pretty-printed object; None when it is not (then it is read as
    JSON Lines, so its faults are reported by line)."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _decode(path: Path, number: int, raw: bytes, quarantine: Quarantine) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        quarantine.add(path, number, f"invalid UTF-8 at byte {e.start + 1} of the line", raw.decode("utf-8", "backslashreplace"))
        return None


def _array(path: Path, data: bytes, quarantine: Quarantine) -> Iterator[tuple[int, Any]]:
    """The records of a JSON array, each with the line it starts on. The array is read whole (the
    format has no line boundaries to resume at): a fault quarantines the rest of the file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        shown = data[start : end if end >= 0 else len(data)].decode("utf-8", "backslashreplace")
        quarantine.add(path, line, "invalid UTF-8 in a JSON array file: none of its records were read", shown)
        return
    decoder = json.JSONDecoder()
    pos = _GAP.match(text).end()  # at '['
    line = 1 + text.count("\n", 0, pos)
    first = True
    while True:
        gap = _GAP.match(text, pos + 1).end()  # past '[' or ','
        line += text.count("\n", pos, gap)
        pos = gap
        if first and text.startswith("]", pos):
            return
        first = False
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            quarantine.add(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}; the rest of the array was not read", text[pos : pos + 2000])
            return
        yield line, record
        gap = _GAP.match(text, end).end()
        line += text.count("\n", pos, gap)
        pos = gap
        if text.startswith("]", pos):
            return
        if not text.startswith(",", pos):
            quarantine.add(path, line, "invalid JSON: expected ',' or ']' after a record of the array; the rest was not read", text[pos : pos + 200])
            return
